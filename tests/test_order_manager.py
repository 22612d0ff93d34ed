"""The order manager as a real process: several clients, ACKs, REJECTs, ERRORs, the journal."""

import os
import stat

import pytest

from conftest import Client, wait_for
from hftlab import protocol
from hftlab.config import Config
from hftlab.launcher import LaunchError, Launcher
from hftlab.book import SharedPriceBook
from hftlab.order_manager import JOURNAL_COLUMNS, OLD_JOURNAL_COLUMNS, check_order, read_journal

TS = 1764087000123456789


def order(order_id, side="BUY", qty=10, symbol="AAPL", price=172.53):
    return protocol.Order(order_id, TS, side, qty, symbol, price)


@pytest.fixture
def om():
    with Launcher(Config(), free_ports=True, names=["order_manager"]) as launcher:
        yield launcher


def test_two_clients_n_orders_n_acks_n_journal_lines(om):
    n = 25
    with Client(om.config.order_port) as a, Client(om.config.order_port) as b:
        for i in range(n):
            (a if i % 2 else b).send(order(f"x{i}", side="BUY" if i % 3 else "SELL"))
        replies = a.receive(n // 2) + b.receive(n - n // 2)
    assert all(isinstance(r, protocol.Ack) for r in replies), replies
    assert sorted(r.order_no for r in replies) == list(range(1, n + 1))
    journal = read_journal(om.config.journal)
    assert [int(row["order_no"]) for row in journal] == list(range(1, n + 1))
    by_id = {r.order_id: r.order_no for r in replies}
    assert all(by_id[row["order_id"]] == int(row["order_no"]) for row in journal)
    # The confirmation a human reads, once per order: logged just after each ACK is sent.
    log = wait_for(lambda: (t := om.log("order_manager", 200)).count("Received Order ") >= n and t, 10,
                   f"{n} 'Received Order' lines")
    assert log.count("Received Order ") == n
    assert "Received Order 1: " in log and f"Received Order {n}: " in log
    assert stat.S_IMODE(os.stat(om.config.journal).st_mode) == 0o600


def test_bad_lines_get_error_and_the_connection_stays_usable(om):
    with Client(om.config.order_port) as c:
        c.send(b"HELLO WORLD\n", b"\xff\xfe\n", b"ORDER,a1,1,BUY,ten,AAPL,1.00\n",
               protocol.Price(1, TS, "AAPL", 1.0), order("ok1"))
        replies = c.receive(5)
    assert [type(r) for r in replies] == [protocol.Error] * 4 + [protocol.Ack]
    assert "unknown message type" in replies[0].reason
    assert "ASCII" in replies[1].reason
    assert "qty" in replies[2].reason
    assert "ORDER lines" in replies[3].reason


@pytest.mark.parametrize("bad, reason", [
    (order("r1", symbol="TSLA"), "unknown symbol TSLA"),
    (order("r2", qty=0), "quantity must be positive"),
    (order("r3", qty=-5), "quantity must be positive"),
    (order("r4", qty=1001), "above the maximum 1000"),
    (order("r5", price=0.0), "price must be a positive number"),
])
def test_rule_breaking_orders_are_rejected_with_a_reason(om, bad, reason):
    with Client(om.config.order_port) as c:
        c.send(bad)
        (reply,) = c.receive(1)
    assert isinstance(reply, protocol.Reject) and reply.order_id == bad.order_id
    assert reason in reply.reason
    assert read_journal(om.config.journal) == []


def test_a_resent_order_is_confirmed_again_not_booked_twice(om):
    with Client(om.config.order_port) as c:
        c.send(order("d1"), order("d1"))
        first, again = c.receive(2)
    # From another connection too: a strategy that reconnected re-sends with the same id.
    with Client(om.config.order_port) as c:
        c.send(order("d1"))
        (later,) = c.receive(1)
    assert first == again == later == protocol.Ack("d1", 1)
    assert len(read_journal(om.config.journal)) == 1


def test_a_reused_order_id_for_a_different_order_is_rejected(om):
    with Client(om.config.order_port) as c:
        c.send(order("d2"), order("d2", qty=20))
        first, second = c.receive(2)
    assert first == protocol.Ack("d2", 1)
    assert isinstance(second, protocol.Reject)
    assert "duplicate order_id d2: already used for order 1" in second.reason
    assert len(read_journal(om.config.journal)) == 1


def test_numbering_and_ids_survive_a_crash_of_the_order_manager(om):
    with Client(om.config.order_port) as c:
        c.send(order("a"), order("b"))
        assert [r.order_no for r in c.receive(2)] == [1, 2]
    om.kill("order_manager")       # SIGKILL: no chance to flush or say goodbye
    om.start_one("order_manager")
    with Client(om.config.order_port) as c:
        c.send(order("c"), order("b"))
        assert c.receive(2) == [protocol.Ack("c", 3), protocol.Ack("b", 2)]
    assert [r["order_id"] for r in read_journal(om.config.journal)] == ["a", "b", "c"]


def test_price_band_uses_the_book_when_there_is_one():
    config = Config(symbols=("AAPL",), price_band=0.10)
    assert check_order(order("p", price=200.0), config, last_price=172.0).startswith("price 200.00")
    assert check_order(order("p", price=180.0), config, last_price=172.0) is None
    assert check_order(order("p", price=999.0), config, last_price=None) is None


def test_a_taken_port_is_one_clear_sentence(om):
    clash = Config(order_port=om.config.order_port, journal=om.config.journal)
    with pytest.raises(LaunchError) as info:
        Launcher(clash, names=["order_manager"], ready_timeout=10).start()
    text = str(info.value)
    assert "exited with status 2" in text
    assert f"port {om.config.order_port} on 127.0.0.1 is already in use" in text
    assert "Traceback" not in text


def test_a_book_with_other_symbols_does_not_upset_the_band_check():
    config = Config(symbols=("AAPL", "MSFT"))
    with Launcher(config, free_ports=True, names=["order_manager"]) as om, \
            SharedPriceBook(["MSFT"], om.config.shm_name) as book:
        book.update("MSFT", 400.0)
        with Client(om.config.order_port) as c:
            c.send(order("b1", symbol="AAPL"), order("b2", symbol="MSFT", price=999.0),
                   order("b3", symbol="MSFT", price=401.0))
            a, b, ok = c.receive(3)
    assert a == protocol.Ack("b1", 1)                  # no AAPL in that book: no band check
    assert isinstance(b, protocol.Reject) and "away from the book's 400.00" in b.reason
    assert ok == protocol.Ack("b3", 2)


ROW = "1,5,c,a-1,1,BUY,10,AAPL,172.53,strategy,172.53,0.17,0,0\n"


@pytest.mark.parametrize("make, says", [
    (lambda d: d.mkdir(), "is a directory, not a regular file"),
    (lambda d: os.mkfifo(d), "is a FIFO, not a regular file"),   # opening it used to block forever
    (lambda d: d.symlink_to("/dev/full"), "is a character device, not a regular file"),  # read forever
    (lambda d: d.write_text(JOURNAL_COLUMNS + "\n1,2\n"), "line 2 of the journal"),
    (lambda d: d.write_text(JOURNAL_COLUMNS + "\n" + ROW.replace("BUY", "HOLD")), "line 2 of the journal"),
    (lambda d: d.write_text(ROW), "does not start with the header line"),         # header missing
    (lambda d: d.write_text("order_no,when,who\n" + ROW), "does not start with the header line"),
    (lambda d: d.write_text("my notes, not a journal"), "does not start with the header line"),
    (lambda d: d.write_text(OLD_JOURNAL_COLUMNS + "\n" + ROW.rsplit(",", 1)[0] + "\n"),
     "written by an older hftlab"),
])
def test_an_unusable_journal_is_one_sentence(tmp_path, make, says):
    path = tmp_path / "orders.csv"
    make(path)
    before = path.read_bytes() if path.is_file() else None
    with pytest.raises(LaunchError) as info:
        Launcher(Config(journal=str(path)), free_ports=True, names=["order_manager"],
                 ready_timeout=20).start()
    assert "exited with status 2" in str(info.value) and says in str(info.value)
    assert "Traceback" not in str(info.value)
    if before is not None:
        assert path.read_bytes() == before      # a refused file is left exactly as it was


def test_an_old_journal_stays_readable(tmp_path):
    path = tmp_path / "orders.csv"
    path.write_text(OLD_JOURNAL_COLUMNS + "\n1,5,c,a-1,1,BUY,10,AAPL,172.53\n")
    assert read_journal(str(path)) == [dict(order_no="1", recv_ns="5", client="c", order_id="a-1",
                                            tick_ts_ns="1", side="BUY", qty="10", symbol="AAPL",
                                            price="172.53")]


def test_numbering_continues_from_the_largest_number_not_the_row_count(tmp_path):
    path = tmp_path / "orders.csv"
    rows = [ROW.replace("1,5,c,a-1", f"{n},5,c,a-{n}") for n in (1, 2, 3)]
    path.write_text(JOURNAL_COLUMNS + "\n" + rows[0] + rows[2])     # row 2 deleted by hand
    with Launcher(Config(journal=str(path)), free_ports=True, names=["order_manager"]) as om:
        with Client(om.config.order_port) as c:
            c.send(order("new"), order("a-3", price=172.53))
            assert c.receive(2) == [protocol.Ack("new", 4), protocol.Ack("a-3", 3)]
        assert "has 2 orders; numbering continues from 4" in om.log("order_manager")
    assert [r["order_no"] for r in read_journal(str(path))] == ["1", "3", "4"]


def test_a_row_cut_short_by_a_crash_is_dropped_not_glued(tmp_path):
    path = tmp_path / "orders.csv"
    path.write_text(JOURNAL_COLUMNS + "\n1,5,c,a-1,1,BUY,10,AAPL,172.53,,172.53,0.17,0,0\n2,6,c,a-2,1,BU")
    with Launcher(Config(journal=str(path)), free_ports=True, names=["order_manager"]) as om:
        with Client(om.config.order_port) as c:
            c.send(order("a-2"))
            assert c.receive(1) == [protocol.Ack("a-2", 2)]
    assert [r["order_id"] for r in read_journal(str(path))] == ["a-1", "a-2"]


def test_the_answer_lines_of_the_log_read_back_as_what_was_answered(om):
    """The dashboard's blotter reads the log: what booked_line/rejected_line write, through
    the real process's logger, parse_log_line and parse_answer read back exactly."""
    from hftlab import order_manager, process

    with Client(om.config.order_port) as c:
        c.send(order("ok1", side="SELL", qty=7, symbol="MSFT", price=410.05), order("bad1", qty=0))
        ack, reject = c.receive(2)
    assert isinstance(ack, protocol.Ack) and isinstance(reject, protocol.Reject)
    # The answers are logged just after they are sent.
    wait_for(lambda: "Rejected bad1 " in om.log("order_manager", 200), 10, "the REJECT's log line")
    logged = [process.parse_log_line(line) for line in om.log("order_manager", 200).splitlines()]
    assert all(logged), "every line of the log is one parse_log_line reads"
    assert {line.name for line in logged} == {"order_manager"}
    answers = [a for a in (order_manager.parse_answer(line.text) for line in logged) if a]
    assert answers == [
        order_manager.Answer(order_no=ack.order_no, side="SELL", qty=7, symbol="MSFT", price=410.05),
        order_manager.Answer(order_id="bad1", reason=reject.reason),
    ]
    assert order_manager.parse_answer("client 127.0.0.1:5 connected (1 now)") is None


def test_the_band_is_off_only_when_there_is_no_usable_price_and_the_log_says_so_once(om):
    said = "orders for AAPL are booked without the price band"
    with Client(om.config.order_port) as c:
        for i in range(3):                              # no orderbook at all
            c.send(order(f"n{i}", price=500.0))
            assert isinstance(c.receive(1)[0], protocol.Ack)
        wait_for(lambda: "Received Order 3" in om.log("order_manager", 50), 10, "the third order's line")
        assert om.log("order_manager", 50).count(f"{said}: there is no book") == 1
        with SharedPriceBook(["AAPL"], om.config.shm_name) as price_book:
            price_book.update("AAPL", 100.0)
            k = iter(range(1000))                       # the band is back once the order manager looks
            wait_for(lambda: (c.send(order(f"b{next(k)}", price=500.0)) or
                              isinstance(c.receive(1)[0], protocol.Reject)), 10, "a REJECT by the band")
            assert "checked against the price band again" in om.log("order_manager", 50)
            # A learner's orderbook may write a price no reader can use: 0, NaN, inf, negative.
            price_book.update_index(0, 0.0, 99, 1)
            for i in range(3):
                c.send(order(f"z{i}", price=1.0))
                assert isinstance(c.receive(1)[0], protocol.Ack)
        wait_for(lambda: "@ 1.00" in om.log("order_manager", 50), 10, "the last orders' lines")
        log = om.log("order_manager", 100)
    assert log.count(f"{said}: the book has no usable price for AAPL") == 1, log
