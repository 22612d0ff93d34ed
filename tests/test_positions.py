"""Positions survive restarts, REJECTs back off, and configurations that cannot work are refused."""

import math
import re
import signal
import subprocess
import sys
import time
from collections import defaultdict

import pytest

from conftest import wait_for
from hftlab import book, children
from hftlab.config import FAST, Config
from hftlab.launcher import Launcher
from hftlab.order_manager import read_journal
from hftlab.strategy import REJECT_BACKOFF


def net_positions_over_time(rows):
    """For each (strategy, symbol), the booked position after each of its orders, in order."""
    position, path = defaultdict(int), defaultdict(list)
    for r in sorted(rows, key=lambda r: int(r["order_no"])):
        key = (r.get("strategy", ""), r["symbol"])
        position[key] += int(r["qty"]) * (1 if r["side"] == "BUY" else -1)
        path[key].append(position[key])
    return path


def own_log(child):
    """What this run of a child wrote to its log (the file collects every restart's)."""
    with open(child.log_path) as f:
        f.seek(child.log_start)
        return f.read()


def test_booked_exposure_stays_within_order_qty_across_restarts(lab):
    qty = lab.config.order_qty
    for restart in range(6):
        n = len(read_journal(lab.config.journal))
        wait_for(lambda: len(read_journal(lab.config.journal)) >= n + 2, 30, "the strategy to trade")
        lab.kill("strategy")                                  # SIGKILL: it forgets everything
        if restart % 2:
            lab.kill("order_manager")                         # and the order manager too
            lab.start_one("order_manager")
        child = lab.start_one("strategy")
        # Before trading a symbol, the new strategy learns its position from the journal.
        said = wait_for(lambda: (t := own_log(child)).count("the journal holds") >= len(lab.config.symbols)
                        and t, 20, "the restarted strategy to learn its positions")
        for symbol in lab.config.symbols:
            learnt = said.index(f"the journal holds {symbol} ")
            first_order = re.search(rf"(BUY|SELL) \d+ {symbol} @", said)
            assert first_order is None or first_order.start() > learnt
    n = len(read_journal(lab.config.journal))
    wait_for(lambda: len(read_journal(lab.config.journal)) >= n + 2, 30, "the last strategy to trade")
    lab.stop()
    rows = read_journal(lab.config.journal)
    assert {r["strategy"] for r in rows} == {"strategy"}      # the stable identity is journaled
    paths = net_positions_over_time(rows)
    worst = {key: max(map(abs, p)) for key, p in paths.items()}
    assert all(w <= qty for w in worst.values()), (worst, paths)


def test_a_rejecting_order_manager_gets_a_bounded_number_of_orders():
    # This order manager takes at most 4 a time; the strategy (order_qty 10) cannot trade.
    strict = Config(**FAST, order_qty=2, max_qty=4)
    with Launcher(strict, free_ports=True, names=["order_manager"]) as om:
        rest = Config(**FAST, price_port=0, news_port=0, order_port=om.config.order_port,
                      shm_name=book.new_name())
        with Launcher(rest, names=["gateway", "orderbook", "strategy"]) as lab:
            started = time.monotonic()
            wait_for(lambda: "REJECT" in lab.log("strategy", 100), 30, "the first REJECT")
            with book.SharedPriceBook.attach(lab.config.shm_name) as price_book:
                ticks = price_book.header()["updates"]
                # 40 more prices for every symbol: 40 chances each to send the order again.
                wait_for(lambda: price_book.header()["updates"] >= ticks + 40 * len(rest.symbols), 30,
                         "more prices")
            elapsed = time.monotonic() - started
            # Its REJECT line is logged just after the REJECT is sent.
            wait_for(lambda: "Rejected " in om.log("order_manager", 10_000), 10, "the REJECT's log line")
            rejects = om.log("order_manager", 10_000).count("Rejected ")
            said = lab.log("strategy", 10_000)
    # Backing off 0.5 s, 1 s, 2 s...: in t seconds each symbol is tried at most
    # 1 + log2(t / 0.5 + 1) times (at 0, 0.5, 1.5, 3.5... s).
    per_symbol = 1 + math.floor(math.log2(elapsed / REJECT_BACKOFF + 1))
    assert 1 <= rejects <= len(rest.symbols) * per_symbol, (rejects, elapsed)
    assert "above the maximum 4; no " in said and " orders for 0.5 s" in said


@pytest.mark.parametrize("flags, says", [
    (["--max-qty", "15"], "max_qty (15) must be at least twice order_qty (10)"),
    (["--order-qty", "600"], "max_qty (1000) must be at least twice order_qty (600)"),
    (["--price-port", "9100", "--news-port", "9100"], "price_port, news_port and order_port must differ"),
    (["--strategy-id", "a,b"], "strategy_id 'a,b' must be 1-32 of"),
    (["--symbols", ",".join(f"S{i}" for i in range(65))], "the book holds at most 64 symbols; got 65"),
])
def test_a_configuration_that_cannot_work_is_refused_at_start(flags, says, tmp_path):
    for name in ("strategy", "order_manager"):
        out = subprocess.run([sys.executable, "-m", f"hftlab.{name}", *flags, "--journal", str(tmp_path / "j.csv"),
                              "--shm-name", book.new_name()], capture_output=True, text=True, timeout=30)
        assert out.returncode == 2 and says in out.stderr and "Traceback" not in out.stderr


SENT = re.compile(r"(BUY|SELL) (\d+) AAPL @ [\d.]+ as (\S+):")
ANSWERED = re.compile(r"(?:ACK|REJECT) (\S+?):? ")


def test_every_connection_names_its_strategy_whatever_was_in_flight_when_the_order_manager_died():
    """One symbol, so that an order in flight leaves no other symbol to ask about. The order
    manager dies at each point of an order's life: no order out; an order sent but not read
    (it was stopped, then killed); and idle. Every journal row must carry the strategy's name,
    so that a restarted strategy learns the position it really holds."""
    config = Config(**FAST, symbols=("AAPL",))
    with Launcher(config, free_ports=True) as lab:
        journal = lab.config.journal
        strategy = lab.children["strategy"]

        def unanswered():
            """The orders the strategy sent and has no answer to in its log. With the order
            manager stopped, the last of them stays so (sent and never read, or read and
            journalled and never answered) until the order manager is killed; or its answer
            was already on its way, and then this round kills an order manager with nothing out."""
            said = own_log(strategy)
            answered = set(ANSWERED.findall(said))
            return [i for _, _, i in SENT.findall(said) if i not in answered][-1:]

        def booked(order_id):
            return any(r["order_id"] == order_id for r in read_journal(journal))

        # Trading first: stopped before it answered the strategy's POSQUERY, the order
        # manager would leave AAPL unknown to it, and no order would ever go out.
        wait_for(lambda: "the journal holds AAPL" in own_log(strategy), 20, "the strategy to learn its position")
        for point in ("not read", "nothing out", "not read", "idle"):
            n = len(read_journal(journal))
            if point == "not read":
                lab.children["order_manager"].popen.send_signal(signal.SIGSTOP)
                # Not "the next order sent": one sent just before the stop may be the last
                # the strategy sends for its one symbol until it is answered.
                try:
                    [order_id] = children.wait_for(unanswered, 30, "an order sent to the stopped OM")
                except TimeoutError as exc:
                    pytest.fail(f"{exc}; the strategy said:\n{own_log(strategy)[-4000:]}")
                lab.kill("order_manager")                 # SIGKILL: the order was never read
                lab.start_one("order_manager")
                wait_for(lambda: booked(order_id), 30, f"the re-sent {order_id} to be booked")
            elif point == "nothing out":
                lab.kill("order_manager")
                wait_for(lambda: "but the order manager is not connected" in lab.log("strategy", 50),
                         30, "a decision while the order manager is down")
                lab.start_one("order_manager")
            else:
                lab.kill("order_manager")
                lab.start_one("order_manager")
            wait_for(lambda: len(read_journal(journal)) >= n + 1, 30, f"an order booked after '{point}'")
            rows = read_journal(journal)
            assert [r for r in rows if r["strategy"] != "strategy"] == [], (point, rows)
        lab.kill("strategy")                              # it forgets; the journal must not
        child = lab.start_one("strategy")
        held = sum(int(r["qty"]) * (1 if r["side"] == "BUY" else -1) for r in read_journal(journal))
        said = wait_for(lambda: re.search(r"the journal holds AAPL (\w+)(?: (\d+))? for", own_log(child)),
                        20, "the restarted strategy's position")
    learnt = 0 if said.group(1) == "flat" else int(said.group(2)) * (1 if said.group(1) == "long" else -1)
    assert learnt == held
