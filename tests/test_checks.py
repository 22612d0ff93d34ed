"""The exercises' checks catch what they should, and only that.

Every check in hftlab.checks is run three ways: against its worked solution (must
pass), against the stub a notebook starts with (must say "not done yet", not
crash), and against plausible wrong answers (must fail with the hint that names
the mistake). Where the package implements the same thing, the package itself must
pass the check too, so an exercise cannot drift from the code the processes run.
"""

import io
import logging

import pytest

from hftlab import book, checks, orderbook, protocol, rules, solutions
from hftlab.order_manager import check_order


def stub(*args):
    raise NotImplementedError("your code here")


CHECKS = {
    "footprint": checks.check_footprint,
    "seqlock_read": checks.check_seqlock_read,
    "split_frames": checks.check_split_frames,
    "count_gaps": checks.check_count_gaps,
    "moving_average": checks.check_moving_average,
    "price_signal": checks.check_price_signal,
    "order_for": checks.check_order_for,
    "validate_order": checks.check_validate_order,
    "audit": checks.check_audit,
    "speedup": checks.check_speedup,
}


def test_every_check_is_listed():
    assert sorted(CHECKS) == sorted(name[len("check_"):] for name in checks.__all__)
    assert sorted(CHECKS) == sorted(solutions.__all__)


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_solution_passes(name, capsys):
    assert CHECKS[name](getattr(solutions, name))
    out = capsys.readouterr().out
    assert out.startswith("All ") and out.rstrip().endswith(" cases pass"), out


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_stub_is_not_done_yet(name, capsys):
    assert not CHECKS[name](stub)
    assert capsys.readouterr().out == f"not done yet: complete {name} above, then run this cell again.\n"


# -- wrong answers a learner might give, and the hint each must get ---------------

def footprint_no_rounding(n, page):
    used = book.HEADER_DTYPE.itemsize + n * book.RECORD_DTYPE.itemsize
    return used, used


def footprint_rounds_down(n, page):
    used = book.HEADER_DTYPE.itemsize + n * book.RECORD_DTYPE.itemsize
    return used, used // page * page


def footprint_no_header(n, page):
    used = n * book.RECORD_DTYPE.itemsize
    return used, page


def seqlock_ignores_odd(load_version, load_fields):
    while True:
        before = load_version()
        fields = load_fields()
        if load_version() == before:
            return fields


def seqlock_no_second_look(load_version, load_fields):
    while load_version() % 2:
        pass
    return load_fields()


def split_ignores_pending(pending, data):
    return data.split(b"\n")[:-1], b""


def split_returns_the_tail_as_a_line(pending, data):
    return (pending + data).split(b"\n"), b""


def gaps_counted_as_events(messages):
    n, last = 0, None
    for m in messages:
        if isinstance(m, protocol.Price):
            if last is not None and m.seq > last + 1:
                n += 1
            last = m.seq
    return n


def gaps_ignore_hello_and_hb(messages):
    n, last = 0, None
    for m in messages:
        if isinstance(m, protocol.Price):
            if last is not None and m.seq > last + 1:
                n += m.seq - last - 1
            last = m.seq
    return n


def gaps_ignore_hello(messages):
    n, last = 0, None
    for m in messages:
        if isinstance(m, protocol.Price):
            if last is not None and m.seq > last + 1:
                n += m.seq - last - 1
            last = m.seq
        elif isinstance(m, protocol.Heartbeat):
            if last is not None and m.last_seq > last:
                n += m.last_seq - last
            last = m.last_seq if last is None else max(last, m.last_seq)
    return n


def ma_of_everything(values, n):
    return sum(values) / len(values)


def signal_not_strict(history, short, long):
    if len(history) < long:
        return None
    return "BUY" if rules.moving_average(history, short) >= rules.moving_average(history, long) else "SELL"


def signal_without_warmup(history, short, long):
    fast, slow = rules.moving_average(history, short), rules.moving_average(history, long)
    return "BUY" if fast > slow else "SELL" if fast < slow else None


def order_ignores_position(position, side, qty):
    return None if side is None else (side, qty)


def order_flips_by_qty(position, side, qty):
    if side is None or (side == "BUY") == (position > 0) and position != 0:
        return None
    return (side, qty)


def validate_without_band(order, config, last_price):
    return solutions.validate_order(order, config, None)


def validate_strict_max(order, config, last_price):
    if order.qty >= config.max_qty:
        return "too big"
    return solutions.validate_order(order, config, last_price)


def validate_crashes_without_price(order, config, last_price):
    if abs(order.price / last_price - 1) > config.price_band:
        return "band"
    return solutions.validate_order(order, config, last_price)


def audit_ignores_order_ids(journal, acks):
    found = solutions.audit(journal, [])
    numbers = {int(row["order_no"]) for row in journal}
    return dict(found, missing=sorted(no for _, no in acks if no not in numbers))


def audit_holes_from_row_count(journal, acks):
    found = solutions.audit(journal, acks)
    numbers = {int(row["order_no"]) for row in journal}
    return dict(found, holes=sorted(set(range(1, len(journal) + 1)) - numbers))


def speedup_from_sent(new, base):
    return (new.sent / new.seconds) / (base.sent / base.seconds)


def speedup_upside_down(new, base):
    return base.ticks_per_s / new.ticks_per_s


def speedup_from_times(new, base):
    return base.seconds / new.seconds


WRONG = [
    ("footprint", footprint_no_rounding, "round `used` UP"),
    ("footprint", footprint_rounds_down, "round `used` UP"),
    ("footprint", footprint_no_header, "one header"),
    ("seqlock_read", seqlock_ignores_odd, "odd version means a write is in progress"),
    ("seqlock_read", seqlock_no_second_look, "read the version AFTER copying too"),
    ("split_frames", split_ignores_pending, "keep the tail as `pending`"),
    ("split_frames", split_returns_the_tail_as_a_line, "pending, not a line"),
    ("count_gaps", gaps_counted_as_events, "count the missing messages, not the gaps"),
    ("count_gaps", gaps_ignore_hello_and_hb, "a heartbeat says the last seq"),
    ("count_gaps", gaps_ignore_hello, "a restarted gateway"),
    ("moving_average", ma_of_everything, "only the LAST n values count"),
    ("price_signal", signal_not_strict, "STRICTLY above or below"),
    ("price_signal", signal_without_warmup, "no long average yet"),
    ("order_for", order_ignores_position, "duplicate order"),
    ("order_for", order_flips_by_qty, "sell 20"),
    ("validate_order", validate_without_band, "price_band"),
    ("validate_order", validate_strict_max, "equal to max_qty is allowed"),
    ("validate_order", validate_crashes_without_price, "it raised TypeError"),
    ("audit", audit_ignores_order_ids, "under that same order_id"),
    ("audit", audit_holes_from_row_count, "to the largest order_no"),
    ("speedup", speedup_from_sent, "count the ticks DELIVERED"),
    ("speedup", speedup_upside_down, "it is upside down"),
    ("speedup", speedup_from_times, "compare rates (ticks per second), not times"),
]


@pytest.mark.parametrize("name, wrong, hint", WRONG,  # ids lazily: later blocks add to WRONG
                         ids=lambda v: getattr(v, "__name__", None) if callable(v) else None)
def test_wrong_answer_gets_its_hint(name, wrong, hint, capsys):
    assert not CHECKS[name](wrong)
    out = capsys.readouterr().out
    assert out.startswith(f"{name} is not right yet: "), out
    assert hint in out, out


def test_every_check_has_a_wrong_answer():
    assert {name for name, _, _ in WRONG} == set(CHECKS)


# -- the package's own code passes the checks: the exercises match the system -----

def test_package_moving_average_price_signal_order_for_pass(capsys):
    assert checks.check_moving_average(rules.moving_average)
    assert checks.check_price_signal(rules.price_signal)
    assert checks.check_order_for(rules.order_for)
    assert checks.check_validate_order(check_order)


def test_package_framer_passes_split_frames():
    def split_with_framer(pending, data):
        framer = protocol.LineFramer()
        framer.feed(pending)
        return framer.feed(data), framer._buf

    assert checks.check_split_frames(split_with_framer)


def test_package_feed_handler_passes_count_gaps():
    """The count_gaps cases agree with orderbook.FeedHandler writing a real book."""
    log = logging.getLogger("test_checks.feed")
    log.addHandler(logging.StreamHandler(io.StringIO()))
    log.propagate = False

    def count_with_feed_handler(messages):
        with book.SharedPriceBook(["AAPL"], book.new_name()) as b:
            handler = orderbook.FeedHandler(b, log)
            handler.feed(b"".join(protocol.encode(m) for m in messages))
            assert b.header()["gaps"] == handler.gaps
            return handler.gaps

    assert checks.check_count_gaps(count_with_feed_handler)


def test_package_book_layout_passes_footprint():
    def from_book(n, page):
        used = book.layout_nbytes(n) if n <= book.MAX_SYMBOLS else \
            book.HEADER_DTYPE.itemsize + n * book.RECORD_DTYPE.itemsize
        return used, -(-used // page) * page

    assert checks.check_footprint(from_book)
    with book.SharedPriceBook(["AAPL", "MSFT", "GOOGL", "AMZN"], book.new_name()) as b:
        assert solutions.footprint(4, __import__("mmap").PAGESIZE) == (b.nbytes, b.mapped_bytes)


def test_package_feed_result_passes_speedup():
    assert checks.check_speedup(lambda new, base: new.ticks_per_s / base.ticks_per_s)


# --- lesson 07 ---

import threading

CHECKS["gateway_kill"] = checks.check_gateway_kill


def predicts_an_empty_book():
    return dict(solutions.gateway_kill(), prices="empty")


def predicts_fresh_prices():
    return dict(solutions.gateway_kill(), stale="no row")


def predicts_a_dead_orderbook():
    return dict(solutions.gateway_kill(), orderbook="exited")


def predicts_in_words():
    return dict(solutions.gateway_kill(), feed="down, I think")


RELEASE = threading.Event()


def predicts_forever():
    """Loops until the test releases it (a learner's loop would not: the check must not wait)."""
    while not RELEASE.wait(0.01):
        pass


WRONG += [
    ("gateway_kill", predicts_an_empty_book, "nobody erases the book"),
    ("gateway_kill", predicts_fresh_prices, "every price of a DOWN feed stale"),
    ("gateway_kill", predicts_a_dead_orderbook, "reconnects with back-off"),
    ("gateway_kill", predicts_in_words, "choose 'UP' or 'DOWN'"),
]


def test_gateway_kill_solution_passes_and_stub_is_not_done_yet(capsys):
    assert checks.check_gateway_kill(solutions.gateway_kill)
    assert capsys.readouterr().out == "All 5 cases pass\n"
    assert not checks.check_gateway_kill(stub)
    assert capsys.readouterr().out == \
        "not done yet: complete gateway_kill above, then run this cell again.\n"


def test_gateway_kill_is_judged_against_what_was_observed(capsys):
    seen = dict(checks.GATEWAY_KILL_TRUTH, orderbook="exited")
    assert not checks.check_gateway_kill(solutions.gateway_kill, seen)
    assert "the book view showed 'exited'" in capsys.readouterr().out


def test_gateway_kill_answer_that_never_returns_gets_a_hint_in_seconds(capsys):
    try:
        assert not checks.check_gateway_kill(predicts_forever)
        assert "had not returned after 5 s" in capsys.readouterr().out
    finally:
        RELEASE.set()     # end the thread the check left behind, so no test sees it
