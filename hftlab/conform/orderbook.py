"""The orderbook's cases: the harness is its gateway (a scripted price feed) and reads the
book it writes with `hftlab.book.SharedPriceBook.attach`."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

from hftlab import book, protocol
from hftlab.conform.harness import CaseFailed, Server, case, wait_until

SYMBOLS = ("AAPL", "MSFT")
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
        self.server = Server(self._hold)
        self.ctx = ctx
        ctx.on_cleanup(self.server.stop)
        ctx.config = ctx.config.replace(price_port=self.server.port)
        ctx.launcher.config = ctx.config
        self.accepted = 0

    def _hold(self, conn):
        self.accepted += 1
        while conn.recv(4096):  # subscribers say nothing; this only notices them leave
            pass

    def connection(self, count: int = 1, timeout: float = 5.0):
        """Wait until the orderbook has connected `count` times in all; its live socket."""
        if not wait_until(lambda: self.accepted >= count and self.server.live(), timeout):
            raise CaseFailed(f"the orderbook did not connect to the price feed within {timeout:g} s "
                             f"(connection {count}); log: {self.ctx.log_tail()}")
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
        raise CaseFailed(f"after its ready line: {exc}") from None
    ctx.on_cleanup(b.close)
    return b


def settle(b, what, cond, timeout=5.0):
    if not wait_until(cond, timeout):
        raise CaseFailed(f"{what} within {timeout:g} s; the book's header: {short_header(b)}")


def short_header(b) -> str:
    h = b.header()
    return (f"feed_state {h['feed_state']}, session {h['session']!r}, last_seq {h['last_seq']}, "
            f"updates {h['updates']}, gaps {h['gaps']}")


def start(ctx):
    gw = Gateway(ctx)
    ctx.start()
    return gw, attach(ctx)


@case(1, "once ready, the book exists under --shm-name with the configured symbols",
      "create SharedPriceBook(symbols, name) (or the documented layout) before the ready line", **CFG)
def book_exists(ctx):
    gw, b = start(ctx)
    if b.symbols != SYMBOLS:
        raise CaseFailed(f"the book holds {b.symbols}, not {SYMBOLS}")


@case(2, "every tick of a burst reaches the book (no gaps, no lost updates)",
      "read whole lines from every recv(): a recv may hold many lines or part of one", **CFG)
def burst(ctx):
    gw, b = start(ctx)
    conn = gw.connection()
    n = 5000
    conn.sendall(hello("burst1") + ticks(1, n))
    settle(b, f"last_seq did not reach {n}", lambda: b.header()["last_seq"] == n)
    h = b.header()
    if h["updates"] != n or h["gaps"] != 0:
        raise CaseFailed(f"after {n} ticks: {short_header(b)}")
    for symbol, last in (("AAPL", n), ("MSFT", n - 1)):
        q = b.read(symbol)
        if q is None or q.seq != last or q.price != price_of(last):
            raise CaseFailed(f"{symbol} reads {q}, expected seq {last} price {price_of(last)}")


@case(3, "readers never see a torn record while it writes flat out",
      "write each record under the seqlock: version odd, the fields, version even "
      "(SharedPriceBook.update_index does it)", **CFG)
def no_torn_reads(ctx):
    gw, b = start(ctx)
    conn = gw.connection()
    n = 30000
    torn, looks = [], [0]
    done = threading.Event()

    def look():
        while not done.is_set():
            try:
                snap = b.snapshot()
            except book.BookBusy:
                continue
            looks[0] += 1
            for rec in snap:
                seq = int(rec["seq"])
                if seq and (int(rec["ts_ns"]) != seq * 1000 or float(rec["price"]) != price_of(seq)):
                    torn.append((seq, int(rec["ts_ns"]), float(rec["price"])))

    reader = threading.Thread(target=look, daemon=True)
    reader.start()
    try:
        conn.sendall(hello("torn1") + ticks(1, n))
        settle(b, f"last_seq did not reach {n}", lambda: b.header()["last_seq"] == n, 15.0)
    finally:
        done.set()
        reader.join(5.0)
    if torn:
        seq, ts, price = torn[0]
        raise CaseFailed(f"{len(torn)} torn records in {looks[0]} reads, e.g. seq {seq} with ts_ns {ts} "
                         f"and price {price} (tick {seq} had ts_ns {seq * 1000}, price {price_of(seq)})")


@case(4, "gaps and gateway restarts are told apart (HELLO with a new session is not a gap)",
      "on HELLO with a new session forget the last seq; with the same session a jump is a gap; "
      "count gaps in the header", **CFG)
def gaps_vs_restart(ctx):
    gw, b = start(ctx)
    conn = gw.session(1, "sessA", ticks(1, 10) + tick(15))
    settle(b, "gaps did not become 4 after seq 10 then 15",
           lambda: b.header()["last_seq"] == 15 and b.header()["gaps"] == 4)
    gw.server.stop()
    gw.server.reopen()  # the gateway restarted: a new session counts from 1
    conn = gw.session(2, "sessB", ticks(1, 5))
    settle(b, "after a new session counting from 1 again, gaps should stay 4 and last_seq be 5",
           lambda: b.header()["last_seq"] == 5 and b.header()["session"] == "sessB")
    if b.header()["gaps"] != 4:
        raise CaseFailed(f"a new session was counted as a gap: {short_header(b)}")
    conn.shutdown(2)  # the same gateway, reconnected: a jump is a real gap
    conn.close()
    conn = gw.session(3, "sessB", tick(9))
    settle(b, "after a reconnection to the same session, seq 5 then 9 should add 3 gaps (7)",
           lambda: b.header()["gaps"] == 7)


@case(5, "it reconnects after the gateway goes away, and marks the book stale meanwhile",
      "on a closed or silent feed set feed_state FEED_DOWN (2), dial again with back-off, "
      "FEED_UP (1) on the next HELLO", **CFG)
def reconnects(ctx):
    gw, b = start(ctx)
    _held_open = gw.session(1, "up1", ticks(1, 3))  # until the feed is stopped
    settle(b, "feed_state did not become FEED_UP (1)", lambda: b.header()["feed_state"] == book.FEED_UP)
    gw.server.stop()
    settle(b, "feed_state did not become FEED_DOWN (2) after the gateway went away",
           lambda: b.header()["feed_state"] == book.FEED_DOWN)
    gw.server.reopen()
    _held_open = gw.session(2, "up2", ticks(1, 4), timeout=8.0)  # until the case ends
    settle(b, "after reconnecting, feed_state FEED_UP and the new ticks in the book",
           lambda: b.header()["feed_state"] == book.FEED_UP and b.header()["last_seq"] == 4)


@case(6, "split and merged TCP segments decode the same",
      "keep the bytes after the last newline for the next recv (hftlab.protocol.Decoder does it)",
      **CFG)
def split_and_merged(ctx):
    gw, b = start(ctx)
    conn = gw.session(1, "split1")
    data = ticks(1, 20)
    for i in range(len(data)):  # one byte at a time
        conn.send(data[i:i + 1])
        if i % 7 == 0:
            time.sleep(0.001)  # let some bytes arrive on their own
    settle(b, "the ticks sent byte by byte did not all arrive", lambda: b.header()["last_seq"] == 20)
    data = ticks(21, 400)
    for k in range(0, len(data), 997):  # cuts in the middle of lines, many lines per piece
        conn.send(data[k:k + 997])
    settle(b, "the merged ticks did not all arrive", lambda: b.header()["last_seq"] == 400)
    h = b.header()
    if h["updates"] != 400 or h["gaps"] != 0:
        raise CaseFailed(f"after 400 ticks split and merged: {short_header(b)}")


READER = ("import sys; from hftlab.book import SharedPriceBook; "
          "b = SharedPriceBook.attach(sys.argv[1]); b.quotes(); b.close()")


@case(7, "readers that come and go leave the book intact",
      "only the orderbook unlinks the book, only at its exit; create it so that no reader's exit "
      "removes it (see the resource tracker trap, lesson 03)", symbols=SYMBOLS,
      heartbeat_interval=5.0)  # the feed stays quiet while the readers run
def readers_come_and_go(ctx):
    gw, b = start(ctx)
    conn = gw.session(1, "read1", ticks(1, 2))
    for _ in range(5):
        subprocess.run([sys.executable, "-c", READER, ctx.config.shm_name], timeout=20, check=False,
                       capture_output=True)
    try:
        again = book.SharedPriceBook.attach(ctx.config.shm_name, SYMBOLS)
    except book.BookError as exc:
        raise CaseFailed(f"after 5 readers came and went: {exc}") from None
    ctx.on_cleanup(again.close)
    conn.sendall(ticks(3, 6))
    settle(again, "the book no longer takes updates after readers came and went",
           lambda: again.header()["last_seq"] == 6)


@case(8, "SIGTERM: a clean exit (status 0) and the book removed",
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
