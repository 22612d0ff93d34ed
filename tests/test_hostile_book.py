"""A stalled, foreign or tampered book, and a gateway that sends the edges of the protocol:
no reader crashes or blocks, no order goes unanswered, nothing is traded or stored at a
price that is not above 0, and the orderbook carries on. Real processes throughout; the
test plays the part that misbehaves (the book's writer, the news feed, the gateway)."""

import contextlib
import math
import os
import signal
import socket
import subprocess
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import Client, wait_for
from hftlab import book, protocol
from hftlab.book import HEADER_DTYPE, SharedPriceBook
from hftlab.config import FAST, Config
from hftlab.launcher import Launcher
from hftlab.order_manager import read_journal
from hftlab.orderbook import FeedHandler

TS = 1764087000123456789
U64 = 2**64 - 1
NS = 2**63 - 1


def order(order_id, symbol="AAPL", price=100.0, side="BUY"):
    return protocol.Order(order_id, TS, side, 10, symbol, price)


def version_word(price_book, symbol):
    """Index of `symbol`'s version in book._u64: making it odd is a writer in mid-write."""
    return (HEADER_DTYPE.itemsize + price_book.index(symbol) * book.RECORD_DTYPE.itemsize) // 8


class FakeFeed:
    """A TCP feed server on a free port: each connection gets `greeting`, then `beat()`
    every 0.2 s, until close(). Plays the gateway's news or price feed."""

    def __init__(self, greeting: bytes, beat):
        self.greeting, self.beat = greeting, beat
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.conns = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopped.is_set():
            try:
                conn, _ = self.server.accept()
                conn.sendall(self.greeting)
                self.conns.append(conn)
            except socket.timeout:
                pass
            except OSError:
                pass
            for conn in list(self.conns):
                try:
                    conn.sendall(self.beat())
                except OSError:
                    self.conns.remove(conn)
                    conn.close()

    def close(self):
        self.stopped.set()
        self.thread.join(5)
        for conn in self.conns:
            conn.close()
        self.server.close()


# -- 1. a record stuck in mid-write ---------------------------------------------------------

def test_order_manager_answers_at_once_on_a_stuck_record_and_other_clients_are_not_delayed():
    config = Config(symbols=("AAPL", "MSFT"), price_band=0.10)
    with Launcher(config, free_ports=True, names=["order_manager"]) as om, \
            SharedPriceBook(["AAPL", "MSFT"], om.config.shm_name) as price_book:
        price_book.update("AAPL", 100.0)
        price_book.update("MSFT", 200.0)
        w = version_word(price_book, "AAPL")
        price_book._u64[w] += 1                  # this live writer is now "stopped in mid-write"
        with Client(om.config.order_port) as c, Client(om.config.order_port) as bystander:
            # Before the fix each of these spun ~0.93 s inside the event loop: 20 s in all.
            c.send(*[order(f"s{i}") for i in range(20)])
            bystander.send(order("m1", "MSFT", 201.0))
            assert bystander.receive(1, timeout=5.0) == [protocol.Ack("m1", 1)]
            answers = c.receive(20, timeout=10.0)
            assert all(isinstance(a, protocol.Reject) and "stuck in mid-write" in a.reason
                       for a in answers), answers
            price_book._u64[w] += 1              # the write completes
            c.send(order("after"), order("band", price=150.0))
            ok, band = c.receive(2)
            assert ok == protocol.Ack("after", 2)           # the band check is back
            assert isinstance(band, protocol.Reject) and "away from the book's 100.00" in band.reason
        assert om.children["order_manager"].running()
        assert "Traceback" not in om.log("order_manager", 200)


def test_strategy_waits_out_an_orderbook_stopped_mid_write_and_resumes(lab):
    """SIGSTOP the orderbook and leave a record in mid-write, as a stop between the two
    version stores does; then let it run again; then do it again and kill it instead."""
    wait_for(lambda: read_journal(lab.config.journal), 20, "a first booked order")
    price_book = SharedPriceBook.attach(lab.config.shm_name)
    orderbook = lab.pid("orderbook")
    w = version_word(price_book, lab.config.symbols[0])
    try:
        stop(orderbook)
        price_book._u64[w] += 1                       # odd: stopped in mid-write
        wait_for(lambda: "the book has been unreadable" in lab.log("strategy", 200), 15,
                 "the strategy to say it waits for the book")
        with Client(lab.config.order_port) as c:   # and the order manager answers at once
            c.send(order("stuck", lab.config.symbols[0]))
            (answer,) = c.receive(1, timeout=5.0)
            assert isinstance(answer, protocol.Reject) and "stuck in mid-write" in answer.reason
        price_book._u64[w] -= 1                       # the orderbook's own count: even again
        os.kill(orderbook, signal.SIGCONT)
        wait_for(lambda: "reads again" in lab.log("strategy", 200), 15, "the strategy to read again")
        n = len(read_journal(lab.config.journal))
        wait_for(lambda: len(read_journal(lab.config.journal)) > n, 20, "the strategy to trade again")

        stop(orderbook)                         # stopped in mid-write again, and then it dies
        price_book._u64[w] += 1
        lab.kill("orderbook")
        lab.start_one("orderbook")              # replaced by a new orderbook and book
        wait_for(lambda: lab.log("strategy", 500).count("attached to the book") == 2, 15,
                 "the strategy to attach to the new book")
        n = len(read_journal(lab.config.journal))
        wait_for(lambda: len(read_journal(lab.config.journal)) > n, 20, "trades on the new book")
    finally:
        with contextlib.suppress(ProcessLookupError):   # SIGKILLed already
            os.kill(orderbook, signal.SIGCONT)
        price_book.close()
    assert lab.children["strategy"].running() and lab.children["order_manager"].running()
    log = lab.log("strategy", 1000)
    assert log.count("ready:") == 1 and "Traceback" not in log
    assert "Traceback" not in lab.log("order_manager", 1000)


def stop(pid):
    """SIGSTOP `pid` and wait until it is stopped (kill() returns before it is), so that it
    cannot write once more over what the test then writes in its book."""
    os.kill(pid, signal.SIGSTOP)

    def state():
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/stat") as f:     # Linux
                return f.read().rsplit(")", 1)[1].split()[0]
        return subprocess.run(["ps", "-o", "stat=", "-p", str(pid)],  # macOS
                              capture_output=True, text=True).stdout.strip()[:1]

    wait_for(lambda: state() == "T", 10, f"process {pid} to stop")


# -- 2. a segment under the book's name that is not a book we can read ----------------------

def _tamper(kind):
    def tamper(price_book):
        h = price_book._buf
        if kind == "magic":
            h[:8] = b"NOTABOOK"
        elif kind == "version":
            h[8:12] = (1).to_bytes(4, "little")                       # layout_version: the old one
        elif kind == "header":
            h[12:16] = (100_000).to_bytes(4, "little")                # n_symbols
        elif kind == "pid":
            h[24:32] = (2**62).to_bytes(8, "little")                  # writer_pid: no such pid
    return tamper


@pytest.mark.parametrize("kind, says", [
    ("magic", "is not a price book"), ("version", "has layout_version 1"),
    ("header", "claims 100000 symbols"), ("pid", "there is no book")])
def test_a_segment_that_is_not_our_book_still_gets_every_order_answered(kind, says):
    config = Config(symbols=("AAPL",))
    with Launcher(config, free_ports=True, names=["order_manager"]) as om, \
            SharedPriceBook(["AAPL"], om.config.shm_name) as price_book:
        price_book.update("AAPL", 100.0)
        _tamper(kind)(price_book)
        with Client(om.config.order_port) as c:
            # Orders over a few seconds, so the order manager looks at the segment again.
            start, i = time.monotonic(), 0
            while time.monotonic() - start < 2.5 or i < 3:
                i += 1
                c.send(order(f"o{i}", price=500.0))
                assert c.receive(1) == [protocol.Ack(f"o{i}", i)]   # checked without the band
                time.sleep(0.25)  # spacing the orders out is the point here, not a wait for a state
        log = om.log("order_manager", 500)
        # Said once, whatever the number of orders. A book whose writer is no process is a dead
        # writer's: no book at all, for the band.
        assert log.count("orders for AAPL are booked without the price band") == 1 and says in log, log
        assert "Traceback" not in log


# -- 3. a price that is not above 0 in the book ---------------------------------------------

@pytest.mark.parametrize("bad", [-5.0, 0.0, math.nan, math.inf])
def test_strategy_never_trades_on_a_book_price_that_is_not_above_zero(bad):
    news = FakeFeed(b"HELLO,NEWS,n1\nNEWS,1,%d,10\n" % TS, lambda: b"HB,1,%d\n" % time.time_ns())
    config = Config(**FAST).replace(symbols=("AAPL", "MSFT"), news_port=news.port, price_port=1,
                                    order_port=0, shm_name=book.new_name())
    try:
        with SharedPriceBook(config.symbols, config.shm_name) as price_book, \
                Launcher(config, names=["order_manager", "strategy"]) as lab:
            journal = lab.config.journal

            def sold(symbol):
                return [r for r in read_journal(journal) if r["symbol"] == symbol and r["side"] == "SELL"]

            # MSFT falls until the strategy sells it: the news (bearish) has arrived.
            for price in range(200, 140, -1):
                price_book.update("MSFT", float(price))
                _tick()
                if sold("MSFT"):
                    break
            else:
                pytest.fail("the strategy never sold MSFT: " + lab.log("strategy", 50))
            # AAPL flat, then the bad price: before the fix the strategy sold at it (or,
            # for NaN and inf, its averages were poisoned and it did not sell at 95).
            for _ in range(config.long_window + 10):   # it may miss a few; 8 are enough
                price_book.update("AAPL", 100.0)
                _tick()
            price_book.update_index(price_book.index("AAPL"), bad, price_book.header()["last_seq"] + 1,
                                    time.time_ns())          # as a learner's orderbook may: update() refuses it
            price_book.ring()
            for _ in range(6):
                _tick()                                 # long enough to be seen
            price_book.update("AAPL", 95.0)                   # stays until the strategy acts on it
            rows = wait_for(lambda: sold("AAPL"), 10, "the strategy to sell AAPL at 95")
            assert [r["price"] for r in rows] == ["95.00"]
            log = lab.log("strategy", 500)
            for shown in ("@ -", "@ 0.00", "@ nan", "@ inf"):
                assert shown not in log, log
            assert lab.children["strategy"].running()
    finally:
        news.close()


def _tick():
    # The pace of a feed (FAST: a tick every 50 ms). The strategy looks at the book every
    # 1 ms; if it misses a tick on a busy machine the test still holds (it waits on the
    # journal, and sells once, at a price above 0).
    time.sleep(0.05)


# -- 4. the edges of the protocol, from a gateway to the orderbook ---------------------------

class ListLog:
    def __init__(self):
        self.lines = []

    def info(self, text):
        self.lines.append(text)

    warning = info


price_values = st.one_of(st.integers(-10**6, 10**6).map(lambda c: f"{c / 100:.2f}"),
                         st.sampled_from(["0", "-5", "0.00", "-0.00", "1"]))
big = st.one_of(st.integers(0, 2**66), st.sampled_from([0, 1, U64, U64 + 1, NS, NS + 1]))


@st.composite
def feed_lines(draw):
    kind = draw(st.sampled_from(["HELLO", "PRICE", "PRICE", "PRICE", "HB"]))
    if kind == "HELLO":
        session = draw(st.from_regex(r"[A-Za-z0-9_-]{1,40}", fullmatch=True))
        return f"HELLO,PRICE,{session}", len(session) > 16
    if kind == "HB":
        last, ts = draw(big), draw(big)
        return f"HB,{last},{ts}", last > U64 or ts > NS
    seq, ts = draw(big), draw(big)
    symbol = draw(st.sampled_from(["AAPL", "MSFT", "ZZZ"]))
    price = draw(price_values)
    bad = seq > U64 or ts > NS or seq == 0 or not float(price) > 0
    return f"PRICE,{seq},{ts},{symbol},{price}", bad


@settings(max_examples=200, deadline=None)
@given(st.lists(feed_lines(), max_size=30), st.data())
def test_property_the_feed_handler_survives_any_valid_line_and_counts_the_rest(lines, data):
    stream = "".join(line + "\n" for line, _ in lines).encode()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=5)))
    with SharedPriceBook(["AAPL", "MSFT"]) as price_book:
        handler = FeedHandler(price_book, ListLog())
        for a, b in zip([0] + cuts, cuts + [len(stream)]):
            handler.feed(stream[a:b])
        assert handler.errors == sum(bad for _, bad in lines)
        for rec in price_book.snapshot().tolist():               # the raw records, as stored
            _, _, price, seq, ts_ns, _, _ = rec
            assert seq == 0 or (price > 0 and 1 <= seq <= U64 and 0 <= ts_ns <= NS)
        raw = price_book._records[["price", "seq"]].tolist()
        assert all(seq == 0 or price > 0 for price, seq in raw)
        h = price_book.header()
        assert 0 <= h["gaps"] <= U64 and len(h["session"]) <= 16


def test_a_real_orderbook_survives_a_gateway_sending_the_edges_of_the_protocol():
    long_session = "s" * 20
    lines = [
        "HELLO,PRICE,sess1",
        f"PRICE,1,{TS},AAPL,100.00",
        f"HELLO,PRICE,{long_session}",               # a valid token, longer than the book holds
        f"PRICE,{U64 + 1},{TS},AAPL,1.00",            # seq above 2**64 - 1
        f"PRICE,2,{NS + 1},AAPL,1.00",                # ts_ns above 2**63 - 1
        f"HB,{U64 + 1},{TS}",                         # last_seq above 2**64 - 1
        f"PRICE,2,{TS},AAPL,-5.00",                   # valid syntax, not a price
        f"PRICE,3,{TS},MSFT,0.00",
        f"PRICE,4,{TS},MSFT,101.00",
        f"HB,{U64},{TS}",                             # the largest: a huge gap, counted
        f"PRICE,{U64},{NS},AAPL,102.00",              # the largest seq and ts_ns are stored
    ]
    gateway = FakeFeed("".join(line + "\n" for line in lines).encode(),
                       lambda: b"HB,%d,%d\n" % (U64, time.time_ns()))
    config = Config(symbols=("AAPL", "MSFT"), price_port=gateway.port, shm_name=book.new_name())
    try:
        with Launcher(config, names=["orderbook"]) as lab:
            price_book = SharedPriceBook.attach(config.shm_name)
            try:
                wait_for(lambda: (q := price_book.read("AAPL")) and q.seq == U64, 15,
                         "the last AAPL price in the book")
                assert price_book.read("AAPL")[1:4] == (102.0, U64, NS)
                assert price_book.read("MSFT")[1:3] == (101.0, 4)
                assert price_book.header()["session"] == "sess1" and price_book.header()["gaps"] > 0
            finally:
                price_book.close()
            log = lab.log("orderbook", 200)
            assert log.count("bad line from the gateway, skipped") >= 6, log
            for says in ("session must be 1-16", "seq is above 18446744073709551615",
                         "ts_ns is above 9223372036854775807", "last_seq is above",
                         "has price -5.0", "has price 0.0"):
                assert says in log, says
            assert lab.children["orderbook"].running() and "Traceback" not in log
    finally:
        gateway.close()
