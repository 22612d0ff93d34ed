"""Bad input on every port: the servers answer what they must, keep running, and no other
client notices. Plus the property tests of the order validator."""

import asyncio
import logging
import random
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import Client, wait_for
from hftlab import book, gateway, net, protocol
from hftlab.config import Config
from hftlab.order_manager import MAX_BAD_LINES, check_order, read_journal

TS = 1764087000123456789


def order(order_id, **kw):
    fields = dict(tick_ts_ns=TS, side="BUY", qty=10, symbol="AAPL", price=172.53)
    fields.update(kw)
    return protocol.Order(order_id, **fields)


def book_updates(lab):
    with book.SharedPriceBook.attach(lab.config.shm_name) as price_book:
        return price_book.header()["updates"]


def still_flowing(lab):
    """The book keeps filling with no gaps, and orders keep being booked."""
    before, booked = book_updates(lab), len(read_journal(lab.config.journal))
    wait_for(lambda: book_updates(lab) > before + 20, 10, "more prices in the book")
    wait_for(lambda: len(read_journal(lab.config.journal)) > booked, 20, "another booked order")
    with book.SharedPriceBook.attach(lab.config.shm_name) as price_book:
        assert price_book.header()["gaps"] == 0


GARBAGE = [
    bytes(random.Random(7).randrange(256) for _ in range(5000)),  # random bytes
    "ORDER,é,1,BUY,1,AAPL,1.00\n".encode(),                       # not ASCII
    b"\n\n\r\n",                                                  # empty lines
    b"X" * 5000 + b"\n",                                          # a line over the limit
]


@pytest.mark.parametrize("port_name", ["price_port", "news_port"])
def test_feeds_ignore_what_subscribers_send(lab, port_name):
    with socket.create_connection(("127.0.0.1", getattr(lab.config, port_name))) as s:
        for junk in GARBAGE:
            s.sendall(junk)
    still_flowing(lab)


def test_order_port_answers_every_kind_of_garbage_and_stays_usable(lab):
    with Client(lab.config.order_port) as c, Client(lab.config.order_port) as bystander:
        c.send(b"\xff\xfe\x00garbage\n", "ORDER,é,1,BUY,1,AAPL,1.00\n".encode(), b"\n",
               b"X" * 5000 + b"\n")
        replies = c.receive(4)
        assert [type(r) for r in replies] == [protocol.Error] * 4
        assert ["ASCII" in replies[0].reason, "ASCII" in replies[1].reason,
                replies[2].reason == "empty line", "longer than 1024 bytes" in replies[3].reason] == [True] * 4
        c.send(order("fine1"))
        (ack,) = c.receive(1)
        assert isinstance(ack, protocol.Ack)
        bystander.send(order("fine2"))
        assert isinstance(bystander.receive(1)[0], protocol.Ack)


def test_half_a_message_then_silence_blocks_nobody(lab):
    with Client(lab.config.order_port) as slow, Client(lab.config.order_port) as other:
        slow.send(b"ORDER,h1,1764087000123456789,BU")      # ...and nothing more, for now
        other.send(order("o-other"))
        assert isinstance(other.receive(1)[0], protocol.Ack)
        slow.send(b"Y,10,AAPL,172.53\n")                   # the rest arrives much later
        assert slow.receive(1)[0] == protocol.Ack("h1", ack_number(lab, "h1"))


def ack_number(lab, order_id):
    return next(int(r["order_no"]) for r in read_journal(lab.config.journal) if r["order_id"] == order_id)


@pytest.mark.parametrize("bad, reply_type, reason", [
    (b"CANCEL,a1\n", protocol.Error, "unknown message type 'CANCEL'"),
    (b"ORDER,a1,1,BUY,10,AAPL\n", protocol.Error, "ORDER needs 7 fields; got 6"),
    (b"ORDER,a1,1,HOLD,10,AAPL,1.00\n", protocol.Error, "side must be BUY or SELL"),
    (b"ORDER,a1,1,BUY,1.5,AAPL,1.00\n", protocol.Error, "qty"),
    (b"ORDER,a1,1,BUY,10,AAPL,nan\n", protocol.Error, "price"),
    (b"ORDER,a1,1,BUY,10,AAPL,-5.00\n", protocol.Reject, "price must be a positive number"),
    (b"ORDER,a1,1,BUY,10,ZZZZ,1.00\n", protocol.Reject, "unknown symbol ZZZZ"),
    (b"ORDER,a1,1,BUY,0,AAPL,172.00\n", protocol.Reject, "quantity must be positive"),
    (b"ORDER,a1,1,SELL,-3,AAPL,172.00\n", protocol.Reject, "quantity must be positive"),
    (b"ORDER,a1,1,BUY,5000,AAPL,172.00\n", protocol.Reject, "above the maximum 1000"),
    (b"ORDER,a1,1,BUY,10,AAPL,9999.00\n", protocol.Reject, "away from the book's"),
])
def test_wrong_orders_get_a_specific_reason(lab, bad, reply_type, reason):
    before = len(read_journal(lab.config.journal))
    with Client(lab.config.order_port) as c:
        c.send(bad)
        (reply,) = c.receive(1)
    assert type(reply) is reply_type and reason in reply.reason, reply
    # Nothing wrong was booked (the strategy may have booked its own orders meanwhile).
    assert all(r["order_id"] != "a1" for r in read_journal(lab.config.journal)[before:])


def test_repeated_abuse_closes_that_connection_only(lab):
    with Client(lab.config.order_port) as abuser, Client(lab.config.order_port) as bystander:
        abuser.send(b"nonsense\n" * (MAX_BAD_LINES + 5))
        replies = abuser.receive(MAX_BAD_LINES + 1)
        assert replies[-1] == protocol.Error(f"{MAX_BAD_LINES} bad lines in a row; closing")
        abuser.sock.settimeout(5)
        assert abuser.sock.recv(100) == b""                  # closed by the server
        bystander.send(order("still-here"))
        assert isinstance(bystander.receive(1)[0], protocol.Ack)


def test_hundreds_of_connections_opened_and_dropped(lab):
    for port in (lab.config.price_port, lab.config.news_port, lab.config.order_port):
        for _ in range(150):
            s = socket.create_connection(("127.0.0.1", port))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()                                        # with linger 0: a reset, the rudest goodbye
    still_flowing(lab)
    assert all(state["running"] for state in lab.status().values())


def test_a_subscriber_that_never_reads_stalls_nobody(lab):
    lazy = socket.create_connection(("127.0.0.1", lab.config.price_port))
    lazy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        still_flowing(lab)
    finally:
        lazy.close()


def test_the_gateway_drops_a_slow_consumer_and_keeps_serving_the_others():
    """Real sockets, one asyncio loop: a reader that never reads is cut off, the other gets everything."""
    async def scenario():
        log = logging.getLogger("test-slow-consumer")
        feed = gateway.Feed("PRICE", "s1", log)
        server = await gateway.serve_feed(feed, "127.0.0.1", 0, "--price-port")
        port = server.sockets[0].getsockname()[1]
        lazy = socket.create_connection(("127.0.0.1", port))
        lazy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while len(feed.subscribers) < 2:
            await asyncio.sleep(0.01)
        chunk = b"PRICE,1,1,AAPL,1.00\n" * 5000              # 100 KB a publish
        received = 0
        sent = 0
        while len(feed.subscribers) == 2 and sent < 200:     # far more than any socket buffer
            feed.publish(chunk)
            sent += 1
            received += len(await reader.read(1 << 20))
            await asyncio.sleep(0)
        dropped = len(feed.subscribers) == 1
        for _ in range(20):                                  # drain what the fast reader has left
            feed.publish(chunk)
            sent += 1
        while received < sent * len(chunk):
            received += len(await asyncio.wait_for(reader.read(1 << 20), 5))
        writer.close()
        lazy.close()
        server.close()
        await server.wait_closed()
        return dropped, received, sent * len(chunk) + len(b"HELLO,PRICE,s1\n")

    dropped, received, expected = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert dropped
    assert received == expected


def test_servers_listen_on_loopback_only(lab):
    for port in (lab.config.price_port, lab.config.news_port, lab.config.order_port):
        with pytest.raises(OSError):   # 127.0.0.2 is this machine too, but not the bound address
            socket.create_connection(("127.0.0.2", port), timeout=2).close()


def test_binding_beyond_loopback_warns(caplog):
    log = logging.getLogger("test-exposed")
    with caplog.at_level(logging.WARNING, "test-exposed"):
        net.warn_if_exposed(log, "127.0.0.1")
        assert caplog.records == []
        net.warn_if_exposed(log, "0.0.0.0")
    assert "no authentication" in caplog.records[0].getMessage()


orders = st.builds(
    protocol.Order,
    order_id=st.from_regex(r"[A-Za-z0-9_-]{1,32}", fullmatch=True),
    tick_ts_ns=st.integers(0, 2**63 - 1),
    side=st.sampled_from(["BUY", "SELL"]),
    qty=st.integers(-10**6, 10**6),
    symbol=st.from_regex(r"[A-Z][A-Z0-9.]{0,7}", fullmatch=True),
    price=st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                    st.integers(0, 10**8).map(lambda c: c / 100)),
)


@settings(max_examples=300, deadline=None)
@given(orders, st.one_of(st.none(), st.floats(0.01, 1e6)))
def test_order_validator_never_raises_and_what_it_accepts_round_trips(o, last_price):
    config = Config()
    reason = check_order(o, config, last_price)
    assert reason is None or isinstance(reason, str)
    if reason is None:
        assert o.symbol in config.symbols and 0 < o.qty <= config.max_qty and o.price > 0
        again = protocol.decode(protocol.encode(o).rstrip(b"\n"))
        assert again._replace(price=round(again.price, 2)) == o._replace(price=round(o.price, 2))
