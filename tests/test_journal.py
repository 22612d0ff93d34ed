"""The order manager's journal as a real process: a full disk, exact prices, fsync, positions.

A full disk is simulated without touching a real one: the order manager runs under a
file-size limit (RLIMIT_FSIZE, what `ulimit -f` and `prlimit --fsize` set), so a write past
it fails with EFBIG exactly where a full disk fails with ENOSPC; raising the limit is
"space returns". Any user may set it on their own child, so this runs as root or not.
"""

import contextlib
import resource
import subprocess
import sys
import threading


from conftest import Client, wait_for
from hftlab import book, net, process, protocol
from hftlab.config import Config
from hftlab.launcher import Launcher
from hftlab.order_manager import JOURNAL_COLUMNS, read_journal

TS = 1764087000123456789


def order(order_id, side="BUY", qty=10, symbol="AAPL", price=172.53):
    return protocol.Order(order_id, TS, side, qty, symbol, price)


class OrderManagerProcess:
    """``python -m hftlab.order_manager`` started by the test itself, so that it can run
    under a file-size limit; its output comes through a pipe (a pipe has no size limit)."""

    def __init__(self, journal, fsize=None, extra=()):
        def limit():
            if fsize is not None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

        config = Config(order_port=0, journal=str(journal), shm_name=book.new_name())
        self.proc = subprocess.Popen([sys.executable, "-m", "hftlab.order_manager", *config.to_args(), *extra],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, preexec_fn=limit)
        self.lines = []
        threading.Thread(target=self._read, daemon=True).start()
        facts = wait_for(lambda: next((process.parse_ready(l) for l in self.lines if process.parse_ready(l)), None)
                         or self.proc.poll() is not None and f"exited: {self.lines}", 20, "the ready line")
        assert isinstance(facts, dict), facts
        self.facts = facts
        self.port = int(facts["orders"].rsplit(":", 1)[1])

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    def log(self):
        return "".join(self.lines)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()


@contextlib.contextmanager
def order_manager(journal, fsize=None, extra=()):
    om = OrderManagerProcess(journal, fsize, extra)
    try:
        yield om
    finally:
        om.stop()


def test_a_full_disk_is_never_acked_and_booking_resumes_when_space_returns(tmp_path):
    journal = tmp_path / "orders.csv"
    header = (JOURNAL_COLUMNS + "\n").encode()
    limit = len(header) + 200                  # room for two rows and a part of a third
    with order_manager(journal, fsize=limit) as om, Client(om.port) as c:
        replies, n = [], 0
        while not any(isinstance(r, protocol.Reject) for r in replies):
            n += 1
            assert n < 10, replies
            c.send(order(f"f{n}"))
            replies += c.receive(1)
        acked = [r for r in replies if isinstance(r, protocol.Ack)]
        assert [r.order_no for r in acked] == list(range(1, len(acked) + 1)) and acked
        full = replies[-1]
        assert full.order_id == f"f{n}" and "journal unwritable" in full.reason and "not booked" in full.reason
        # Nothing of the refused row is left in the file: every row is whole.
        data = journal.read_bytes()
        assert data.endswith(b"\n") and len(data) <= limit
        assert [r["order_id"] for r in read_journal(str(journal))] == [r.order_id for r in acked]

        # While the disk stays full: every order answered with a REJECT, logged once.
        c.send(*(order(f"g{i}") for i in range(5)))
        assert all(isinstance(r, protocol.Reject) and "journal unwritable" in r.reason for r in c.receive(5))
        assert journal.read_bytes() == data

        # Space returns: booking goes on, in the same process, with the next number.
        hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
        resource.prlimit(om.proc.pid, resource.RLIMIT_FSIZE, (hard, hard))
        c.send(order(f"f{n}"), order("h1"))
        assert c.receive(2) == [protocol.Ack(f"f{n}", len(acked) + 1), protocol.Ack("h1", len(acked) + 2)]
        # The log comes through a pipe that a thread of this test reads: wait for the line.
        log = wait_for(lambda: "can be written again" in om.log() and om.log(), 10, "the recovery line")
        # The outage was logged once, however many orders it refused (the pipe keeps the order).
        assert log.count("cannot write the journal") == 1
        assert om.proc.poll() is None
    rows = read_journal(str(journal))
    assert [int(r["order_no"]) for r in rows] == list(range(1, len(acked) + 3))
    assert all(len(r) == len(JOURNAL_COLUMNS.split(",")) for r in rows)
    # And a restart reads it back without complaint.
    with order_manager(journal) as om, Client(om.port) as c:
        c.send(order("h2"))
        assert c.receive(1) == [protocol.Ack("h2", len(acked) + 3)]


def test_prices_are_booked_exactly_as_sent(tmp_path):
    with Launcher(Config(journal=str(tmp_path / "orders.csv")), free_ports=True,
                  names=["order_manager"]) as om, Client(om.config.order_port) as c:
        c.send(b"ORDER,p1,1,BUY,10,AAPL,0.001\n", b"ORDER,p2,1,BUY,10,AAPL,172.535\n",
               b"ORDER,p3,1,BUY,10,AAPL,172.530\n",
               b"ORDER,p3,1,BUY,10,AAPL,172.531\n")   # p3 again, but not the same price
        p1, p2, p3, again = c.receive(4)
    assert isinstance(p1, protocol.Reject) and "more than two decimals" in p1.reason
    assert isinstance(p2, protocol.Reject) and "more than two decimals" in p2.reason
    assert p3 == protocol.Ack("p3", 1)
    assert isinstance(again, protocol.Reject) and "duplicate order_id p3" in again.reason
    assert [(r["order_id"], r["price"]) for r in read_journal(om.config.journal)] == [("p3", "172.53")]


def test_fsync_is_an_option_the_order_manager_reports(tmp_path):
    with order_manager(tmp_path / "a.csv") as plain, \
            order_manager(tmp_path / "b.csv", extra=["--fsync"]) as synced:
        assert plain.facts["fsync"] == "off" and synced.facts["fsync"] == "on"
        with Client(synced.port) as c:
            c.send(order("s1"))
            assert c.receive(1) == [protocol.Ack("s1", 1)]


def test_positions_are_answered_from_the_journal_across_a_restart(tmp_path):
    journal = tmp_path / "orders.csv"
    with order_manager(journal) as om:
        with Client(om.port) as a, Client(om.port) as b, Client(om.port) as anon:
            a.send(protocol.PositionQuery("alpha", "AAPL"), order("a1"), order("a2", side="SELL", qty=20),
                   order("a3", symbol="MSFT", price=400.0))
            assert a.receive(4)[0] == protocol.Position("alpha", "AAPL", 0)
            b.send(protocol.PositionQuery("beta", "AAPL"), order("b1"))
            assert b.receive(2)[0] == protocol.Position("beta", "AAPL", 0)
            anon.send(order("n1"))                      # by hand, no name: booked for nobody
            anon.receive(1)
            a.send(protocol.PositionQuery("beta", "AAPL"))   # one connection, one strategy
            (refused,) = a.receive(1)
            assert isinstance(refused, protocol.Error) and "this connection is strategy alpha" in refused.reason
    assert [r["strategy"] for r in read_journal(str(journal))] == ["alpha"] * 3 + ["beta", ""]
    with order_manager(journal) as om, Client(om.port) as c:
        c.send(*(protocol.PositionQuery("alpha", s) for s in ("AAPL", "MSFT", "GOOGL")))
        assert c.receive(3) == [protocol.Position("alpha", "AAPL", -10), protocol.Position("alpha", "MSFT", 10),
                                protocol.Position("alpha", "GOOGL", 0)]


def test_the_journal_row_comes_before_the_ack_and_the_log_line_after_it(tmp_path):
    # One connection's thread (serve_client) on a real TCP connection: the journal row is
    # there when the ACK arrives, and the lines a person reads are logged only once the
    # replies are sent - each line, as it is logged, finds the replies already waiting at
    # the client (which reads them only after the lines). handle() called directly: at once.
    import select
    import socket
    from hftlab import order_manager

    said = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        served, _ = listener.accept()

    class Log:
        def info(self, line):
            waiting = client.fileno() != -1 and select.select([client], [], [], 0)[0]
            said.append((line, bool(waiting)))

        error = warning = info

    config = Config(journal=str(tmp_path / "orders.csv"), shm_name=book.new_name())
    manager = order_manager.OrderManager(config, Log())
    thread = threading.Thread(target=manager.serve_client, args=(served,))
    thread.start()
    try:
        client.sendall(protocol.encode(order("o1")) + protocol.encode(order("o2", qty=0)))
        wait_for(lambda: len(said) >= 3, what="the two order lines")
        with client.makefile("rb") as replies:
            ack, fill, reject = protocol.Decoder().feed(b"".join(replies.readline() for _ in range(3)))
        assert ack == protocol.Ack("o1", 1) and isinstance(reject, protocol.Reject)
        assert fill == protocol.Fill("o1", 1, "BUY", 10, "AAPL", 172.53, 0.17, 0)   # no book: at its own price
        assert [r["order_id"] for r in read_journal(config.journal)] == ["o1"]
        assert "connected" in said[0][0]
        # (Said at once, once: no book, so the band is off. Not a line about one order.)
        assert "booked without the price band" in said.pop(1)[0]
        filled = order_manager.Filled(172.53, 0.17)
        assert said[1:] == [(order_manager.booked_line(1, order("o1"), filled), True),
                            (order_manager.rejected_line("o2", net.address(*client.getsockname()[:2]),
                                                         "quantity must be positive; got 0"), True)]
        said.clear()
        assert manager.handle(order("o3"), order_manager.Session("127.0.0.1:1"), 1) == protocol.Ack("o3", 2)
        assert said == [(order_manager.booked_line(2, order("o3"), filled), False)]
    finally:
        client.close()
        thread.join(10)
        manager.close()
    assert not thread.is_alive() and "disconnected" in said[-2][0]
    assert said[-1][0].startswith("P&L of 'orders sent by hand': {'position': {'AAPL': 20}")   # at close
