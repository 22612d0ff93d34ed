"""The orderbook's cases: the harness is its gateway (a scripted price feed) and reads the
book it writes with `hftlab.book.SharedPriceBook.attach`."""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np

from hftlab import book, protocol
from hftlab.conform.harness import CaseFailed, background, case

__all__ = ["ROLE", "SYMBOLS", "TORN_BURST", "HINT_DIAL", "HINT_REDIAL", "HINT_BOOK", "CASES", "price_of",
           "raw_records"]

ROLE = "orderbook"
SYMBOLS = ("AAPL", "MSFT")
# Ticks of case 3's burst. Many, for the reader thread's chance to catch a torn copy; the
# version check after the burst needs only a few (a test sets fewer).
TORN_BURST = 30000
HINT_DIAL = "dial --host:--price-port (HFTLAB_PRICE_PORT) once the book is made and the ready line printed"
HINT_REDIAL = ("when the feed closes (or is silent for 3 heartbeat intervals), set feed_state FEED_DOWN (2) and "
               "dial again with back-off (0.1 s, doubling, at most a second or two)")
HINT_BOOK = ("create the book (SharedPriceBook(symbols, name), or the layout of docs/roles.md) before the ready "
             "line, under --shm-name, with --symbols in their order")
CFG = dict(symbols=SYMBOLS, heartbeat_interval=0.3)


def price_of(seq: int) -> float:
    """Each tick's price says its seq, so a torn record (one tick's price, another's seq) shows."""
    return round(100 + seq / 100, 2)


def tick(seq: int) -> bytes:
    return protocol.encode(protocol.Price(seq, seq * 1000, SYMBOLS[seq % 2], price_of(seq)))


def ticks(first: int, last: int) -> bytes:
    return b"".join(tick(s) for s in range(first, last + 1))


def hello(session: str) -> bytes:
    return protocol.encode(protocol.Hello("PRICE", session))


class Gateway:
    """A scripted price feed: holds its subscribers' sockets for the case to write to."""

    def __init__(self, ctx):
        self.server = ctx.server(self._hold)
        self.ctx = ctx
        ctx.configure(price_port=self.server.port)
        self.accepted = 0

    def _hold(self, conn):
        self.accepted += 1
        while conn.recv(4096):  # subscribers say nothing; this only notices them leave
            pass

    def connection(self, count: int = 1, timeout: float = 5.0):
        """Wait until the orderbook has connected `count` times in all; its live socket."""
        if not self.ctx.wait_until(lambda: self.accepted >= count and self.server.live(), timeout):
            again = count > 1
            raise CaseFailed(f"the orderbook did not connect to the price feed within {timeout:g} s "
                             f"({'after the gateway went away, ' if again else ''}connection {count})",
                             hint=HINT_REDIAL if again else HINT_DIAL, log=self.ctx.log_end())
        return self.server.live()[-1]

    def session(self, count: int, session: str, data: bytes = b"", timeout: float = 5.0):
        """`connection(count)`, then a HELLO of `session` and `data` sent on it; the socket."""
        conn = self.connection(count, timeout)
        conn.sendall(hello(session) + data)
        return conn


def attach(ctx) -> book.SharedPriceBook:
    try:
        b = book.SharedPriceBook.attach(ctx.config.shm_name, SYMBOLS)
    except book.BookError as exc:
        raise CaseFailed(f"after its ready line: {exc}", hint=HINT_BOOK) from None
    ctx.on_cleanup(b.close)
    return b


def settle(ctx, b, what, cond, timeout=5.0):
    if not ctx.wait_until(cond, timeout):
        raise CaseFailed(f"{what} within {timeout:g} s; the book's header: {short_header(b)}")


def short_header(b) -> str:
    h = b.header()
    return (f"feed_state {h['feed_state']}, session {h['session']!r}, last_seq {h['last_seq']}, "
            f"updates {h['updates']}, gaps {h['gaps']}")


def start(ctx):
    gw = Gateway(ctx)
    ctx.start()
    return gw, attach(ctx)


@case(ROLE, 1, "once ready, the book exists under --shm-name with the configured symbols", HINT_BOOK, **CFG)
def book_exists(ctx):
    gw, b = start(ctx)
    if b.symbols != SYMBOLS:
        raise CaseFailed(f"the book holds {b.symbols}, not {SYMBOLS}")


@case(ROLE, 2, "every tick of a burst reaches the book (no gaps, no lost updates)",
      "read whole lines from every recv(): a recv may hold many lines or part of one", **CFG)
def burst(ctx):
    gw, b = start(ctx)
    conn = gw.connection()
    n = 5000
    conn.sendall(hello("burst1") + ticks(1, n))
    settle(ctx, b, f"last_seq did not reach {n}", lambda: b.header()["last_seq"] == n)
    h = b.header()
    if h["updates"] != n or h["gaps"] != 0:
        raise CaseFailed(f"after {n} ticks: {short_header(b)}")
    for symbol, last in (("AAPL", n), ("MSFT", n - 1)):
        q = b.read(symbol)
        if q is None or q.seq != last or q.price != price_of(last):
            raise CaseFailed(f"{symbol} reads {q}, expected seq {last} price {price_of(last)}")


def raw_records(name: str, n: int) -> np.ndarray:
    """A copy of the `n` records of book `name` as they are, versions included, read without
    the seqlock: for a look after the writer has stopped writing."""
    shm = book.open_untracked(name)
    try:
        start = book.HEADER_DTYPE.itemsize
        raw = bytes(shm.buf[start:start + n * book.RECORD_DTYPE.itemsize])
    finally:
        shm.close()
    return np.frombuffer(raw, book.RECORD_DTYPE)


def torn_copies(b, done: threading.Event) -> tuple:
    """Snapshot the book until `done` is set: (the torn records seen, how many snapshots)."""
    torn, looks = [], 0
    while not done.is_set():
        try:
            snap = b.snapshot()
        except book.BookBusy:
            continue
        looks += 1
        for rec in snap:
            seq = int(rec["seq"])
            if seq and (int(rec["ts_ns"]) != seq * 1000 or float(rec["price"]) != price_of(seq)):
                torn.append((seq, int(rec["ts_ns"]), float(rec["price"])))
    return torn, looks


def check_versions(ctx, n: int) -> None:
    """After `n` ticks, half to each symbol: each record's version is even and 2 x its writes.
    Not a matter of chance, unlike catching a torn copy: a writer that skips or misuses the
    version fails it every time."""
    for symbol, rec in zip(SYMBOLS, raw_records(ctx.config.shm_name, len(SYMBOLS))):
        version, updates = int(rec["version"]), int(rec["updates"])
        if version % 2 or version != 2 * updates or updates != n // 2:
            raise CaseFailed(f"after {n // 2} writes of {symbol} its record has version {version} and updates "
                             f"{updates}: the version must be even once a write is done, and go up by 2 per "
                             f"write ({n} here), updates by 1")


@case(ROLE, 3, "readers never see a torn record while it writes flat out; each write moves the version by 2",
      "write each record under the seqlock: version + 1 (odd), the fields, version + 2 (even), each one "
      "8-byte store (SharedPriceBook.update_index does it)", **CFG)
def no_torn_reads(ctx):
    gw, b = start(ctx)
    conn = gw.connection()
    n = TORN_BURST
    done = threading.Event()
    reader = background(torn_copies, b, done, name="conform orderbook 3 reader")
    try:
        conn.sendall(hello("torn1") + ticks(1, n))
        settle(ctx, b, f"last_seq did not reach {n}", lambda: b.header()["last_seq"] == n, 15.0)
    finally:
        done.set()
    torn, looks = reader.result(5.0)
    if torn:
        seq, ts, price = torn[0]
        raise CaseFailed(f"{len(torn)} torn records in {looks} reads, e.g. seq {seq} with ts_ns {ts} "
                         f"and price {price} (tick {seq} had ts_ns {seq * 1000}, price {price_of(seq)})")
    check_versions(ctx, n)


@case(ROLE, 4, "gaps and gateway restarts are told apart (HELLO with a new session is not a gap)",
      "on HELLO with a new session forget the last seq; with the same session a jump is a gap; "
      "count gaps in the header", **CFG)
def gaps_vs_restart(ctx):
    gw, b = start(ctx)
    conn = gw.session(1, "sessA", ticks(1, 10) + tick(15))
    settle(ctx, b, "gaps did not become 4 after seq 10 then 15",
           lambda: b.header()["last_seq"] == 15 and b.header()["gaps"] == 4)
    gw.server.stop()
    # The gateway restarted and has been running a while: its new session is at seq 21 when
    # the orderbook joins. Not a gap, though 21 is more than 15 + 1 (and a restart that
    # starts lower than the last seq would not tell a session-blind orderbook apart).
    gw.server.reopen()
    conn = gw.session(2, "sessB", ticks(21, 25))
    settle(ctx, b, "after a new session whose first tick was seq 21, gaps should stay 4 and last_seq be 25",
           lambda: b.header()["last_seq"] == 25 and b.header()["session"] == "sessB")
    if b.header()["gaps"] != 4:
        raise CaseFailed(f"a new session (seq 15, then HELLO sessB and seq 21) was counted as a gap: "
                         f"{short_header(b)}")
    conn.shutdown(2)  # the same gateway, reconnected: a jump is a real gap
    conn.close()
    conn = gw.session(3, "sessB", tick(29))
    settle(ctx, b, "after a reconnection to the same session, seq 25 then 29 should add 3 gaps (7)",
           lambda: b.header()["gaps"] == 7)


@case(ROLE, 5, "it reconnects after the gateway goes away, and marks the book stale meanwhile",
      HINT_REDIAL + "; FEED_UP (1) on the next HELLO", **CFG)
def reconnects(ctx):
    gw, b = start(ctx)
    _held_open = gw.session(1, "up1", ticks(1, 3))  # until the feed is stopped
    settle(ctx, b, "feed_state did not become FEED_UP (1)", lambda: b.header()["feed_state"] == book.FEED_UP)
    gw.server.stop()
    settle(ctx, b, "feed_state did not become FEED_DOWN (2) after the gateway went away",
           lambda: b.header()["feed_state"] == book.FEED_DOWN)
    gw.server.reopen()
    _held_open = gw.session(2, "up2", ticks(1, 4), timeout=8.0)  # until the case ends
    settle(ctx, b, "after reconnecting, feed_state FEED_UP and the new ticks in the book",
           lambda: b.header()["feed_state"] == book.FEED_UP and b.header()["last_seq"] == 4)


@case(ROLE, 6, "split and merged TCP segments decode the same",
      "keep the bytes after the last newline for the next recv (hftlab.protocol.Decoder does it)",
      **CFG)
def split_and_merged(ctx):
    gw, b = start(ctx)
    conn = gw.session(1, "split1")
    data = ticks(1, 20)
    for i in range(len(data)):  # one byte at a time
        conn.send(data[i:i + 1])
        if i % 7 == 0:
            ctx.sleep(0.001)  # let some bytes arrive on their own
    settle(ctx, b, "the ticks sent byte by byte did not all arrive", lambda: b.header()["last_seq"] == 20)
    data = ticks(21, 400)
    for k in range(0, len(data), 997):  # cuts in the middle of lines, many lines per piece
        conn.send(data[k:k + 997])
    settle(ctx, b, "the merged ticks did not all arrive", lambda: b.header()["last_seq"] == 400)
    h = b.header()
    if h["updates"] != 400 or h["gaps"] != 0:
        raise CaseFailed(f"after 400 ticks split and merged: {short_header(b)}")


READER = ("import sys; from hftlab.book import SharedPriceBook; "
          "b = SharedPriceBook.attach(sys.argv[1]); b.quotes(); b.close()")


@case(ROLE, 7, "readers that come and go leave the book intact",
      "only the orderbook unlinks the book, only at its exit; no reader may remove it, not even one "
      "of its own: a Python reader that attaches with multiprocessing.shared_memory registers the book "
      "with its resource tracker, which removes it when that reader exits (lesson 03)", symbols=SYMBOLS,
      heartbeat_interval=5.0)  # the feed stays quiet while the readers run
def readers_come_and_go(ctx):
    gw, b = start(ctx)
    conn = gw.session(1, "read1", ticks(1, 2))
    for _ in range(5):
        ctx.sleep(0)  # ends the case here if it was closed meanwhile
        subprocess.run([sys.executable, "-c", READER, ctx.config.shm_name], timeout=20, check=False,
                       capture_output=True)
    try:
        again = book.SharedPriceBook.attach(ctx.config.shm_name, SYMBOLS)
    except book.BookError as exc:
        raise CaseFailed(f"after 5 readers came and went: {exc}") from None
    ctx.on_cleanup(again.close)
    conn.sendall(ticks(3, 6))
    settle(ctx, again, "the book no longer takes updates after readers came and went",
           lambda: again.header()["last_seq"] == 6)


@case(ROLE, 8, "SIGTERM: a clean exit (status 0) and the book removed",
      "handle SIGTERM like Ctrl-C: close and unlink the book, exit 0", **CFG)
def sigterm(ctx):
    gw, b = start(ctx)
    gw.connection()
    ctx.sigterm()
    try:
        book.SharedPriceBook.attach(ctx.config.shm_name).close()
    except book.BookNotFound:
        return
    raise CaseFailed(f"the book {ctx.config.shm_name!r} is still in shared memory after the exit")


CASES = [book_exists, burst, no_torn_reads, gaps_vs_restart, reconnects, split_and_merged,
         readers_come_and_go, sigterm]
