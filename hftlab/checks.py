"""Self-checks for the lessons' exercises: run a learner's function against known cases.

Each ``check_*(fn)`` calls ``fn`` on a handful of cases and prints either
``All N cases pass`` or what is wrong with the first failing case and a hint
that points at the idea the case tests (not just "False"). It returns a true or
false `Verdict` so that tests (tests/test_checks.py) can run it against the solutions
(`hftlab.solutions`), the stubs and plausible wrong answers.

A stub that still raises NotImplementedError is "not done yet", not a failure,
so a lesson notebook runs cleanly from top to bottom before any exercise is
done.

Where the package already holds the answer (`hftlab.rules`,
`hftlab.order_manager.check_order`, the book's dtypes), the expected
values come from there, so an exercise can never disagree with the code the
processes run.
"""

from __future__ import annotations

import math

from hftlab import book
from hftlab import order_manager, protocol, rules
from hftlab.alternatives.feeds import FeedResult
from hftlab.config import Config

__all__ = [
    "check_footprint", "check_seqlock_read", "check_split_frames", "check_count_gaps",
    "check_moving_average", "check_price_signal", "check_order_for", "check_validate_order",
    "check_audit", "check_speedup", "check_expected_wait",
]


class Verdict:
    """What a check returns: true if every case passed.

    It shows nothing in a notebook (the check has already printed its verdict), so a
    check cell's output is just that sentence.
    """

    def __init__(self, passed: bool):
        self.passed = passed

    def __bool__(self):
        return self.passed

    def __repr__(self):
        return f"Verdict(passed={self.passed})"

    def _ipython_display_(self):
        pass


class _Wrong(Exception):
    """One case failed: the message says which and gives the hint."""


def _run(name, fn, cases, judge):
    """Run judge(fn, case) for each case; print and return the verdict."""
    try:
        for case in cases:
            judge(fn, case)
    except NotImplementedError:
        print(f"not done yet: complete {name} above, then run this cell again.")
        return Verdict(False)
    except _Wrong as wrong:
        print(f"{name} is not right yet: {wrong}")
        return Verdict(False)
    print(f"All {len(cases)} cases pass")
    return Verdict(True)


def _call(fn, *args):
    """fn(*args), turning a crash (other than NotImplementedError) into a _Wrong."""
    try:
        return fn(*args)
    except NotImplementedError:
        raise
    except Exception as exc:  # the learner's code: any crash is a finding
        shown = ", ".join(repr(a) for a in args)
        raise _Wrong(f"it raised {type(exc).__name__}: {exc} when called with ({shown})") from None


def _expect(got, want, call, hint):
    if got != want:
        raise _Wrong(f"{call} returned {got!r}, expected {want!r}.\n  Hint: {hint}")


# -- lesson 03: shared memory ------------------------------------------------------

def check_footprint(fn) -> Verdict:
    """fn(n_symbols, page_size) -> (bytes the book's layout uses, bytes mapped)."""
    cases = [(1, 4096), (4, 4096), (64, 4096), (4, 16384), (73, 64)]

    def judge(fn, case):
        n, page = case
        used = book.HEADER_DTYPE.itemsize + n * book.RECORD_DTYPE.itemsize
        want = (used, -(-used // page) * page)
        got = _call(fn, n, page)
        if not (isinstance(got, tuple) and len(got) == 2):
            raise _Wrong(f"footprint({n}, {page}) returned {got!r}: return a pair (used, mapped).")
        _expect(got[0], want[0], f"footprint({n}, {page})[0]",
                "one header (HEADER_DTYPE.itemsize) plus one record (RECORD_DTYPE.itemsize) per symbol.")
        _expect(got[1], want[1], f"footprint({n}, {page})[1]",
                "the kernel maps whole pages: round `used` UP to a multiple of page_size "
                "(a partly used page is still a whole page).")

    return _run("footprint", fn, cases, judge)


class _ScriptedRecord:
    """A record whose version and fields follow a script, as a busy writer would make them.

    `script` is a list of (version, fields) states; each call to load_version() or
    load_fields() sees the current state and then moves one step on (the writer does not
    wait for the reader), staying on the last state at the end.
    """

    def __init__(self, script):
        self.script, self.step = script, 0

    def _now(self):
        state = self.script[min(self.step, len(self.script) - 1)]
        self.step += 1
        return state

    def load_version(self):
        return self._now()[0]

    def load_fields(self):
        return self._now()[1]


def check_seqlock_read(fn) -> Verdict:
    """fn(load_version, load_fields) -> a consistent copy of the fields (seqlock reader)."""
    good, newer = (172.5, 7), (172.6, 8)
    cases = [
        ("a quiet record", [(2, good), (2, good), (2, good)], good,
         "read the version, copy the fields, read the version again; equal and even means done."),
        ("a writer in the middle of a write (odd version)",
         [(3, (172.6, 7)), (3, (172.6, 7)), (3, (172.6, 7)), (4, newer), (4, newer), (4, newer)], newer,
         "an odd version means a write is in progress: the fields may be half written. "
         "Try again until you read an even version."),
        ("a write that lands during the copy (version changes)",
         [(2, good), (2, (172.6, 7)), (4, newer), (4, newer), (4, newer), (4, newer)], newer,
         "read the version AFTER copying too: if it differs from the one before, the copy may "
         "mix old and new fields, so try again."),
    ]

    cases.append(("a real writer process", None, None, None))

    def judge(fn, case):
        what, script, want, hint = case
        if script is None:  # the last case: a real writer in another process
            return seqlock_against_a_writer(fn)
        record = _ScriptedRecord(script)
        got = bounded(fn, record.load_version, record.load_fields, hint=SEQLOCK_LOOPS)
        if got != want:
            raise _Wrong(f"for {what} it returned {got!r}, expected {want!r}.\n  Hint: {hint}")

    return _run("seqlock_read", fn, cases, judge)


# -- lesson 04: the orderbook (feed handler) ---------------------------------------

def check_split_frames(fn) -> Verdict:
    """fn(pending, data) -> (complete lines without b'\\n', the new pending bytes)."""
    stream = b"PRICE,1,100,AAPL,172.50\nPRICE,2,100,MSFT,410.00\nHB,2,200\n"
    lines = stream.split(b"\n")[:-1]

    def whole(chunks):
        pending, out = b"", []
        for chunk in chunks:
            result = _call(fn, pending, chunk)
            if not (isinstance(result, tuple) and len(result) == 2):
                raise _Wrong(f"split_frames({pending!r}, {chunk!r}) returned {result!r}: "
                             "return a pair (lines, pending).")
            got, pending = result
            out += list(got)
        return out, pending

    cases = [
        ("the whole stream in one chunk", [stream],
         "one recv() can hold several messages: return every complete line, and no more "
         "(what follows the last b'\\n' is pending, not a line)."),
        ("one byte at a time", [stream[i:i + 1] for i in range(len(stream))],
         "a recv() can end in the middle of a line: keep the tail as `pending` and glue the "
         "next chunk onto it."),
        ("chunks of 7 bytes", [stream[i:i + 7] for i in range(0, len(stream), 7)],
         "lines and chunks do not line up: split pending + data on b'\\n' and keep the last piece."),
        ("a chunk that ends exactly on a newline", [stream[:24], stream[24:]],
         "when the data ends with b'\\n' nothing is pending: the new pending is b''."),
    ]

    def judge(fn, case):
        what, chunks, hint = case
        got, pending = whole(chunks)
        if got != lines or pending != b"":
            raise _Wrong(f"fed {what}, it gave lines {got!r} with {pending!r} pending; expected "
                         f"{lines!r} with b'' pending.\n  Hint: {hint}")

    return _run("split_frames", fn, cases, judge)


def check_count_gaps(fn) -> Verdict:
    """fn(messages) -> how many price messages were lost, by sequence number."""
    H, P, B = protocol.Hello, protocol.Price, protocol.Heartbeat

    def price(seq):
        return P(seq, 1000 + seq, "AAPL", 172.5)

    cases = [
        ([H("PRICE", "s1"), price(1), price(2), price(3)], 0,
         "consecutive sequence numbers mean nothing was lost."),
        ([H("PRICE", "s1"), price(1), price(2), price(5)], 2,
         "count the missing messages, not the gaps: after 2, seq 5 means 3 and 4 were lost."),
        ([H("PRICE", "s1"), price(1), price(4), price(5), price(9)], 5,
         "add up every gap in the stream: 2 and 3 lost, then 6, 7 and 8."),
        ([H("PRICE", "s1"), price(1), B(1, 2000), B(3, 3000)], 2,
         "a heartbeat says the last seq the gateway sent: HB 1 after seq 1 is a quiet market, "
         "HB 3 means 2 and 3 were lost even though no price follows."),
        ([H("PRICE", "s1"), price(1), price(2), H("PRICE", "s2"), price(10), price(11)], 0,
         "a HELLO with a new session is a restarted gateway: its numbering started again, "
         "so seq 10 of the new session says nothing about seq 2 of the old one: not a gap."),
        ([H("PRICE", "s1"), price(7), price(8)], 0,
         "the first message of a session sets where you start: joining at seq 7 loses nothing "
         "you could have had."),
    ]

    def judge(fn, case):
        msgs, want, hint = case
        got = _call(fn, list(msgs))
        shown = ", ".join(f"{protocol.wire_type(m)} {m[0] if not isinstance(m, H) else m.session}"
                          for m in msgs)
        _expect(got, want, f"count_gaps([{shown}])", hint)

    return _run("count_gaps", fn, cases, judge)


# -- lesson 05: the strategy -------------------------------------------------------

def check_moving_average(fn) -> Verdict:
    """fn(values, n) -> the mean of the last n values."""
    cases = [
        (([1.0, 2.0, 3.0], 3), "the mean of all three values."),
        (([1.0, 2.0, 3.0, 4.0, 5.0], 2), "only the LAST n values count: the window slides."),
        (([10.0, 20.0, 30.0, 40.0], 3), "the last n values are values[-n:]."),
        (([5.0], 1), "a window of one is the last value itself."),
    ]

    def judge(fn, case):
        (values, n), hint = case
        want = rules.moving_average(values, n)
        got = _call(fn, list(values), n)
        if not (isinstance(got, (int, float)) and math.isclose(got, want)):
            raise _Wrong(f"moving_average({values}, {n}) returned {got!r}, expected {want!r}.\n"
                         f"  Hint: {hint}")

    return _run("moving_average", fn, cases, judge)


def check_price_signal(fn) -> Verdict:
    """fn(history, short, long) -> 'BUY', 'SELL' or None."""
    cases = [
        (([1, 2, 3, 4, 5], 2, 4), "rising prices: the short average is above the long one."),
        (([5, 4, 3, 2, 1], 2, 4), "falling prices: the short average is below the long one."),
        (([3, 3, 3, 3, 3], 2, 4), "equal averages are no signal: the rule is STRICTLY above or below."),
        (([1, 2, 3], 2, 4), "fewer prices than the long window: there is no long average yet, so no signal."),
        (([9, 1, 1, 1, 1, 5], 2, 4), "use the last `long` prices for the long average, not all of them."),
    ]

    def judge(fn, case):
        (history, short, long), hint = case
        want = rules.price_signal(history, short, long)
        got = _call(fn, list(history), short, long)
        _expect(got, want, f"price_signal({history}, {short}, {long})", hint)

    return _run("price_signal", fn, cases, judge)


def check_order_for(fn) -> Verdict:
    """fn(position, side, qty) -> (side, quantity) to send, or None."""
    cases = [
        ((0, "BUY", 10), "flat and told to BUY: buy qty to become long qty."),
        ((10, "BUY", 10), "already long: another BUY would be a duplicate order, so send nothing."),
        ((10, "SELL", 10), "long 10 and told to SELL: sell 20, to go from +10 to -10."),
        ((-10, "SELL", 10), "already short: send nothing."),
        ((-10, "BUY", 10), "short 10 and told to BUY: buy 20."),
        ((0, None, 10), "no signal, no order."),
    ]

    def judge(fn, case):
        (position, side, qty), hint = case
        want = rules.order_for(position, side, qty)
        got = _call(fn, position, side, qty)
        if isinstance(got, list):
            got = tuple(got)
        _expect(got, want, f"order_for({position}, {side!r}, {qty})", hint)

    return _run("order_for", fn, cases, judge)


# -- lesson 06: the order manager --------------------------------------------------

def check_validate_order(fn) -> Verdict:
    """fn(order, config, last_price) -> None to accept, or a reason (str) to reject."""
    config = Config(symbols=("AAPL", "MSFT"), max_qty=100, price_band=0.10)

    def order(qty=10, symbol="AAPL", price=172.50):
        return protocol.Order("o1", 1, "BUY", qty, symbol, price)

    cases = [
        (order(), 172.40, "a sound order is accepted: return None."),
        (order(), None, "no price in the book yet: skip the band check and accept."),
        (order(symbol="TSLA"), None, "reject a symbol the system does not trade."),
        (order(qty=0), None, "reject a quantity of zero or less: it books nothing."),
        (order(qty=-5), None, "reject a negative quantity: the side says buy or sell, qty is how many."),
        (order(qty=101), None, "reject a quantity above config.max_qty."),
        (order(qty=100), None, "a quantity equal to max_qty is allowed."),
        (order(price=200.0), 172.40, "reject a price more than config.price_band away from the "
                                     "book's last price (a fat finger)."),
        (order(price=180.0), 172.40, "a price within the band is fine: 180.00 is 4% away."),
        (order(price=0.0), None, "reject a price of zero or less."),
    ]

    def judge(fn, case):
        o, last, hint = case
        want = order_manager.check_order(o, config, last)
        got = _call(fn, o, config, last)
        call = f"validate_order(ORDER {o.side} {o.qty} {o.symbol} @ {o.price:.2f}, last price {last})"
        if want is None and got is not None:
            raise _Wrong(f"{call} rejected it ({got!r}) but it should be accepted.\n  Hint: {hint}")
        if want is not None and not (isinstance(got, str) and got):
            raise _Wrong(f"{call} returned {got!r}, but it must be rejected with a reason "
                         f"(e.g. {want!r}).\n  Hint: {hint}")

    return _run("validate_order", fn, cases, judge)


# -- lesson 09: faults and recovery ------------------------------------------------

def check_audit(fn) -> Verdict:
    """fn(journal_rows, acks) -> {"missing": [...], "twice": [...], "holes": [...]}."""

    def rows(*pairs):
        return [{"order_no": str(no), "order_id": oid, "side": "BUY", "qty": "10",
                 "symbol": "AAPL", "price": "172.50"} for no, oid in pairs]

    clean = rows((1, "a-1"), (2, "a-2"), (3, "b-1"))
    cases = [
        (clean, [("a-1", 1), ("a-2", 2), ("b-1", 3)], {"missing": [], "twice": [], "holes": []},
         "a clean journal: every ACK in it, each id once, numbers 1..3."),
        (clean, [("a-1", 1)], {"missing": [], "twice": [], "holes": []},
         "orders in the journal that the strategy has not heard ACKed yet are fine: in flight."),
        (clean, [("a-1", 1), ("a-9", 4)], {"missing": [4], "twice": [], "holes": []},
         "an ACK whose number is not in the journal is a trade the broker forgot: report its number."),
        (clean, [("a-2", 1)], {"missing": [1], "twice": [], "holes": []},
         "an ACK is only confirmed if the journal has that number under that same order_id."),
        (rows((1, "a-1"), (2, "a-1"), (3, "a-1")), [], {"missing": [], "twice": ["a-1"], "holes": []},
         "an id booked more than once is listed once in 'twice'."),
        (rows((1, "a-1"), (3, "a-3"), (6, "a-6")), [], {"missing": [], "twice": [], "holes": [2, 4, 5]},
         "holes are the numbers from 1 to the largest order_no that no row has; journal values are strings."),
        ([], [], {"missing": [], "twice": [], "holes": []}, "an empty journal has no problems."),
    ]

    def judge(fn, case):
        journal, acks, want, hint = case
        got = _call(fn, journal, acks)
        if not isinstance(got, dict) or {k: sorted(got.get(k, [])) for k in want} != want or \
                any(list(got[k]) != sorted(got[k]) for k in want):
            raise _Wrong(f"audit of {len(journal)} journal rows and ACKs {acks} gave {got!r}; "
                         f"expected {want!r} (lists sorted).\n  Hint: {hint}")

    return _run("audit", fn, cases, judge)


# -- lesson 11: why these choices --------------------------------------------------

def check_speedup(fn) -> Verdict:
    """fn(new, base) -> how many times as many ticks per second `new` delivered as `base`."""
    def run(transport, sent, delivered, seconds):
        return FeedResult(transport, sent, delivered, sent - delivered, 0, seconds)

    cases = [
        (run("queue_batched", 1000, 1000, 0.25), run("queue", 1000, 1000, 2.0),
         "each run's rate is its ticks over its seconds; divide the new rate by the base rate."),
        (run("tcp", 4000, 4000, 1.0), run("queue", 1000, 1000, 1.0),
         "the two runs sent different numbers of ticks: compare rates (ticks per second), "
         "not times."),
        (run("zmq", 100_000, 10_000, 0.1), run("tcp", 100_000, 100_000, 0.5),
         "count the ticks DELIVERED: a tick that ZeroMQ dropped was not carried, however "
         "fast it was sent."),
        (run("tcp", 500, 500, 0.5), run("tcp", 500, 500, 0.5), "the same run twice is 1.0."),
    ]

    def judge(fn, case):
        new, base, hint = case
        want = new.ticks_per_s / base.ticks_per_s
        got = _call(fn, new, base)
        call = f"speedup({new.transport} {new.delivered:,} of {new.sent:,} in {new.seconds:g} s, " \
               f"{base.transport} {base.delivered:,} of {base.sent:,} in {base.seconds:g} s)"
        if isinstance(got, bool) or not isinstance(got, (int, float)):
            raise _Wrong(f"{call} returned {got!r}: return a number (a ratio, like 2.5).")
        if not math.isclose(got, want, rel_tol=1e-6):
            if want != 1 and got and math.isclose(got, 1 / want, rel_tol=1e-6):
                hint = ("it is upside down: how many times as fast `new` is means new's rate "
                        "divided by base's rate.")
            raise _Wrong(f"{call} returned {got!r}, expected {want!r}.\n  Hint: {hint}")

    return _run("speedup", fn, cases, judge)


# --- lesson 05 / 06 (issue 9): decisions on the live system ---------------------------

__all__ += ["check_trigger", "check_notional_limit"]


def _bounded(fn, *args, seconds=5.0):
    """`bounded`, with the hint these answers need."""
    return bounded(fn, *args, seconds=seconds,
                   hint="look for a loop that never ends; each answer needs only a few comparisons.")


def _seeded_replay(ticks: int = 300, config: Config | None = None):
    """The seeded market of lesson 05 through `rules.Trader`, every order confirmed at once.

    Returns (signals, trades): signals[t - 1] is the (price side, news side) on tick t,
    and trades is [(tick, Decision), ...]."""
    from hftlab.gateway import NewsWalk, PriceWalk

    config = config or Config(symbols=("AAPL",))
    walk, mood = PriceWalk(config.symbols[:1], config.seed), NewsWalk(config.seed)
    trader = rules.Trader.from_config(config)
    ticks_per_news = round(config.news_interval / config.tick_interval)
    signals, trades = [], []
    for tick in range(1, ticks + 1):
        if tick % ticks_per_news == 0:
            trader.on_news(mood.step())
        (symbol, price), = walk.step()
        decision = trader.on_price(symbol, price)
        history = trader.history[symbol]
        signals.append((rules.price_signal(history, config.short_window, config.long_window),
                        rules.news_signal(trader.sentiment, config.bullish, config.bearish)))
        if decision is not None:
            trader.sent(f"o{tick}", decision)
            trader.on_ack(f"o{tick}")
            trades.append((tick, decision))
    return signals, trades


def _turned(before, now):
    side = now[0]
    price, news = before[0] != side, before[1] != side
    return "both" if price and news else ("price" if price else "news")


def check_trigger(fn) -> Verdict:
    """fn(before, now) -> 'price', 'news' or 'both': which signal turned to make the trade.

    `before` and `now` are (price side, news side) on the tick before a trade and on the
    trade's tick; on the trade's tick both name the trade's side."""
    cases = [
        ((("SELL", "BUY"), ("BUY", "BUY")), "the news already said BUY; the price signal turned from SELL."),
        ((("BUY", "SELL"), ("BUY", "BUY")), "the averages had already crossed up; the news turned to BUY."),
        ((("BUY", None), ("BUY", "BUY")), "no news yet (None) is not agreement: the news turned."),
        (((None, "SELL"), ("SELL", "SELL")), "no price signal yet (too little history) is not "
                                              "agreement: the price signal turned."),
        ((("BUY", "BUY"), ("SELL", "SELL")), "both signals turned on the same tick (a news message "
                                             "and a price at once): 'both'."),
        ((("SELL", None), ("BUY", "BUY")), "neither named BUY on the tick before: 'both'."),
    ]
    signals, trades = _seeded_replay()
    for tick, decision in trades:
        cases.append(((signals[tick - 2], signals[tick - 1]),
                      f"the seeded replay's trade on tick {tick} ({decision.side}): compare each signal "
                      "on the tick before with the trade's side."))

    def judge(fn, case):
        (before, now), hint = case
        got = _bounded(fn, before, now)
        _expect(got, _turned(before, now), f"trigger({before}, {now})", hint)

    return _run("trigger", fn, cases, judge)


def check_notional_limit(fn) -> Verdict:
    """fn(order, config, last_price, max_notional) -> None to accept, or a reason (str):
    every rule of `order_manager.check_order`, plus qty x price at most max_notional."""
    config = Config(symbols=("AAPL", "MSFT"), max_qty=1000, price_band=0.10)

    def order(qty=10, symbol="AAPL", price=172.50):
        return protocol.Order("o1", 1, "BUY", qty, symbol, price)

    cases = [
        (order(), 172.40, True, "a small sound order is accepted: return None."),
        (order(qty=600), 172.40, False, "600 x 172.50 = 103,500 is above the limit of 100,000: "
                                        "the notional is the quantity times the price."),
        (order(qty=400, price=250.0), None, True, "400 x 250.00 is exactly 100,000: at the limit is allowed."),
        (order(qty=560, price=180.0), 172.40, False,
         "560 x 180.00 = 100,800 is what the order commits: use the order's own price, not the book's."),
        (order(symbol="TSLA"), None, False, "a rule is ADDED to the others, not used instead of them: "
                                            "an unknown symbol must still be rejected (call check_order first)."),
        (order(price=1725.0), 172.40, False, "the price band still holds: call check_order first."),
        (order(qty=0), None, False, "a quantity of zero is still rejected: call check_order first."),
        (order(qty=5, symbol="MSFT", price=410.0), 409.0, True, "5 x 410.00 is far below the limit."),
    ]

    def judge(fn, case):
        o, last, accept, hint = case
        got = _bounded(fn, o, config, last, 100_000)
        call = (f"your rule on BUY {o.qty} {o.symbol} @ {o.price:.2f} (book {last}, limit 100,000)")
        if accept and got is not None:
            raise _Wrong(f"{call} rejected it ({got!r}) but it should be accepted.\n  Hint: {hint}")
        if not accept and not (isinstance(got, str) and got):
            raise _Wrong(f"{call} returned {got!r}, but it must be rejected with a reason.\n  Hint: {hint}")

    return _run("notional_limit", fn, cases, judge)


# --- lesson 01 ---

__all__ += ["check_make_length_framer"]

def _within_seconds(seconds, judge, fn, case):
    """judge(fn, case) under `bounded`: a learner's loop that never ends is a hint, not a hang."""
    bounded(judge, fn, case, seconds=seconds, what="your framer",
            hint="it probably loops forever: each pass of a loop must either take a whole frame "
                 "out of the buffer or stop (return) until more bytes arrive.")


def _length_frame(payload: bytes) -> bytes:
    """A length-prefixed frame: the payload's length as 4 bytes, big-endian, then the payload."""
    return len(payload).to_bytes(4, "big") + payload


def check_make_length_framer(make) -> Verdict:
    """make() -> feed; feed(data) -> the payloads of the frames completed so far, in order."""
    mixed = [b"ACK,a1,1", b"", b"line one\nline two", b"y" * 300, b"HB,2,200"]
    cases = [
        ("three frames in one chunk", [b"ACK,a1,1", b"ACK,a2,2", b"HB,2,200"], "whole",
         "one recv() can hold several frames: after one frame, read the next header from "
         "what is left, until fewer bytes than a whole frame remain."),
        ("an empty payload between two others", [b"A", b"", b"B"], "whole",
         "a length of 0 is a frame whose payload is b'': return it, then go on."),
        ("payloads that contain newlines and commas", [b"line one\nline two", b"a,b\n"], "whole",
         "the payload may hold any bytes, b'\\n' too: find frames by their length, never "
         "by a delimiter."),
        ("a 300-byte payload", [b"x" * 300], "whole",
         "the length is 4 bytes, big-endian: int.from_bytes(header, 'big'); 300 does not fit "
         "in one byte, and little-endian reads it as another number."),
        ("the mixed stream one byte at a time", mixed, "bytes",
         "a chunk can end inside the 4-byte header: keep the bytes, and read a length only "
         "once all 4 bytes are there."),
        ("the mixed stream split in two at every position", mixed, "every split",
         "a chunk can end inside a payload: keep the bytes until header + length of them "
         "have arrived, then cut the frame off and keep the rest."),
    ]

    def chunkings(stream, how):
        if how == "whole":
            return [[stream]]
        if how == "bytes":
            return [[stream[i:i + 1] for i in range(len(stream))]]
        return [[stream[:cut], stream[cut:]] for cut in range(1, len(stream))]

    def judge(make, case):
        what, payloads, how, hint = case
        stream = b"".join(_length_frame(p) for p in payloads)
        for chunks in chunkings(stream, how):
            feed = _call(make)
            if not callable(feed):
                raise _Wrong(f"make_length_framer() returned {feed!r}: return the feed function.")
            got = []
            for chunk in chunks:
                try:
                    out = _call(feed, chunk)
                except _Wrong as crash:
                    raise _Wrong(f"fed {what}, {crash}.\n  Hint: {hint}") from None
                if not isinstance(out, list):
                    raise _Wrong(f"feed({chunk[:20]!r}...) returned {out!r}: return a list of "
                                 "payloads (bytes), [] when no frame is complete yet.")
                got += out
            if got != payloads:
                cut = f" (cut after byte {len(chunks[0])})" if how == "every split" else ""
                shown = [p if len(p) < 30 else p[:12] + b"..." for p in got]
                raise _Wrong(f"fed {what}{cut}, it gave {shown!r}; expected "
                             f"{[p if len(p) < 30 else p[:12] + b'...' for p in payloads]!r}."
                             f"\n  Hint: {hint}")

    return _run("make_length_framer", make, cases,
                lambda make, case: _within_seconds(5, judge, make, case))


# --- lesson 02 ---

__all__ += ["check_fix_quantity"]

def check_fix_quantity(fn) -> Verdict:
    """fn(order, reject, max_qty) -> the same order with the largest quantity that is booked,
    or None when no quantity would get it booked."""
    O, R = protocol.Order, protocol.Reject
    ts = 1764087000123456789
    cases = [
        (O("ex-1", ts, "SELL", 5000, "MSFT", 407.58), 1000, 407.60,
         "only the quantity was wrong: send the same order (same id, side, symbol, price) "
         "with the largest quantity the order manager books, max_qty."),
        (O("b7", ts, "BUY", 1001, "AAPL", 172.53), 1000, 172.50,
         "one too many is still too many: the largest booked quantity is max_qty."),
        (O("c3", ts, "BUY", 80, "AMZN", 179.88), 50, 179.90,
         "use the max_qty you are given: this order manager books at most 50."),
        (O("d4", ts, "SELL", 0, "AAPL", 172.53), 1000, 172.50,
         "an order for 0 (or fewer) says nothing about how much to trade: no quantity can "
         "stand for it, so return None and send nothing."),
        (O("e5", ts, "BUY", 10, "AAPL", 250.00), 1000, 172.50,
         "read the reason: the price is out of the band, and no quantity changes that. "
         "Return None."),
        (O("f6", ts, "BUY", 2000, "TSLA", 250.00), 1000, 250.00,
         "read the reason: the symbol is unknown, and a smaller quantity would be rejected "
         "again. Return None."),
    ]

    def judge(fn, case):
        order, max_qty, last_price, hint = case
        config = Config(max_qty=max_qty)
        reason = order_manager.check_order(order, config, last_price)
        reject = R(order.order_id, reason)
        candidate = order._replace(qty=min(order.qty, max_qty))
        want = candidate if order_manager.check_order(candidate, config, last_price) is None else None
        got = _call(fn, order, reject, max_qty)
        call = f"fix_quantity({order.side} {order.qty} {order.symbol} @ {order.price:.2f}, " \
               f"REJECT '{reason}', max_qty={max_qty})"
        if got is not None and not isinstance(got, O):
            raise _Wrong(f"{call} returned {got!r}: return a protocol.Order, or None.")
        if want is not None and isinstance(got, O) and got._replace(qty=want.qty) != want:
            changed = [f for f in O._fields if f != "qty" and getattr(got, f) != getattr(want, f)]
            raise _Wrong(f"{call} changed {', '.join(changed)}.\n  Hint: change only the "
                         "quantity: order._replace(qty=...).")
        if want is not None and isinstance(got, O) and 0 < got.qty < want.qty:
            hint = (f"qty {got.qty} would be booked, but it gives away part of the order: "
                    f"the largest quantity booked is {want.qty}.")
        _expect(got, want, call, hint)

    return _run("fix_quantity", fn, cases, judge)


# --- lesson 03 ---
# `bounded` is for every lesson's checks: a learner's loop must give a hint, not hang a cell.

__all__ += ["bounded", "DidNotReturn"]


class DidNotReturn(_Wrong):
    """The learner's function did not return in time: the message says what probably loops."""


def _stop_thread(thread) -> None:
    """Ask a runaway thread to stop by raising SystemExit in it at its next bytecode.

    Best effort, so a forgotten loop does not keep one of the machine's cores busy for
    the rest of the session: a thread blocked in C (a sleep, a recv) only stops when that
    call returns. The thread is a daemon anyway, so it never keeps the kernel alive.
    """
    import ctypes

    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident),
                                               ctypes.py_object(SystemExit))


def bounded(fn, *args, seconds: float = 3.0, hint: str = "something in it loops forever.",
            what: str | None = None):
    """fn(*args), but give up after `seconds` with a hint instead of hanging the cell.

    The learner's function runs in a daemon thread; if it has not returned in time,
    this raises `DidNotReturn` (a failed case, printed by the check with `hint`, which
    should say what probably loops, e.g. "your read never re-reads the version"), and
    the thread is asked to stop. NotImplementedError passes through ("not done yet");
    any other exception becomes a failed case that names it, as in `_call`.
    """
    import threading

    outcome = {}

    def run():
        try:
            outcome["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            outcome["error"] = exc

    thread = threading.Thread(target=run, name=f"bounded-{getattr(fn, '__name__', 'fn')}",
                              daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        _stop_thread(thread)
        name = what or getattr(fn, "__name__", "your function")
        raise DidNotReturn(f"{name} did not return within {seconds:g} s.\n  Hint: {hint}")
    error = outcome.get("error")
    if isinstance(error, (NotImplementedError, _Wrong)):  # "not done yet", or a judge's verdict
        raise error
    if error is not None:
        shown = ", ".join(repr(a) for a in args)
        raise _Wrong(f"it raised {type(error).__name__}: {error} when called with ({shown})")
    return outcome["value"]


SEQLOCK_LOOPS = ("it never returned: your read probably never re-reads the version. Each try "
                 "must start by reading it anew: the writer finishes its write, but a number you "
                 "read before stays odd (or stale) for ever.")

_SLOW_WRITER = '''import sys, time
from hftlab.book import open_untracked      # a reader of the check's segment: never unlinks it

shm = open_untracked(sys.argv[1])
words = shm.buf.cast("q")                   # version, four fields, done
print("ready", flush=True)
try:
    for k in range(1, int(sys.argv[2]) + 1):
        words[0] += 1                       # odd: a write is in progress
        for i in range(1, 5):
            words[i] = k                    # field by field, slowly: torn until the last one
            time.sleep(0.0002)
        words[0] += 1                       # even: whole again
        time.sleep(0.0002)
finally:
    words[5] = 1
    words.release()
    shm.close()
'''


def seqlock_against_a_writer(fn, rounds: int = 300, seconds: float = 30.0) -> int:
    """Run fn(load_version, load_fields) over and over against a real, slow writer process.

    The writer (another process) writes round k as four fields equal to k, one store at a
    time, with the seqlock's odd/even version around them, so it is in mid-write most of
    the time. Every copy fn returns must have four equal fields. Returns how many copies
    were read; raises _Wrong on a torn copy, DidNotReturn if fn does not return.
    """
    import subprocess
    import sys

    shm = book.create_untracked(book.new_name(), 48)
    words = shm.buf.cast("q")
    writer = None
    try:
        for i in range(6):
            words[i] = 0
        writer = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, shm.name, str(rounds)],
                                  stdout=subprocess.PIPE, text=True)
        if writer.stdout.readline() != "ready\n":
            raise RuntimeError("the check's writer process did not start; run the cell again")

        def load_version():
            return words[0]

        def load_fields():
            return tuple(words[1:5])

        def read_until_done():
            copies = []
            while not words[5]:
                copies.append(fn(load_version, load_fields))
            return copies

        copies = bounded(read_until_done, seconds=seconds, hint=SEQLOCK_LOOPS)
        for got in copies:
            if not (isinstance(got, tuple) and len(got) == 4):
                raise _Wrong(f"against a real writer it returned {got!r}: return what "
                             "load_fields() returned.")
            if len(set(got)) > 1:
                raise _Wrong(f"against a real writer process it returned the torn copy {got!r} "
                             "(a whole record has four equal fields).\n  Hint: read the version "
                             "before AND after copying, and keep the copy only if both reads are "
                             "the same even number.")
        return len(copies)
    finally:
        if writer is not None:
            try:
                writer.wait(timeout=seconds)
            except subprocess.TimeoutExpired:
                writer.kill()
                writer.wait()
            writer.stdout.close()
        book.unlink_untracked(shm)  # the name goes first, whatever happens to the mapping
        try:
            words.release()
            shm.close()
        except BufferError:  # a runaway reader thread still holds a view: the GC unmaps it
            pass


# --- lesson 04 ---

def check_count_gaps_live(fn, subscriptions) -> Verdict:
    """fn(messages) on what a live price feed really sent, against the package's FeedHandler.

    `subscriptions` is a list of the bytes read by successive subscriptions to a live
    gateway (each starts with its HELLO): a resubscription to the same gateway (same
    session: the seqs sent in between were lost to this subscriber) and one after the
    gateway restarted (a new session: not a gap). The expected count is what
    `orderbook.FeedHandler` counts when fed the same bytes, connection by connection.
    """
    import logging

    from hftlab import orderbook

    chunks = [bytes(s) for s in subscriptions]
    messages, sessions = [], []
    for chunk in chunks:
        decoded = [m for m in protocol.Decoder().feed(chunk)
                   if isinstance(m, (protocol.Hello, protocol.Price, protocol.Heartbeat))]
        messages += decoded
        sessions += [m.session for m in decoded if isinstance(m, protocol.Hello)]
    if not chunks or not messages:
        raise ValueError("nothing recorded: subscribe to the live price feed first (the cells above)")
    log = logging.getLogger("hftlab.checks.count_gaps_live")
    log.addHandler(logging.NullHandler())
    log.propagate = False
    symbols = sorted({m.symbol for m in messages if isinstance(m, protocol.Price)})

    def handler_gaps(connections):
        """What FeedHandler counts, fed these connections' bytes one after the other."""
        with book.SharedPriceBook(symbols, book.new_name()) as reference:
            handler = orderbook.FeedHandler(reference, log)
            for chunk in connections:
                handler.connected()
                handler.feed(chunk)
            return handler.gaps

    want = handler_gaps(chunks)
    # what a counter that starts afresh on EVERY hello would say: one handler per subscription
    per_subscription = sum(handler_gaps([chunk]) for chunk in chunks)

    story = []
    for i, session in enumerate(sessions):
        if i == 0:
            story.append(f"session {session}")
        elif session == sessions[i - 1]:
            story.append(f"the same session {session} again (a resubscription)")
        else:
            story.append(f"a new session {session} (the gateway restarted)")

    def judge(fn, _):
        got = bounded(fn, list(messages), hint="it never returned on the live feed's messages: "
                      "does a loop wait for a message that never comes?")
        if got == want:
            return
        if got == per_subscription:
            hint = ("a HELLO with the SAME session is a resubscription to the same gateway: its "
                    "numbering goes on, so the seqs between the two subscriptions were lost. Only "
                    "a NEW session starts the count again.")
        elif got > want:
            hint = ("a HELLO with a new session is a restarted gateway: its seq 1 follows nothing "
                    "of the old session, so nothing between them is a gap.")
        else:
            hint = ("too few. Count the missing messages, not the jumps (after seq 4, seq 7 "
                    "means 2 lost). And a HELLO with a new session is a restarted gateway whose "
                    "numbering starts again: compare its seqs with each other, not with the old "
                    "session's (seqs below the old last one would hide the losses after it).")
        raise _Wrong(f"on {len(messages)} live messages ({'; then '.join(story)}) it returned "
                     f"{got!r}; the orderbook's FeedHandler counts {want} lost.\n  Hint: {hint}")

    return _run("count_gaps", fn, [chunks], judge)


# -- lesson 08: performance ---------------------------------------------------------

def check_expected_wait(fn) -> Verdict:
    """fn(policy, interval_s, wake_us) -> the typical wait (us) from a write to the reader's look.

    policy is "spin", "sleep" (a selectors.DefaultSelector, epoll on Linux, with
    timeout interval_s) or "doorbell"; wake_us is what waking a sleeping process costs."""
    cases = [
        ("sleep", 0.001, 50.0, 550.0, "a tick lands at a random moment of the sleep: it waits half "
                                      "the interval on average, plus the wake-up at the end."),
        ("sleep", 0.005, 40.0, 2540.0, "half the interval, plus the wake-up."),
        ("sleep", 0.0001, 50.0, 550.0, "epoll counts its timeout in whole milliseconds, rounded "
                                       "up: asking for 0.1 ms sleeps 1 ms."),
        ("doorbell", 0.001, 50.0, 50.0, "the doorbell does not depend on any interval: the writer "
                                        "wakes the reader at once, which costs one wake-up."),
        ("spin", 0.001, 50.0, 0.0, "a spinning reader never sleeps: nothing to wait for, "
                                   "nothing to wake (count its look as 0)."),
    ]

    def judge(fn, case):
        policy, interval, wake, want, hint = case
        got = _call(fn, policy, interval, wake)
        call = f"expected_wait({policy!r}, {interval!r}, {wake!r})"
        if isinstance(got, bool) or not isinstance(got, (int, float)):
            raise _Wrong(f"{call} returned {got!r}: return a number of microseconds.")
        if not math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-6):
            raise _Wrong(f"{call} returned {got!r}, expected {want!r}.\n  Hint: {hint}")

    return _run("expected_wait", fn, cases, judge)


# --- lesson 07 ---
# A decision on the live dashboard: what does the book view show once the gateway is dead?

GATEWAY_KILL_CHOICES = {
    "prices": ("last known", "empty"),
    "stale": ("every row", "some rows", "no row"),
    "feed": ("UP", "DOWN"),
    "seq": ("frozen", "advancing", "back to 0"),
    "orderbook": ("running", "exited"),
}
# What lesson 07 observes on the live system (its cell asserts the same before checking).
GATEWAY_KILL_TRUTH = {"prices": "last known", "stale": "every row", "feed": "DOWN",
                      "seq": "frozen", "orderbook": "running"}
_GATEWAY_KILL_HINTS = {
    "prices": "nobody erases the book when the feed drops: the book is state, the latest price "
              "of each symbol, and it stays until a new price overwrites it.",
    "stale": "the orderbook marks the whole feed DOWN in the book's header, and the view calls "
             "every price of a DOWN feed stale, however young it is.",
    "feed": "the kernel closes a SIGKILLed process's sockets: the orderbook reads end-of-stream "
            "at once and writes FEED_DOWN into the header.",
    "seq": "each record keeps the sequence number of the last PRICE written into it; no PRICE "
           "arrives, so nothing moves (and nothing resets it).",
    "orderbook": "losing its feed is not a reason to die: the orderbook keeps the book, marks it "
                 "stale and reconnects with back-off (hftlab.link.Link).",
}


def _within_07(fn, *args, seconds: float = 5.0):
    """`bounded`, with the hint this answer needs."""
    return bounded(fn, *args, seconds=seconds,
                   hint="return the dict at once; the check runs nothing else.")


def check_gateway_kill(fn, observed: dict | None = None) -> Verdict:
    """fn() -> the learner's prediction of the book view after the gateway is SIGKILLed.

    `observed` is what the lesson saw on its live system (the same keys); it defaults to
    `GATEWAY_KILL_TRUTH`, which the lesson asserts it saw.
    """
    truth = dict(GATEWAY_KILL_TRUTH if observed is None else observed)

    def judge(fn, key):
        got = _within_07(fn)
        if not isinstance(got, dict):
            raise _Wrong(f"gateway_kill() returned {got!r}: return a dict with the keys "
                         f"{', '.join(GATEWAY_KILL_CHOICES)}.")
        if got.get(key) not in GATEWAY_KILL_CHOICES[key]:
            choices = " or ".join(repr(c) for c in GATEWAY_KILL_CHOICES[key])
            raise _Wrong(f"its {key!r} is {got.get(key)!r}; choose {choices}.")
        if got[key] != truth[key]:
            raise _Wrong(f"you predicted {key} {got[key]!r}; the book view showed {truth[key]!r}.\n"
                         f"  Hint: {_GATEWAY_KILL_HINTS[key]}")

    return _run("gateway_kill", fn, list(GATEWAY_KILL_CHOICES), judge)


__all__ += ["check_gateway_kill"]


# --- lesson 08: conflation ---

__all__ += ["check_seen_and_missed"]


def check_seen_and_missed(fn) -> Verdict:
    """fn(looks) -> (seen, missed): a reader's looks at a record's `updates` counter."""
    cases = [([0, 1, 1, 4, 9], (3, 6)), ([5], (0, 0)), ([0, 0, 0], (0, 0)), ([2, 3, 4, 5], (3, 0)),
             ([0, 100], (1, 99))]

    def judge(fn, case):
        looks, want = case
        got = bounded(fn, list(looks), hint="one pass over the looks is enough; no loop needs to wait.")
        if not isinstance(got, (tuple, list)) or tuple(got) != want:
            raise _Wrong(f"seen_and_missed({looks}) returned {got!r}, expected {want}.\n  Hint: a look "
                         "that finds the counter moved by k saw 1 tick and missed k - 1; one that "
                         "finds it unchanged saw none; the first value is only where counting starts.")

    return _run("seen_and_missed", fn, cases, judge)
