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
    "check_audit", "check_speedup",
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

    def judge(fn, case):
        what, script, want, hint = case
        record = _ScriptedRecord(script)
        got = _call(fn, record.load_version, record.load_fields)
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


def _bounded(fn, *args, seconds: float = 5.0):
    """fn(*args) in a daemon thread; a _Wrong if it has not returned within `seconds`."""
    import threading

    box = {}

    def run():
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # handed back to the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=run, name="check: the answer under test", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise _Wrong(f"it had not returned after {seconds:g} s.\n  Hint: return the dict at once; "
                     "the check runs nothing else.")
    if "error" in box:
        if isinstance(box["error"], NotImplementedError):
            raise box["error"]
        raise _Wrong(f"it raised {type(box['error']).__name__}: {box['error']}") from None
    return box.get("value")


def check_gateway_kill(fn, observed: dict | None = None) -> Verdict:
    """fn() -> the learner's prediction of the book view after the gateway is SIGKILLed.

    `observed` is what the lesson saw on its live system (the same keys); it defaults to
    `GATEWAY_KILL_TRUTH`, which the lesson asserts it saw.
    """
    truth = dict(GATEWAY_KILL_TRUTH if observed is None else observed)

    def judge(fn, key):
        got = _bounded(fn)
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
