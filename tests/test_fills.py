"""Fills, fees, limits and P&L: the accounts' arithmetic, the event file, and the order manager
as a real process filling at the price in a real shared-memory book."""

import os
import subprocess
import sys

import pytest

from conftest import Client, wait_for
from hftlab import accounts, book, events, protocol
from hftlab.book import SharedPriceBook
from hftlab.config import Config
from hftlab.journal import STRATEGY_JOURNAL_COLUMNS, Journal
from hftlab.launcher import Launcher
from hftlab.order_manager import read_journal

TS = 1764087000123456789


def order(order_id, side="BUY", qty=10, symbol="AAPL", price=172.53):
    return protocol.Order(order_id, TS, side, qty, symbol, price)


# -- the arithmetic ------------------------------------------------------------------

def test_an_account_realizes_at_average_cost_and_marks_the_rest():
    a = accounts.Account()
    a.fill("BUY", 10, "AAPL", 100.0, 0.10)
    a.fill("BUY", 10, "AAPL", 110.0, 0.11)        # average cost 105
    assert a.position == {"AAPL": 20} and a.cost["AAPL"] == pytest.approx(105.0)
    a.fill("SELL", 5, "AAPL", 120.0, 0.06)        # realizes 5 x 15
    assert a.realized == pytest.approx(75.0)
    assert a.unrealized({"AAPL": 100.0}) == pytest.approx(15 * -5.0)
    assert a.pnl({"AAPL": 100.0}) == pytest.approx(75.0 - 75.0 - 0.27)
    # pnl is also cash + position x mark - fees
    assert a.pnl({"AAPL": 100.0}) == pytest.approx(a.cash + 15 * 100.0 - a.fees)


def test_turning_a_position_around_realizes_the_closed_part_and_opens_at_the_fill():
    a = accounts.Account()
    a.fill("BUY", 10, "AAPL", 100.0)
    a.fill("SELL", 20, "AAPL", 90.0)              # closes 10 at a loss of 10 each, opens short 10 at 90
    assert a.realized == pytest.approx(-100.0)
    assert a.position["AAPL"] == -10 and a.cost["AAPL"] == 90.0
    assert a.unrealized({"AAPL": 80.0}) == pytest.approx(100.0)
    a.fill("BUY", 10, "AAPL", 80.0)
    assert a.position["AAPL"] == 0 and "AAPL" not in a.cost and a.realized == pytest.approx(0.0)


def test_fees_and_slippage():
    assert accounts.fee(10, 172.53, 0.0, 1.0) == 0.17        # 1 bp of 1725.30
    assert accounts.fee(10, 172.53, 0.005, 0.0) == 0.05
    assert accounts.fee(1, 0.5, 0.0, 0.0) == 0.0
    assert accounts.slippage("BUY", 172.53, 172.55) == 0.02   # bought higher: lost
    assert accounts.slippage("SELL", 172.53, 172.55) == -0.02  # sold higher: gained
    assert accounts.Ledger()["new"].pnl({}) == 0.0


def test_an_event_row_reads_back_as_written(tmp_path):
    path = str(tmp_path / "events.csv")
    f = events.EventFile(path)
    rows = [events.Event(5, "a", events.ORDER, "o1", "BUY", 10, "AAPL", 172.53, order_no=1, tick_ts_ns=2),
            events.Event(5, "a", events.FILL, "o1", "BUY", 10, "AAPL", 172.53, 172.55, 0.17, order_no=1,
                         tick_ts_ns=2, book_seq=9, book_ts_ns=3),
            events.Event(6, "", events.REJECT, "o2", "SELL", 0, "AAPL", 1.0, reason="quantity must be positive")]
    f.write(rows)
    f.close()
    assert events.read_events(path) == rows
    with open(path) as fh:
        assert fh.readline().strip() == events.COLUMNS
    with open(path, "a") as fh:
        fh.write("7,a,order")                      # a row still being written: left for later
    assert events.read_events(path) == rows


# -- the journal ---------------------------------------------------------------------

def test_a_journal_from_before_fills_is_upgraded_in_place_and_keeps_its_positions(tmp_path):
    path = tmp_path / "orders.csv"
    path.write_text(STRATEGY_JOURNAL_COLUMNS + "\n1,5,c,a-1,1,BUY,10,AAPL,172.53,alpha\n"
                    "2,6,c,a-2,1,SELL,30,AAPL,173.00,alpha\n")
    j = Journal(str(path))
    assert j.position("alpha", "AAPL") == -20 and j.last_no == 2
    account = j.ledger["alpha"]
    assert account.fees == 0.0 and account.realized == pytest.approx(10 * 0.47)
    assert j.booked["a-1"][2].price == 172.53         # filled at its own price
    j.append(order("a-3", price=170.0), "c", 7, "alpha")
    j.close()
    rows = read_journal(str(path))
    assert [r["order_no"] for r in rows] == ["1", "2", "3"]
    assert rows[0]["fill_price"] == "" and rows[2]["fill_price"] == "170.00"
    assert Journal(str(path)).position("alpha", "AAPL") == -10
    assert not (tmp_path / "orders.csv.upgrading").exists()


# -- the order manager, filling at the book's price ----------------------------------

@pytest.fixture
def exchange(tmp_path):
    """An order manager with a book it fills from (AAPL at 172.55, tick 812), its limits on,
    and an event file."""
    config = Config(symbols=("AAPL", "MSFT"), position_limit=20, rate_limit=8,
                    events=str(tmp_path / "events.csv"))
    with Launcher(config, free_ports=True, names=["order_manager"]) as om, \
            SharedPriceBook(["AAPL", "MSFT"], om.config.shm_name) as price_book:
        price_book.update("AAPL", 172.55, seq=812, ts_ns=TS + 5)
        yield om, price_book


def test_an_order_is_filled_at_the_book_price_when_it_is_handled_not_the_one_it_saw(exchange):
    om, price_book = exchange
    with Client(om.config.order_port) as c:
        c.send(protocol.PositionQuery("alpha", "AAPL"))
        c.receive(1)
        c.send(order("f1", price=172.53))
        ack, fill = c.receive(2, fills=True)
        assert ack == protocol.Ack("f1", 1)
        assert fill == protocol.Fill("f1", 1, "BUY", 10, "AAPL", 172.55, 0.17, 812)
        price_book.update("AAPL", 172.40, seq=813, ts_ns=TS + 6)
        c.send(order("f2", side="SELL", qty=20, price=172.53))
        assert c.receive(2, fills=True)[1] == protocol.Fill("f2", 2, "SELL", 20, "AAPL", 172.40, 0.34, 813)
        c.send(order("f1", price=172.53))          # a re-send: the same ACK and FILL again
        assert c.receive(2, fills=True) == [ack, fill]
        c.send(order("m1", symbol="MSFT", price=400.0))  # no MSFT price in the book: its own price
        assert c.receive(2, fills=True)[1] == protocol.Fill("m1", 3, "BUY", 10, "MSFT", 400.0, 0.4, 0)
    rows = read_journal(om.config.journal)
    assert [(r["fill_price"], r["fee"], r["book_seq"]) for r in rows] == [
        ("172.55", "0.17", "812"), ("172.40", "0.34", "813"), ("400.00", "0.40", "0")]
    kinds = wait_for(lambda: (e := events.read_events(om.config.events)) and len(e) == 6 and e, 10, "6 event rows")
    assert [(e.kind, e.order_id) for e in kinds] == [("order", "f1"), ("fill", "f1"), ("order", "f2"),
                                                     ("fill", "f2"), ("order", "m1"), ("fill", "m1")]
    assert kinds[1].fill_price == 172.55 and kinds[1].book_seq == 812 and kinds[1].strategy == "alpha"
    log = wait_for(lambda: "slippage +0.02" in (t := om.log("order_manager", 50)) and t, 10, "the fill's log line")
    assert "Received Order 1: BUY 10 AAPL @ 172.53, filled @ 172.55 (slippage +0.02), fee 0.17" in log


def test_the_limits_refuse_with_a_reason_that_names_them(exchange):
    om, _ = exchange
    with Client(om.config.order_port) as c:
        c.send(protocol.PositionQuery("alpha", "AAPL"))
        c.receive(1)
        c.send(order("p1", qty=20), order("p2", qty=10))
        ok, over = c.receive(2)
        assert isinstance(ok, protocol.Ack)
        assert over == protocol.Reject("p2", "position limit: alpha would hold 30 AAPL (beyond +-20)")
    with Client(om.config.order_port) as c:                # one write: its lines come within one second
        c.send(protocol.PositionQuery("beta", "AAPL"), *[order(f"r{i}", side="SELL", qty=1) for i in range(10)])
        replies = c.receive(11)[1:]
    assert [type(r).__name__ for r in replies] == ["Ack"] * 7 + ["Reject"] * 3
    assert replies[-1].reason == "message rate limit: 11 messages in the last second on this connection (above 8)"
    rejects = wait_for(lambda: [e for e in events.read_events(om.config.events) if e.kind == "reject"]
                       if len(events.read_events(om.config.events)) >= 20 else None, 10, "the event rows")
    assert [e.reason.split(":")[0] for e in rejects] == ["position limit"] + ["message rate limit"] * 3


def test_a_restarted_order_manager_recovers_positions_and_pnl_from_its_journal(exchange):
    om, price_book = exchange
    with Client(om.config.order_port) as c:
        c.send(protocol.PositionQuery("alpha", "AAPL"), order("k1"))
        c.receive(2)
    price_book.update("AAPL", 175.55, seq=900, ts_ns=TS + 9)
    om.kill("order_manager")
    om.start_one("order_manager")
    with Client(om.config.order_port) as c:
        c.send(protocol.PositionQuery("alpha", "AAPL"))
        assert c.receive(1) == [protocol.Position("alpha", "AAPL", 10)]
    om.stop()
    said = om.log("order_manager", 20)
    # Bought 10 at 172.55 (fee 0.17), marked at 175.55: 30.00 unrealized.
    assert ("P&L of 'alpha': {'position': {'AAPL': 10}, 'cash': -1725.5, 'realized': 0.0, "
            "'unrealized': 30.0, 'fees': 0.17, 'pnl': 29.83}") in said


def test_an_event_file_that_cannot_be_written_loses_rows_and_says_so_once(tmp_path):
    said = []

    class Log:
        def error(self, line):
            said.append(("error", line))

        def info(self, line):
            said.append(("info", line))

    f = events.EventFile(str(tmp_path / "events.csv"), Log())
    good = events.Event(5, "a", events.REJECT, "o1", "BUY", 0, "AAPL", 1.0, reason="no")
    writable, f.fd = f.fd, os.open(str(tmp_path / "events.csv"), os.O_RDONLY)   # as a full disk refuses
    f.write([good])
    f.write([good])
    assert [kind for kind, _ in said] == ["error"] and "cannot write the event file" in said[0][1]
    os.close(f.fd)
    f.fd = writable
    f.write([good])
    f.close()
    assert said[-1] == ("info", f"the event file {tmp_path / 'events.csv'} can be written again")
    assert events.read_events(str(tmp_path / "events.csv")) == [good]


def test_an_event_file_that_cannot_be_opened_is_one_sentence(tmp_path):
    (tmp_path / "dir").mkdir()
    flags = ["--order-port", "0", "--shm-name", book.new_name(), "--journal", str(tmp_path / "j.csv")]
    out = subprocess.run([sys.executable, "-m", "hftlab.order_manager", *flags, "--events", str(tmp_path / "dir")],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30)
    assert out.returncode == 2 and f"cannot write the event file {tmp_path / 'dir'}: Is a directory" in out.stdout
    assert "--events" in out.stdout and "Traceback" not in out.stdout
