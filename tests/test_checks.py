"""The exercises' checks catch what they should, and only that.

Every check in hftlab.checks is run three ways: against its worked solution (must
pass), against the stub a notebook starts with (must say "not done yet", not
crash), and against plausible wrong answers (must fail with the hint that names
the mistake). Where the package implements the same thing, the package itself must
pass the check too, so an exercise cannot drift from the code the processes run.
"""

import io
import logging
import threading

import pytest

from hftlab import book, checks, orderbook, protocol, solutions
from hftlab.checks import common, lesson05
from hftlab.order_manager import check_order


def stub(*args):
    raise NotImplementedError("your code here")


# Every check that takes the learner's function alone (check_count_gaps_live also takes
# the bytes a lesson recorded: see lesson 04 below).
CHECKS = {name: getattr(checks, "check_" + name) for name in (
    "make_length_framer", "fix_quantity", "footprint", "seqlock_read", "count_gaps", "trigger",
    "notional_limit", "gateway_kill", "expected_wait", "seen_and_missed", "audit", "speedup")}


def test_every_check_is_listed():
    judged_live = ("check_count_gaps_live", "check_match")   # against a measurement: no worked answer
    assert sorted(CHECKS) == sorted(name[len("check_"):] for name in checks.__all__
                                    if name.startswith("check_") and name not in judged_live)
    assert sorted(CHECKS) == sorted(solutions.__all__)


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


def gaps_counted_as_events(messages):
    n, last = 0, None
    for m in messages:
        if isinstance(m, protocol.Price):
            if last is not None and m.seq > last + 1:
                n += 1
            last = m.seq
    return n


def gaps_ignore_hello_and_hb(messages):
    return solutions.count_gaps([m for m in messages if isinstance(m, protocol.Price)])


def gaps_ignore_hello(messages):
    return solutions.count_gaps([m for m in messages if not isinstance(m, protocol.Hello)])


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


def wait_without_rounding(policy, interval, wake):
    return {"spin": 0.0, "doorbell": wake}.get(policy, interval * 1e6 / 2 + wake)


def wait_whole_interval(policy, interval, wake):
    return {"spin": 0.0, "doorbell": wake}.get(policy, max(interval, 0.001) * 1e6 + wake)


def wait_doorbell_polls(policy, interval, wake):
    return 0.0 if policy == "spin" else max(interval, 0.001) * 1e6 / 2 + wake


WRONG = [
    ("footprint", footprint_no_rounding, "round `used` UP"),
    ("footprint", footprint_rounds_down, "round `used` UP"),
    ("footprint", footprint_no_header, "one header"),
    ("seqlock_read", seqlock_ignores_odd, "odd version means a write is in progress"),
    ("seqlock_read", seqlock_no_second_look, "read the version AFTER copying too"),
    ("count_gaps", gaps_counted_as_events, "count the missing messages, not the gaps"),
    ("count_gaps", gaps_ignore_hello_and_hb, "a heartbeat says the last seq"),
    ("count_gaps", gaps_ignore_hello, "a restarted gateway"),
    ("audit", audit_ignores_order_ids, "under that same order_id"),
    ("audit", audit_holes_from_row_count, "to the largest order_no"),
    ("speedup", speedup_from_sent, "count the ticks DELIVERED"),
    ("speedup", speedup_upside_down, "it is upside down"),
    ("speedup", speedup_from_times, "compare rates (ticks per second), not times"),
    ("expected_wait", wait_without_rounding, "rounded up"),
    ("expected_wait", wait_whole_interval, "half the interval"),
    ("expected_wait", wait_doorbell_polls, "does not depend on any interval"),
]


# -- the package's own code passes the checks: the exercises match the system -----

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


# --- lesson 05 / 06 (issue 9) -----------------------------------------------------------

def trigger_always_price(before, now):
    return "price"


def trigger_ignores_none(before, now):
    side = now[0]
    price = before[0] is not None and before[0] != side
    news = before[1] is not None and before[1] != side
    return "both" if price and news else ("price" if price else "news")


def trigger_loops_forever(before, now):
    while True:
        pass


def notional_replaces_the_rules(order, config, last_price, max_notional):
    return "too big" if order.qty * order.price > max_notional else None


def notional_at_book_price(order, config, last_price, max_notional):
    reason = check_order(order, config, last_price)
    price = last_price if last_price is not None else order.price
    return reason or ("too big" if order.qty * price > max_notional else None)


def notional_strict(order, config, last_price, max_notional):
    reason = check_order(order, config, last_price)
    return reason or ("too big" if order.qty * order.price >= max_notional else None)


WRONG += [
    ("trigger", trigger_always_price, "the averages had already crossed up; the news turned"),
    ("trigger", trigger_ignores_none, "is not agreement: the price signal turned"),
    ("trigger", trigger_loops_forever, "did not return within"),
    ("notional_limit", notional_replaces_the_rules, "a rule is ADDED to the others"),
    ("notional_limit", notional_at_book_price, "use the order's own price, not the book's"),
    ("notional_limit", notional_strict, "at the limit is allowed"),
]


def test_the_seeded_replay_trades_mostly_when_the_news_turns():
    """Lesson 05's claim: a trade happens when the second signal turns, most often the news."""
    from collections import Counter

    signals, trades = lesson05.seeded_replay()
    labels = Counter(solutions.trigger(signals[t - 2], signals[t - 1]) for t, _ in trades)
    assert labels == {"news": 7, "price": 2, "both": 3}


# --- lesson 01 ---

def framer_one_frame_per_chunk():
    def feed(data):
        return [data[4:4 + int.from_bytes(data[:4], "big")]]
    return feed


def framer_one_byte_length():
    buffer = b""

    def feed(data):
        nonlocal buffer
        buffer += data
        out = []
        while len(buffer) >= 4 and len(buffer) >= 4 + buffer[3]:
            out.append(buffer[4:4 + buffer[3]])
            buffer = buffer[4 + buffer[3]:]
        return out
    return feed


def framer_reads_partial_header():
    import struct
    buffer = b""

    def feed(data):
        nonlocal buffer
        buffer += data
        out = []
        while buffer:
            (size,) = struct.unpack(">I", buffer[:4])
            if len(buffer) < 4 + size:
                break
            out.append(buffer[4:4 + size])
            buffer = buffer[4 + size:]
        return out
    return feed


def framer_waits_forever():
    buffer = b""

    def feed(data):
        nonlocal buffer
        buffer += data
        out = []
        while len(buffer) >= 4:      # never gives up when a payload is incomplete
            size = int.from_bytes(buffer[:4], "big")
            if len(buffer) >= 4 + size:
                out.append(buffer[4:4 + size])
                buffer = buffer[4 + size:]
        return out
    return feed


def framer_splits_on_newlines():
    inner = solutions.make_length_framer()

    def feed(data):
        return [part for p in inner(data) for part in p.split(b"\n")]
    return feed


WRONG += [
    ("make_length_framer", framer_one_frame_per_chunk, "several frames"),
    ("make_length_framer", framer_splits_on_newlines, "any bytes, b'\\n' too"),
    ("make_length_framer", framer_one_byte_length, "4 bytes, big-endian"),
    ("make_length_framer", framer_reads_partial_header, "once all 4 bytes are there"),
    ("make_length_framer", framer_waits_forever, "loops forever"),
]


# --- lesson 02 ---

def fix_any_valid_qty(order, reject, max_qty):
    return order._replace(qty=10) if "maximum" in reject.reason else None


def fix_new_id(order, reject, max_qty):
    return order._replace(order_id="new", qty=max_qty) if "maximum" in reject.reason else None


def fix_fixed_limit(order, reject, max_qty):
    return order._replace(qty=1000) if "maximum" in reject.reason else None


def fix_always(order, reject, max_qty):
    return order._replace(qty=max(1, min(order.qty, max_qty)))


def fix_clamps_everything(order, reject, max_qty):
    return order._replace(qty=min(order.qty, max_qty)) if order.qty > 0 else None


WRONG += [
    ("fix_quantity", fix_any_valid_qty, "gives away part of the order"),
    ("fix_quantity", fix_new_id, "changed order_id"),
    ("fix_quantity", fix_fixed_limit, "use the max_qty you are given"),
    ("fix_quantity", fix_always, "no quantity can stand for it"),
    ("fix_quantity", fix_clamps_everything, "out of the band"),
]


def test_fix_quantity_cases_agree_with_the_order_manager():
    """The fixed order the solution sends is one the order manager's own rules book."""
    from hftlab.config import Config

    order = protocol.Order("ex-1", 1, "SELL", 5000, "MSFT", 407.58)
    reject = protocol.Reject("ex-1", check_order(order, Config()))
    fixed = solutions.fix_quantity(order, reject, Config().max_qty)
    assert check_order(fixed, Config()) is None and fixed.qty == Config().max_qty


# --- lesson 03 ---

def test_bounded_returns_the_value_in_time():
    assert checks.bounded(lambda a, b: a + b, 2, 3, seconds=5) == 5


def test_bounded_gives_the_hint_instead_of_hanging():
    """A function that never returns becomes a failed case with the hint, within the bound."""
    import threading
    import time

    spins = []

    def never_returns():
        while True:
            spins.append(1)
            if len(spins) > 1000:
                spins.clear()

    started = time.monotonic()
    with pytest.raises(checks.DidNotReturn) as caught:
        checks.bounded(never_returns, seconds=0.5, hint="your read never re-reads the version")
    assert time.monotonic() - started < 30
    assert "did not return within 0.5 s" in str(caught.value)
    assert "your read never re-reads the version" in str(caught.value)
    # the runaway thread is asked to stop, so it does not keep a core busy
    deadline = time.monotonic() + 30
    while any(t.name == "bounded-never_returns" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the runaway thread was not stopped"
        time.sleep(0.05)


def test_bounded_passes_not_done_yet_and_names_a_crash():
    with pytest.raises(NotImplementedError):
        checks.bounded(stub, 1)

    def crashes(x):
        return 1 / x

    with pytest.raises(common.Wrong, match=r"it raised ZeroDivisionError: .* \(0\)"):
        checks.bounded(crashes, 0)


def test_a_check_using_bounded_prints_the_hint(capsys):
    """Inside a check, the hint is printed like any failed case and the cell goes on."""
    def judge(fn, case):
        checks.bounded(fn, case, seconds=0.3, hint="the loop never ends")

    def loops(_):
        while True:
            pass

    assert not common.run_cases("loops", loops, [1], judge)
    out = capsys.readouterr().out
    assert out.startswith("loops is not right yet: loops did not return within 0.3 s"), out
    assert "Hint: the loop never ends" in out


def seqlock_never_rereads(load_version, load_fields):
    """Waits for an even version, but on the number it read once: loops for ever."""
    before = load_version()
    while before % 2:
        pass
    return load_fields()


def test_a_looping_seqlock_read_gets_a_hint_not_a_hang(capsys):
    assert not checks.check_seqlock_read(seqlock_never_rereads)
    out = capsys.readouterr().out
    assert out.startswith("seqlock_read is not right yet: "), out
    assert "never re-reads the version" in out, out


def test_the_seqlock_read_runs_against_a_real_writer_process():
    """The solution reads whole records from a real writer; a reader without the
    protocol gets torn ones and the hint."""
    assert checks.seqlock_against_a_writer(solutions.seqlock_read) > 0

    def no_protocol(load_version, load_fields):
        return load_fields()

    with pytest.raises(common.Wrong, match="torn copy"):
        checks.seqlock_against_a_writer(no_protocol)


# --- lesson 04 ---

def _subscription(session, seqs, hb=None):
    """The bytes one subscriber reads: HELLO, prices with these seqs, maybe a heartbeat, and
    a half line (a subscriber that leaves mid-line)."""
    msgs = [protocol.Hello("PRICE", session)]
    msgs += [protocol.Price(s, 1000 + s, "AAPL" if s % 2 else "MSFT", 100.0 + s) for s in seqs]
    if hb is not None:
        msgs.append(protocol.Heartbeat(hb, 9000))
    return b"".join(protocol.encode(m) for m in msgs) + b"PRICE,99"


LIVE = [_subscription("5e55f00d", range(40, 60)),
        _subscription("5e55f00d", range(75, 95)),          # resubscribed: 60..74 lost
        _subscription("0badcafe", range(1, 21), hb=22)]    # restarted; HB says 21, 22 lost


def gaps_reset_on_every_hello(messages):
    n, last = 0, None
    for m in messages:
        if isinstance(m, protocol.Hello):
            last = None
        elif isinstance(m, protocol.Price):
            if last is not None and m.seq > last + 1:
                n += m.seq - last - 1
            last = m.seq
        elif isinstance(m, protocol.Heartbeat):
            if last is not None and m.last_seq > last:
                n += m.last_seq - last
                last = m.last_seq
    return n


def test_count_gaps_live_agrees_with_the_feed_handler(capsys):
    assert checks.check_count_gaps_live(solutions.count_gaps, LIVE)
    assert capsys.readouterr().out == "All 1 cases pass\n"
    assert not checks.check_count_gaps_live(stub, LIVE)
    assert capsys.readouterr().out.startswith("not done yet")


def gaps_keep_the_old_session(messages):
    n, last = 0, None
    for m in messages:
        if isinstance(m, (protocol.Price, protocol.Heartbeat)):
            seq = m.seq if isinstance(m, protocol.Price) else m.last_seq + 1
            if last is not None and seq > last + 1:
                n += seq - last - 1
            last = max(last or 0, seq if isinstance(m, protocol.Price) else m.last_seq)
    return n


def gaps_restart_is_a_gap(messages):
    n, last = 0, None
    for m in messages:
        if isinstance(m, protocol.Price):
            if last is not None and m.seq != last + 1:
                n += abs(m.seq - last - 1)
            last = m.seq
        elif isinstance(m, protocol.Heartbeat) and last is not None and m.last_seq > last:
            n += m.last_seq - last
            last = m.last_seq
    return n


@pytest.mark.parametrize("wrong, hint", [
    (gaps_reset_on_every_hello, "a HELLO with the SAME session is a resubscription"),
    (gaps_keep_the_old_session, "compare its seqs with each other, not with the old session's"),
    (gaps_restart_is_a_gap, "its seq 1 follows nothing of the old session"),
])
def test_count_gaps_live_hints(wrong, hint, capsys):
    assert not checks.check_count_gaps_live(wrong, LIVE)
    out = capsys.readouterr().out
    assert out.startswith("count_gaps is not right yet: on "), out
    assert "the orderbook's FeedHandler counts 17 lost" in out, out
    assert hint in out, out


# --- lesson 07 ---

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


def test_gateway_kill_is_judged_against_what_was_observed(capsys):
    seen = dict(checks.GATEWAY_KILL_TRUTH, orderbook="exited")
    assert not checks.check_gateway_kill(solutions.gateway_kill, seen)
    assert "the book view showed 'exited'" in capsys.readouterr().out


def test_gateway_kill_answer_that_never_returns_gets_a_hint_in_seconds(capsys):
    try:
        assert not checks.check_gateway_kill(predicts_forever)
        assert "did not return within 5 s" in capsys.readouterr().out
    finally:
        RELEASE.set()     # end the thread the check left behind, so no test sees it


# --- lesson 08: conflation ---

def seen_counts_every_tick(looks):
    return looks[-1] - looks[0], 0


def seen_counts_the_first_value(looks):
    seen, missed = solutions.seen_and_missed(looks)
    return seen + 1, missed


WRONG += [("seen_and_missed", seen_counts_every_tick, "missed k - 1"),
          ("seen_and_missed", seen_counts_the_first_value, "only where counting starts")]


# -- every check: the solution passes, the stub is not done yet, each wrong answer gets its hint

@pytest.mark.parametrize("name", sorted(CHECKS))
def test_solution_passes(name, capsys):
    assert CHECKS[name](getattr(solutions, name))
    out = capsys.readouterr().out
    assert out.startswith("All ") and out.rstrip().endswith(" cases pass"), out


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_stub_is_not_done_yet(name, capsys):
    assert not CHECKS[name](stub)
    assert capsys.readouterr().out == f"not done yet: complete {name} above, then run this cell again.\n"


@pytest.mark.parametrize("name, wrong, hint", WRONG,
                         ids=lambda v: getattr(v, "__name__", None) if callable(v) else None)
def test_wrong_answer_gets_its_hint(name, wrong, hint, capsys):
    assert not CHECKS[name](wrong)
    out = capsys.readouterr().out
    assert out.startswith(f"{name} is not right yet: "), out
    assert hint in out, out


def test_every_check_has_a_wrong_answer():
    assert {name for name, _, _ in WRONG} == set(CHECKS)
