"""The doorbell (hftlab.book.doorbell): a sleeping reader process is woken by a write, nobody
is rung when nobody sleeps, and a reader that died asleep never blocks or breaks the writer."""

import os
import select
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import wait_for
from hftlab import book
from hftlab.book.doorbell import Doorbell, bell_dir

DEADLINE = 30.0  # generous: the machine is shared with other test runs

# A reader process: attach, arm the bell, say so, then sleep on it for up to 120 s (far
# longer than the test waits) and say whether it was rung and what price it then read.
SLEEPER = textwrap.dedent("""
    import select, sys
    from hftlab import book
    from hftlab.book.doorbell import Doorbell
    prices = book.SharedPriceBook.attach(sys.argv[1])
    with Doorbell(sys.argv[1]) as bell:
        bell.arm(prices)
        print("asleep", flush=True)
        readable, _, _ = select.select([bell], [], [], 120)
        rung = bool(readable) and bell.drain() > 0
        quote = prices.read("AAPL")
        print("rung" if rung else "timeout", quote.price if quote else None, flush=True)
    prices.close()
""")


# A writer process: make the book, say so, then sleep (the test kills it).
WRITER = textwrap.dedent("""
    import sys, time
    from hftlab import book
    prices = book.SharedPriceBook(["AAPL"], sys.argv[1])
    print("made", flush=True)
    time.sleep(120)
""")


def start_sleeper(name):
    proc = subprocess.Popen([sys.executable, "-c", SLEEPER, name], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "asleep"
    return proc


def read_line(proc, deadline=DEADLINE) -> str:
    """The next line the process prints, waiting at most `deadline` seconds for it."""
    readable, _, _ = select.select([proc.stdout], [], [], deadline)
    assert readable, f"no line from the reader process within {deadline} s"
    return proc.stdout.readline().strip()


def test_a_book_removed_after_a_reader_died_asleep_leaves_no_bell_folder():
    # A reader killed in its sleep leaves its bell's path; the book's removal clears it
    # and the folder with it (a fault test's SIGKILL once left one folder a run behind).
    with book.SharedPriceBook(["AAPL"]) as prices:
        proc = start_sleeper(prices.name)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        assert len(os.listdir(bell_dir(prices.name))) == 1
    assert not os.path.exists(bell_dir(prices.name))


def test_a_stale_book_removed_after_its_writer_and_reader_died_leaves_no_bell_folder():
    # Both killed: no owner unlinks the book, and the reader's bell stays. Whoever removes the
    # stale book (hftlab clean, the launcher, a new owner) clears the bell and the folder.
    name = book.new_name()
    writer = subprocess.Popen([sys.executable, "-c", WRITER, name], stdout=subprocess.PIPE, text=True)
    try:
        assert read_line(writer) == "made"
        reader = start_sleeper(name)
        for proc in (reader, writer):
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            proc.stdout.close()
        assert len(os.listdir(bell_dir(name))) == 1
        assert book.remove_stale(name) == writer.pid
        assert not os.path.exists(bell_dir(name))
    finally:
        writer.kill()
        book.remove_stale(name)


def test_a_sleeping_reader_process_is_woken_by_a_write():
    with book.SharedPriceBook(["AAPL", "MSFT"]) as prices:
        proc = start_sleeper(prices.name)
        try:
            prices.update("AAPL", 172.5)           # update() rings; update_index() does not
            assert prices.rings == 1 and prices.ring() == 0
            assert read_line(proc) == "rung 172.5"
            assert proc.wait(DEADLINE) == 0
        finally:
            proc.kill()
            proc.wait()
        # its bell is gone with it, and the book's bell folder with its last bell
        assert not os.path.exists(bell_dir(prices.name))


def test_no_ring_when_nobody_sleeps():
    with book.SharedPriceBook(["AAPL"]) as prices:
        for cents in range(100):
            prices.update("AAPL", 100 + cents / 100)
            assert prices.ring() == 0
        assert prices.rings == 0
        with Doorbell(prices.name) as bell:
            assert prices.ring() == 0           # a bell exists, but its reader did not arm it
            bell.arm(prices)
            prices.update_index(0, 99.0, 500, 1)  # the hot path: the caller rings
            assert prices.ring() == 1           # armed: rung once ...
            assert prices.ring() == 0           # ... and the word is cleared: not twice
            assert bell.drain() == 1 and prices.rings == 1


def test_wait_looks_again_before_sleeping():
    """The lost wake-up: a change between the reader's last look and its arming is found by
    the look after arming, so wait() returns at once instead of sleeping to the timeout."""
    with book.SharedPriceBook(["AAPL"]) as prices, Doorbell(prices.name) as bell:
        seen = prices.header()["updates"]
        prices.update("AAPL", 10.0)     # lands before the reader arms: nobody is rung
        assert prices.rings == 0
        assert prices.ring() == 0
        start = time.monotonic()
        assert bell.wait(prices, lambda: prices.header()["updates"] != seen, timeout=120)
        assert time.monotonic() - start < DEADLINE


def test_a_reader_that_died_asleep_does_not_break_the_writer():
    with book.SharedPriceBook(["AAPL"]) as prices:
        proc = start_sleeper(prices.name)
        os.kill(proc.pid, signal.SIGKILL)      # dies asleep: its bell's path stays behind
        proc.wait()
        proc.stdout.close()
        assert len(os.listdir(bell_dir(prices.name))) == 1
        prices.set_sleeping()                   # as the dead reader had, for this write
        prices.update_index(0, 1.0, 1, 1)
        assert prices.ring() == 0               # refused, not rung, not raised
        assert os.listdir(bell_dir(prices.name)) == []   # and its entry cleared
        prices.update("AAPL", 2.0)
        assert prices.ring() == 0 and prices.read("AAPL").price == 2.0


def test_a_reader_that_never_drains_does_not_block_the_writer():
    with book.SharedPriceBook(["AAPL"]) as prices, Doorbell(prices.name) as bell:
        for i in range(5000):                  # far more than a socket buffer holds
            bell.arm(prices)
            prices.update_index(0, 1.0 + i / 1000, i + 1, 1)
            assert prices.ring() == 1
        assert 0 < bell.drain() <= 5000


def test_readers_without_a_doorbell_read_as_before():
    with book.SharedPriceBook(["AAPL"]) as prices:
        reader = book.SharedPriceBook.attach(prices.name)
        prices.update("AAPL", 3.0)
        assert reader.read("AAPL").price == 3.0 and prices.ring() == 0
        reader.close()


def test_a_bell_names_a_valid_book():
    with pytest.raises(ValueError, match="bad book name"):
        Doorbell("../etc")


def test_the_last_bell_to_close_takes_the_books_folder_with_it():
    # Every test and bench run has a book of its own name: its bell folder must not outlive it.
    name = book.new_name()
    first, second = Doorbell(name), Doorbell(name)
    first.close()
    assert os.listdir(bell_dir(name)) == [os.path.basename(second.path)]  # another still sleeps here
    second.close()
    assert not os.path.exists(bell_dir(name))
    with Doorbell(name) as again:              # and a new reader makes it again
        assert os.listdir(bell_dir(name)) == [os.path.basename(again.path)]
    assert not os.path.exists(bell_dir(name))


def test_a_lab_leaves_no_bell_folder_behind(lab):
    name = lab.config.shm_name
    wait_for(lambda: os.path.isdir(bell_dir(name)), 10, "the strategy's bell")
    lab.stop()
    assert not os.path.exists(bell_dir(name))
