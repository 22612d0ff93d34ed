"""Faults: kill any one process with SIGKILL while the others run, start it again, and
check that the others carried on by themselves and nothing was lost or booked twice."""

import contextlib
import queue
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import Output, wait_for
from hftlab import book
from hftlab.order_manager import read_journal

MAKE_SEGMENT = Path(__file__).parent / "book_procs" / "make_segment.py"


def journal_grows(lab, beyond, timeout=20):
    return wait_for(lambda: len(r := read_journal(lab.config.journal)) > beyond and r, timeout,
                    f"more than {beyond} booked orders")


def others(lab, name):
    return {n: c.pid for n, c in lab.children.items() if n != name}


def assert_untouched(lab, before):
    """The processes that were not killed are the very same processes, still running."""
    now = {n: c.pid for n, c in lab.children.items() if n in before}
    assert now == before and all(lab.children[n].running() for n in before)


def test_gateway_killed_book_goes_stale_then_recovers(lab):
    journal_grows(lab, 0)
    untouched = others(lab, "gateway")
    price_book = book.SharedPriceBook.attach(lab.config.shm_name)
    try:
        session = price_book.header()["session"]
        lab.kill("gateway")
        assert lab.dead()[0][:2] == ("gateway", -9)        # the launcher can say who died
        wait_for(lambda: price_book.header()["feed_state"] == book.FEED_DOWN, 10, "the book to be marked stale")
        wait_for(lambda: "lost the news feed" in lab.log("strategy", 200), 10, "the strategy to notice")
        updates = price_book.header()["updates"]

        lab.start_one("gateway")
        wait_for(lambda: price_book.header()["feed_state"] == book.FEED_UP, 10, "the feed to come back")
        wait_for(lambda: price_book.header()["updates"] > updates + 20, 10, "new prices in the book")
        header = price_book.header()
        assert header["session"] != session                  # a new gateway session...
        assert header["gaps"] == 0                           # ...is not a gap
        assert "new gateway session" in lab.log("orderbook", 200)
        wait_for(lambda: lab.log("strategy", 500).count("connected to the news feed") == 2, 10,
                 "the strategy to reconnect to the news")
    finally:
        price_book.close()
    n = len(read_journal(lab.config.journal))
    journal_grows(lab, n)                                    # and it still trades
    assert_untouched(lab, untouched)


def test_orderbook_killed_strategy_waits_and_resumes_on_the_new_book(lab):
    journal_grows(lab, 0)
    untouched = others(lab, "orderbook")
    lab.kill("orderbook")
    wait_for(lambda: "the book's writer is gone" in lab.log("strategy", 200), 10,
             "the strategy to notice the dead writer")
    n = len(read_journal(lab.config.journal))
    lab.start_one("orderbook")
    wait_for(lambda: lab.log("strategy", 500).count("attached to the book") == 2, 10,
             "the strategy to attach to the new book")
    assert "removed a stale book" in lab.log("orderbook", 50)   # the new owner took over
    journal_grows(lab, n)
    assert_untouched(lab, untouched)
    assert lab.log("strategy", 500).count("ready:") == 1    # the same strategy, history and all


def test_strategy_killed_a_new_one_attaches_and_trades(lab):
    journal_grows(lab, 0)
    untouched = others(lab, "strategy")
    lab.kill("strategy")
    wait_for(lambda: "disconnected" in lab.log("order_manager", 200), 10, "the order manager to see it go")
    with book.SharedPriceBook.attach(lab.config.shm_name) as price_book:
        assert price_book.writer_alive() and all(price_book.quotes().values())   # the book did not notice
    lab.start_one("strategy")
    later = journal_grows(lab, len(read_journal(lab.config.journal)))
    tags = {row["order_id"].split("-")[0] for row in later}
    assert len(tags) == 2                                    # orders from the old and the new strategy
    assert_untouched(lab, untouched)


def test_order_manager_killed_midstream_journal_and_strategy_agree(lab):
    journal_grows(lab, 2)
    untouched = others(lab, "order_manager")
    lab.kill("order_manager")
    wait_for(lambda: "lost the order manager" in lab.log("strategy", 300), 10, "the strategy to notice")
    n = len(read_journal(lab.config.journal))
    lab.start_one("order_manager")
    journal_grows(lab, n + 3)
    assert_untouched(lab, untouched)
    lab.stop()  # the strategy first: no more orders while we compare

    journal = read_journal(lab.config.journal)
    numbers = [int(r["order_no"]) for r in journal]
    assert numbers == list(range(1, len(journal) + 1))       # numbering continued after the crash
    ids = [r["order_id"] for r in journal]
    assert len(ids) == len(set(ids))                         # nothing booked twice
    by_no = {int(r["order_no"]): r["order_id"] for r in journal}
    acks = re.findall(r"ACK (\S+) is order (\d+)", lab_log_text(lab))
    assert acks and all(by_no[int(no)] == oid for oid, no in acks)   # every ACK is in the journal


def lab_log_text(lab):
    return Path(lab.children["strategy"].log_path).read_text()


def test_a_dead_child_is_reported_with_its_status_and_log(lab):
    lab.kill("strategy")
    ((name, code, tail),) = lab.dead()
    assert (name, code) == ("strategy", -9)
    assert "ready:" in tail or "ACK" in tail or "BUY" in tail or "SELL" in tail


def test_hftlab_clean_removes_a_stale_book_and_says_so():
    name = book.new_name()
    made = subprocess.run([sys.executable, str(MAKE_SEGMENT), name, "stale"], capture_output=True,
                          text=True, timeout=30)
    assert made.stdout.strip() == "made"
    try:
        out = subprocess.run([sys.executable, "-m", "hftlab", "clean", "--shm-name", name],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0
        assert re.search(rf"removed shared-memory segment '{name}' \(left by dead process \d+\)", out.stdout)
        with pytest.raises(book.BookNotFound):
            book.SharedPriceBook.attach(name)
    finally:
        book.remove_stale(name)
    again = subprocess.run([sys.executable, "-m", "hftlab", "clean", "--shm-name", name],
                           capture_output=True, text=True, timeout=30)
    assert "nothing to clean" in again.stdout


@pytest.mark.parametrize("before", ["nothing", "a stale book"])
def test_cleaning_raced_against_an_orderbook_creating_its_book_never_removes_the_live_book(before):
    """`hftlab clean` (remove_stale, called as fast as it goes) while an orderbook creates its
    book, or takes over a stale one: the orderbook's live book survives every time."""
    for attempt in range(15):  # the unfixed race lost the live book in about 1 of 4 starts
        name = book.new_name()
        if before == "a stale book":
            subprocess.run([sys.executable, str(MAKE_SEGMENT), name, "stale"], check=True, timeout=30,
                           capture_output=True)
        orderbook = subprocess.Popen([sys.executable, "-m", "hftlab.orderbook", "--shm-name", name,
                                      "--price-port", "1"],   # no gateway: it creates the book and waits
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out = Output(orderbook)
        removed = []
        try:
            # Clean as fast as it goes until the orderbook says it is ready (its book complete).
            deadline = time.monotonic() + 30
            while "ready:" not in out.text:
                removed.append(book.remove_stale(name))
                with contextlib.suppress(queue.Empty):
                    out.text += out.lines.get_nowait() or ""
                assert orderbook.poll() is None and time.monotonic() < deadline, out.text
            with book.SharedPriceBook.attach(name) as price_book:           # its book is there...
                assert price_book.header()["writer_pid"] == orderbook.pid      # ...and it is its own
            assert orderbook.pid not in removed
            assert book.remove_stale(name) is None                    # and clean leaves it alone
        finally:
            orderbook.terminate()
            orderbook.wait(30)
            book.remove_stale(name)
        assert orderbook.returncode == 0, (attempt, out.text)
