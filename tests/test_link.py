"""hftlab.link.Link, the one reconnecting client: against real sockets on loopback, and
inside the real system (the orderbook and the strategy both use it)."""

import selectors
import signal
import socket
import time

import pytest

from conftest import Said, free_port, wait_for
from hftlab import book, protocol
from hftlab.link import SILENCE_HEARTBEATS, Link


@pytest.fixture
def server():
    """A listening socket on a free loopback port (nobody accepts until the test does)."""
    with socket.create_server(("127.0.0.1", 0)) as s:
        yield s


def accept(server):
    server.settimeout(10)
    conn, _ = server.accept()
    return conn


def test_no_server_backs_off_and_says_waiting_once():
    port = free_port()  # closed again: nothing listens there
    log = Said()
    link = Link("test feed", "127.0.0.1", port, log)
    delays = []
    for _ in range(4):
        link.next_try = 0.0  # due now: each call dials once, however fast the test runs
        assert link.keep_up() is False and not link.up
        delays.append(link.backoff.delay)
    assert delays == [0.2, 0.4, 0.8, 1.6]  # 0.1 s first, doubling
    assert link.retry_in() > 0
    assert log.lines == [("info", f"waiting for the test feed at 127.0.0.1:{port}")]


def test_connects_reads_whole_messages_and_says_so(server):
    log = Said()
    port = server.getsockname()[1]
    link = Link("test feed", "127.0.0.1", port, log)
    try:
        assert link.keep_up() is True and link.up
        assert link.keep_up() is False  # already up: nothing to do
        peer = accept(server)
        peer.sendall(b"HB,4,17\nNEWS,1,2")
        got = wait_for(lambda: link.messages(), what="the first message")
        assert got == [protocol.Heartbeat(4, 17)]
        peer.sendall(b",72\n")
        assert wait_for(lambda: link.messages(1.0), what="the rest") == [protocol.News(1, 2, 72)]
        assert link.messages() == []  # nothing more: an empty list, the link still up
        assert link.send(protocol.encode(protocol.Ack("a1", 1)))
        peer.settimeout(10)
        assert peer.recv(100) == b"ACK,a1,1\n"
        assert log.lines == [("info", f"connected to the test feed at 127.0.0.1:{port}")]
        peer.close()
    finally:
        link.close()


def test_a_closed_connection_is_dropped_and_dialled_again(server):
    log = Said()
    sel = selectors.DefaultSelector()
    link = Link("test feed", "127.0.0.1", server.getsockname()[1], log, selector=sel)
    try:
        link.keep_up()
        assert [key.data for key in sel.get_map().values()] == [link]  # one select waits on it
        accept(server).close()
        assert wait_for(lambda: link.messages(1.0) is None, what="the close to be seen")
        assert not link.up and not sel.get_map()
        assert log.count("lost the test feed: closed by the other side; reconnecting") == 1
        assert link.messages() is None and link.recv() is None  # down: None, not an error
        wait_for(lambda: link.keep_up(), what="a new connection")
        assert link.connects == 2 and len(sel.get_map()) == 1
        assert link.backoff.delay == link.backoff.first  # connecting resets the back-off
    finally:
        link.close()
        sel.close()


def test_a_silent_feed_is_dropped_after_three_heartbeats(server):
    log = Said()
    heartbeat = 0.05
    link = Link("test feed", "127.0.0.1", server.getsockname()[1], log, heartbeat=heartbeat)
    try:
        link.keep_up()
        peer = accept(server)  # accepted, and then it says nothing, like a hung gateway
        assert link.silence == SILENCE_HEARTBEATS * heartbeat
        # recv(timeout=None) waits for bytes, but never past the silence limit.
        assert link.recv(timeout=None) is None
        assert not link.up
        assert log.count(f"lost the test feed: silent for {link.silence:.1f} s; reconnecting") == 1
        peer.close()
        # A link that is never read notices at its next keep_up.
        wait_for(lambda: link.keep_up(), what="a new connection")
        peer = accept(server)
        wait_for(lambda: not link.keep_up() and not link.up, what="the silence to be noticed")
        assert log.count("silent for") == 2
        peer.close()
    finally:
        link.close()


def test_recv_that_waits_never_makes_the_other_calls_wait(server):
    # recv(timeout=None) sleeps in a blocking recv (SO_RCVTIMEO as the silence limit); the
    # calls after it must still return at once, and a wait after a send must still wait.
    link = Link("test feed", "127.0.0.1", server.getsockname()[1], heartbeat=10.0)
    try:
        link.keep_up()
        peer = accept(server)
        peer.sendall(b"HB,1,2\n")
        assert link.recv(timeout=None) == b"HB,1,2\n"
        started = time.monotonic()
        assert link.recv() == b"" and link.messages() == []  # nothing there: at once
        assert link.recv(timeout=0.05) == b""                  # a short wait stays short
        assert time.monotonic() - started < 5, "a call that must not wait waited"
        assert link.send(b"POSQUERY,s,AAPL\n")
        peer.settimeout(10)
        assert peer.recv(100) == b"POSQUERY,s,AAPL\n"
        peer.sendall(b"HB,2,3\n")
        assert link.recv(timeout=None) == b"HB,2,3\n"
        assert link.up
        peer.close()
        assert link.recv(timeout=None) is None and not link.up  # closed: at once, not after 30 s
    finally:
        link.close()


def test_without_a_log_it_says_nothing_and_works():
    link = Link("test feed", "127.0.0.1", free_port())
    assert link.keep_up() is False
    assert link.send(b"x\n") is False  # not connected: nothing sent, no exception
    link.close()


def stop(lab, name):
    pid = lab.pid(name)
    lab.children[name].popen.send_signal(signal.SIGSTOP)
    wait_for(lambda: open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "T",
             what=f"the {name} to be stopped")


def test_a_hung_gateway_is_noticed_by_the_orderbook_and_the_strategy_alike(lab):
    """SIGSTOP the gateway: its sockets stay open, it only falls silent. The orderbook and
    the strategy use the same client, and both drop it after the same silence."""
    with book.SharedPriceBook.attach(lab.config.shm_name) as price_book:
        wait_for(lambda: price_book.header()["feed_state"] == book.FEED_UP, what="the feed to be up")
        stop(lab, "gateway")
        try:
            wait_for(lambda: price_book.header()["feed_state"] == book.FEED_DOWN, 15, "the book to say DOWN")
            wait_for(lambda: "lost the price feed: silent for" in lab.log("orderbook", 200), 15,
                     "the orderbook to say the feed went silent")
            wait_for(lambda: "lost the news feed: silent for" in lab.log("strategy", 200), 15,
                     "the strategy to say the news went silent")
        finally:
            lab.children["gateway"].popen.send_signal(signal.SIGCONT)
        wait_for(lambda: price_book.header()["feed_state"] == book.FEED_UP, 15, "the feed to come back")
