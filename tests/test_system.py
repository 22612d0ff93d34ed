"""End to end: the four real processes trade, then stop and leave nothing behind."""

import re
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest

from conftest import Output, wait_for, with_sigint
from hftlab import book, order_manager, process
from hftlab.book import pid_alive
from hftlab.order_manager import read_journal


def segment_exists(name):
    try:
        book.SharedPriceBook.attach(name).close()
        return True
    except book.BookNotFound:
        return False


def test_the_system_trades_end_to_end_and_cleans_up(lab):
    config = lab.config
    # Prices reach the book, through the orderbook process.
    price_book = book.SharedPriceBook.attach(config.shm_name)
    try:
        quotes = wait_for(lambda: (q := price_book.quotes()) and all(q.values()) and q, 10,
                          "a price for every symbol")
        assert set(quotes) == set(config.symbols)
        assert all(q.price > 0 and q.seq > 0 and q.ts_ns <= q.written_ns for q in quotes.values())
        assert price_book.header()["feed_state"] == book.FEED_UP
    finally:
        price_book.close()
    # The strategy trades on them and the order manager books the orders.
    rows = wait_for(lambda: (r := read_journal(config.journal)) and len(r) >= 3 and r, 20, "three booked orders")
    assert [int(r["order_no"]) for r in rows] == list(range(1, len(rows) + 1))
    assert all(r["side"] in ("BUY", "SELL") and r["symbol"] in config.symbols for r in rows)
    wait_for(lambda: re.search(r"ACK [0-9a-z]+-1 is order 1", lab.log("strategy", 500)), 10,
             "the strategy to see its ACK")
    # The strategy writes its lines in batches, a moment after the orders (Strategy.say),
    # but always an order's line before its ACK's, and stamped with the time it was sent:
    # never later than the order manager's line about it, logged after its ACK.
    said = lab.log("strategy", 500)
    booked = wait_for(lambda: (b := booked_times(lab.log("order_manager", 500))) and b, 10,
                      "the order manager's lines")
    for order_id, order_no in re.findall(r"ACK (\S+) is order (\d+)", said):
        sent = re.search(rf"(\S+) strategy: (BUY|SELL) \d+ \S+ @ [0-9.]+ as {order_id}: short MA", said)
        assert sent and sent.start() < said.index(f"ACK {order_id} is order"), order_id
        if int(order_no) in booked:
            assert not_after(sent[1], booked[int(order_no)]), (order_id, sent[1], booked[int(order_no)])

    pids = {name: child.pid for name, child in lab.children.items()}
    lab.stop()
    # Each exited on SIGTERM by its clean path (status 0), and the owner removed the book.
    assert {n: s["returncode"] for n, s in lab.status().items()} == {n: 0 for n in pids}
    assert not any(pid_alive(p) for p in pids.values())
    assert not segment_exists(config.shm_name)


def booked_times(log: str) -> dict:
    """{order_no: "HH:MM:SS.mmm"} of the order manager's booked lines in `log`."""
    times = {}
    for line in log.splitlines():
        said = process.parse_log_line(line)
        answer = said and order_manager.parse_answer(said.text)
        if answer and answer.order_no is not None:
            times[answer.order_no] = said.time
    return times


def not_after(a: str, b: str) -> bool:
    """Log time a ("HH:MM:SS.mmm") is not after b, the two less than 12 hours apart
    (a line at 23:59:59.999 and one at 00:00:00.000 are in that order)."""
    def ms(t):
        h, m, rest = t.split(":")
        return round(((int(h) * 60 + int(m)) * 60 + float(rest)) * 1000)
    return (ms(b) - ms(a)) % 86_400_000 < 43_200_000


LAUNCH_AND_HANG = textwrap.dedent("""
    import sys, time
    from hftlab.config import Config, FAST
    from hftlab.launcher import Launcher
    lab = Launcher(Config(**FAST), free_ports=True).start()
    print(lab.run_dir, lab.config.shm_name, *[c.pid for c in lab.children.values()], flush=True)
    time.sleep(600)  # the test kills us long before this
""")


def test_children_do_not_outlive_a_killed_launcher():
    """A notebook kernel killed with SIGKILL: its processes and its book go too."""
    parent = subprocess.Popen([sys.executable, "-c", LAUNCH_AND_HANG], stdout=subprocess.PIPE, text=True)
    try:
        run_dir, name, *pids = parent.stdout.readline().split()
        pids = [int(p) for p in pids]
        assert len(pids) == 4 and all(pid_alive(p) for p in pids)
        assert segment_exists(name)
    finally:
        parent.kill()
        parent.wait()
    wait_for(lambda: not any(pid_alive(p) for p in pids), 10, "the orphaned children to exit")
    assert not segment_exists(name)
    shutil.rmtree(run_dir)  # its logs: the one thing a SIGKILLed launcher cannot remove


EVERYTHING = [
    ("orderbook     | ", "book: AAPL "),                       # prices
    ("news: sentiment ",),                                     # news
    ("strategy      | ", re.compile(r" as [0-9a-z]+-1: short MA ")),  # an order sent
    ("Received Order 1: ",),                                   # its confirmation at the broker
    (re.compile(r"ACK [0-9a-z]+-1 is order 1"),),            # and at the strategy
]


def shows_everything(text):
    return all(all(p.search(text) if isinstance(p, re.Pattern) else p in text for p in group)
               for group in EVERYTHING)


# However the suite is started, SIGINT reaches hftlab run at its default disposition or
# ignored (a background job of a shell script inherits it ignored): Ctrl-C stops it both ways.
@pytest.mark.parametrize("sigint", ["default", "inherited ignored"])
def test_hftlab_run_shows_prices_news_orders_confirmations_and_stops_on_ctrl_c(tmp_path, sigint):
    command = [sys.executable, "-m", "hftlab", "run", "--fast", "--free-ports", "--run-dir", str(tmp_path)]
    run = subprocess.Popen(with_sigint(sigint, command), stdout=subprocess.PIPE, text=True)
    out = Output(run)
    try:
        out.until(shows_everything, 30, "prices, news, an order and its confirmation")
        run.send_signal(signal.SIGINT)  # what Ctrl-C sends
        out.until(lambda text: "hftlab: stopped." in text, 20, "a clean stop")
        assert run.wait(15) == 0
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    for name in ("gateway", "order_manager", "orderbook", "strategy"):
        assert re.search(rf"^{name} +\| \S+ stopped$", out.text, re.M), name
    assert "Traceback" not in out.text
    assert len(read_journal(str(tmp_path / "orders.csv"))) >= 1


def test_hftlab_run_duration_stops_by_itself(tmp_path):
    out = subprocess.run([sys.executable, "-m", "hftlab", "run", "--fast", "--duration", "2",
                          "--free-ports", "--run-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "2 s are up; stopping." in out.stdout and "hftlab: stopped." in out.stdout
    for name in ("gateway", "order_manager", "orderbook", "strategy"):
        assert re.search(rf"^{name} +\| \S+ stopped$", out.stdout, re.M), name
    assert "Traceback" not in out.stdout + out.stderr
