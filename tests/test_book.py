"""Tests for hftlab.book: the shared-memory price book.

Every test works on its own segment name and removes what it created, even
on failure.  Processes are real OS processes (subprocess + sys.executable,
scripts in tests/book_procs/), since the point is what independent processes
see; they are synchronised on lines they print, with deadlines, never on
sleeps.
"""

import contextlib
import json
import math
import mmap
import os
import queue
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hftlab import book
from hftlab.book import (
    FEED_DOWN, FEED_UP, HEADER_DTYPE, RECORD_DTYPE, BookError, BookInUse,
    BookNotFound, LayoutMismatch, Quote, SharedPriceBook, layout_nbytes,
    new_name, remove_stale,
)

PROCS = Path(__file__).parent / "book_procs"
SYMBOLS = ["AAPL", "MSFT", "GOOG"]
TIMEOUT = 10.0


def exists(name):
    try:
        shm = book.open_untracked(name)
    except FileNotFoundError:
        return False
    shm.close()
    return True


def make_segment(name, kind):
    """Leave a segment `name` behind in another process: a dead writer's book ("stale")
    or something that is not a book ("badmagic")."""
    made = subprocess.run([sys.executable, str(PROCS / "make_segment.py"), name, kind],
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert made.returncode == 0 and made.stdout.strip() == "made", made.stderr


def wait_until(cond, timeout=TIMEOUT, what="condition"):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


class Child:
    """A helper script in its own interpreter, talked to by lines."""

    def __init__(self, script, *args):
        self.proc = subprocess.Popen(
            [sys.executable, str(PROCS / script), *map(str, args)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        self.lines = queue.Queue()
        self.stderr = []
        threading.Thread(target=self._pump_stdout, daemon=True).start()
        threading.Thread(target=self._pump_stderr, daemon=True).start()

    def _pump_stdout(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)                    # end of output

    def _pump_stderr(self):
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip("\n"))

    def expect(self, prefix, timeout=TIMEOUT):
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            line = "<timeout>"
        if line is None or not line.startswith(prefix):
            if line is None:                    # exited: let stderr drain
                self.proc.wait(timeout=TIMEOUT)
            raise AssertionError(
                f"expected {prefix!r} from {self.proc.args[1]}, got {line!r}"
                f"; stderr:\n" + "\n".join(self.stderr))
        return line

    def send(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def finish(self, timeout=TIMEOUT):
        """Close stdin and wait for a clean exit."""
        if not self.proc.stdin.closed:
            self.proc.stdin.close()
        rc = self.proc.wait(timeout=timeout)
        assert rc == 0, f"{self.proc.args[1]} exited {rc}:\n" + \
            "\n".join(self.stderr)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@pytest.fixture
def name():
    """A fresh segment name; whatever is left under it is removed after."""
    n = new_name()
    yield n
    try:
        shm = book.open_untracked(n)
    except FileNotFoundError:
        return
    try:
        book.unlink_untracked(shm)
    finally:
        shm.close()


@pytest.fixture
def spawn(name):
    """Start helper processes; kill any still running before `name` is
    cleaned up (this fixture depends on it, so it is torn down first)."""
    children = []

    def start(script, *args):
        child = Child(script, *args)
        children.append(child)
        return child

    yield start
    for child in children:
        child.kill()


def run_reader(name):
    out = subprocess.run([sys.executable, str(PROCS / "reader.py"), name],
                         capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr
    assert out.stderr == "", out.stderr      # no tracker leak warnings
    return json.loads(out.stdout)


# -- one process -------------------------------------------------------------

def test_create_update_read(name):
    with SharedPriceBook(SYMBOLS, name) as price_book:
        assert price_book.owner and price_book.name == name
        assert price_book.symbols == tuple(SYMBOLS)
        assert price_book.took_over_from is None
        assert "owner" in repr(price_book) and name in repr(price_book)

        # "no price yet" is None
        assert price_book.read("AAPL") is None
        before = time.time_ns()
        price_book.update("AAPL", 0.25, seq=7, ts_ns=123)
        after = time.time_ns()
        q = price_book.read("AAPL")
        assert q == Quote("AAPL", 0.25, 7, 123, q.written_ns, 1)
        assert before <= q.written_ns <= after

        price_book.update("MSFT", 101.25)                  # seq defaults to 8
        price_book.update("AAPL", 1.5)                     # 9
        assert price_book.read("MSFT").seq == 8
        assert price_book.read("AAPL")[1:3] == (1.5, 9)
        assert price_book.read("AAPL").updates == 2
        assert price_book.read("GOOG") is None
        assert math.isnan(price_book.snapshot()["price"][2])

        h = price_book.header()
        assert h["magic"] == "HFTBOOK1" and h["layout_version"] == 2
        assert h["n_symbols"] == 3
        assert h["record_size"] == RECORD_DTYPE.itemsize == 56
        assert h["header_size"] == HEADER_DTYPE.itemsize == 104
        assert h["writer_pid"] == os.getpid()
        assert h["last_seq"] == 9 and h["updates"] == 3 and h["gaps"] == 0 and h["sleepers"] == 0
        assert h["feed_state"] == 0 and h["session"] == ""

        price_book.set_feed_state(FEED_UP, "sess-1")
        price_book.add_gaps(2)
        price_book.add_gaps(1)
        price_book.heartbeat(555)
        h = price_book.header()
        assert (h["feed_state"], h["session"], h["gaps"],
                h["heartbeat_ns"]) == (FEED_UP, "sess-1", 3, 555)
        price_book.set_feed_state(FEED_DOWN)
        assert price_book.header()["session"] == "sess-1"   # kept
        assert price_book.writer_alive()

        qs = price_book.quotes()
        assert list(qs) == SYMBOLS and qs["GOOG"] is None
        assert qs["MSFT"].price == 101.25

        assert price_book.nbytes == layout_nbytes(3) == 104 + 3 * 56
        assert price_book.mapped_bytes % mmap.PAGESIZE == 0
        assert price_book.mapped_bytes >= price_book.nbytes

        if os.path.isdir("/dev/shm"):                 # Linux: check the mode
            mode = os.stat(f"/dev/shm/{name}").st_mode & 0o777
            assert mode & 0o077 == 0, oct(mode)       # 0600 less umask

        with pytest.raises(KeyError, match="AAPL, MSFT, GOOG"):
            price_book.read("TSLA")
        with pytest.raises(ValueError):
            price_book.update("AAPL", 1.0, seq=0)
    assert not exists(name)
    price_book.close()                                      # idempotent
    price_book.unlink()


def test_write_ticks_writes_what_update_index_writes_tick_by_tick(name):
    ticks = [(i % 3, 100.0 + k, k + 1, 1000 + k) for k, i in enumerate([0, 1, 0, 2, 2, 2, 0, 1])]
    with SharedPriceBook(SYMBOLS, name) as batch, SharedPriceBook(SYMBOLS, new_name()) as one_by_one:
        for i, price, seq, ts_ns in ticks:
            one_by_one.update_index(i, price, seq, ts_ns)
        before = time.time_ns()
        batch.write_ticks(*map(list, zip(*ticks)))
        after = time.time_ns()
        batch.write_ticks([], [], [], [])                    # nothing to write, nothing written
        got, want = batch.snapshot(), one_by_one.snapshot()
        for field in ("version", "symbol", "price", "seq", "ts_ns", "updates"):
            assert got[field].tolist() == want[field].tolist(), field
        assert got["updates"].tolist() == [3, 2, 3]           # each record counts its own ticks
        assert all(before <= w <= after for w in got["written_ns"].tolist())
        assert [(h["updates"], h["last_seq"]) for h in (batch.header(), one_by_one.header())] == [(8, 8)] * 2
        batch.update_index(1, 5.0, 9, 9)                       # the two paths keep one count
        assert batch.read("MSFT").updates == 3 and batch.header()["updates"] == 9
        with pytest.raises(ValueError, match="equal length"):
            batch.write_ticks([0, 1], [1.0], [10], [10])
        assert batch.header()["updates"] == 9


def test_write_ticks_stopped_by_a_bad_value_leaves_every_record_closed_and_counted(name):
    with SharedPriceBook(SYMBOLS, name) as price_book:
        with pytest.raises(struct.error):
            price_book.write_ticks([0, 1, 2, 0], [1.0, 2.0, "3", 4.0], [1, 2, 3, 4], [1, 1, 1, 1])
        # the two ticks before the bad one are written and counted; no version is left odd
        assert price_book.snapshot(wait=False)["version"].tolist() == [2, 2, 0]
        assert (price_book.header()["updates"], price_book.header()["last_seq"]) == (2, 2)
        assert price_book.read("MSFT")[1:3] == (2.0, 2) and price_book.read("GOOG") is None


def test_bad_arguments(name):
    for bad in ([], ["A"] * 2, ["TOOLONGSYM"], ["ÄPFEL"], [""], "AAPL",
                [f"S{i}" for i in range(65)]):
        with pytest.raises(ValueError):
            SharedPriceBook(bad, name)
    with pytest.raises(ValueError):
        SharedPriceBook(["A"], "x" * 31)
    assert not exists(name)
    assert len(new_name()) <= 30 and new_name() != new_name()


def test_reader_in_same_process_cannot_write(name):
    with SharedPriceBook(SYMBOLS, name) as owner:
        owner.update("GOOG", 10.0)
        reader = SharedPriceBook.attach(name, SYMBOLS)
        try:
            assert not reader.owner and "reader" in repr(reader)
            assert reader.read("GOOG").price == 10.0
            for write in (lambda: reader.update("GOOG", 1.0),
                          lambda: reader.update_index(0, 1.0, 1, 1),
                          lambda: reader.write_ticks([0], [1.0], [1], [1]),
                          lambda: reader.set_feed_state(FEED_UP),
                          lambda: reader.add_gaps(1),
                          lambda: reader.heartbeat(),
                          reader.unlink):
                with pytest.raises(BookError, match="read-only"):
                    write()
            owner.update("GOOG", 11.0)
            assert reader.read("GOOG").price == 11.0
        finally:
            reader.close()
        reader.close()
        with pytest.raises(BookError, match="closed"):
            reader.read("GOOG")
        assert owner.read("GOOG").price == 11.0      # closing a reader is
    assert not exists(name)                          # harmless to the book


def test_attach_errors(name):
    with pytest.raises(BookNotFound, match="is the orderbook running"):
        SharedPriceBook.attach(name)

    from multiprocessing.shared_memory import SharedMemory
    junk = SharedMemory(name, create=True, size=4096)
    try:
        junk.buf[:8] = b"NOTABOOK"
        with pytest.raises(LayoutMismatch, match="not a price book"):
            SharedPriceBook.attach(name)
        junk.buf[:8] = b"HFTBOOK1"                   # magic ok, rest zero
        with pytest.raises(LayoutMismatch, match="layout_version"):
            SharedPriceBook.attach(name)
    finally:
        junk.close()
        junk.unlink()

    with SharedPriceBook(SYMBOLS, name):
        with pytest.raises(LayoutMismatch, match="expected"):
            SharedPriceBook.attach(name, ["AAPL", "MSFT"])


@pytest.mark.parametrize("bad", [0.0, -5.0, -0.0, math.nan, math.inf, -math.inf])
def test_a_price_that_is_not_a_finite_number_above_zero_reads_as_no_price(name, bad):
    with SharedPriceBook(SYMBOLS, name) as price_book:
        price_book.update("MSFT", 101.25)
        with pytest.raises(ValueError, match="finite number above 0"):
            price_book.update("AAPL", bad)              # refused by the careful path ...
        price_book.update_index(0, bad, 2, 1)           # ... written by the hot one, as a learner's may
        reader = SharedPriceBook.attach(name)
        try:
            for b in (price_book, reader):
                assert b.read("AAPL") is None
                assert b.quotes()["AAPL"] is None and b.quotes()["MSFT"].price == 101.25
                snap = b.snapshot()
                assert math.isnan(snap["price"][0]) and snap["seq"][0] == 2
                assert snap["price"][1] == 101.25
        finally:
            reader.close()


def test_a_record_held_in_mid_write_makes_a_non_waiting_read_say_busy_at_once(name):
    with SharedPriceBook(SYMBOLS, name) as price_book:
        price_book.update("AAPL", 1.0)
        price_book.update("MSFT", 2.0)
        w = HEADER_DTYPE.itemsize // 8
        price_book._u64[w] += 1                             # odd: this (live) writer is in mid-write
        reader = SharedPriceBook.attach(name)
        try:
            for read in (lambda: reader.read("AAPL", wait=False),
                         lambda: reader.snapshot(wait=False), lambda: reader.quotes(wait=False)):
                with pytest.raises(book.BookBusy, match="stopped or stalled in mid-write") as e:
                    read()
                assert e.value.writer_alive
            assert reader.retries == 3 * book.seqlock._SPIN     # spun a little, never slept long
            assert reader.read("MSFT", wait=False).price == 2.0
            price_book._u64[w] += 1                         # even: the write is done
            assert reader.read("AAPL", wait=False).price == 1.0
        finally:
            reader.close()


def test_dead_writer_in_mid_write_does_not_hang_readers(name, monkeypatch):
    monkeypatch.setattr(book.seqlock, "MAX_RETRIES", 500)
    with SharedPriceBook(SYMBOLS, name) as price_book:
        price_book.update("AAPL", 1.0)
        # what a writer killed between its two version stores leaves behind
        price_book._u64[HEADER_DTYPE.itemsize // 8] = 3
        reader = SharedPriceBook.attach(name)
        try:
            with pytest.raises(BookError, match="mid-write"):
                reader.read("AAPL")
            with pytest.raises(BookError, match="mid-write"):
                reader.snapshot()
            assert reader.retries == 1000
            assert reader.read("MSFT") is None       # other records are fine
        finally:
            reader.close()


# -- several processes -------------------------------------------------------

def test_attach_from_another_process(name, spawn):
    with SharedPriceBook(SYMBOLS, name) as price_book:
        price_book.update("AAPL", 187.5, seq=41, ts_ns=99)
        price_book.set_feed_state(FEED_UP, "abc")
        seen = run_reader(name)
        assert seen["owner"] is False
        assert seen["quotes"]["AAPL"]["price"] == 187.5
        assert seen["quotes"]["AAPL"]["seq"] == 41
        assert seen["quotes"]["AAPL"]["ts_ns"] == 99
        assert seen["quotes"]["MSFT"] is None
        assert seen["header"]["writer_pid"] == os.getpid()
        assert seen["header"]["session"] == "abc"
    assert not exists(name)

    # and the other way round: a child writes, this process reads
    child = spawn("owner.py", name, *SYMBOLS)
    child.expect("ready")
    reader = SharedPriceBook.attach(name, SYMBOLS)
    try:
        assert reader.read("MSFT") is None
        child.send("update MSFT 412.25")
        child.expect("ok 1")
        assert reader.read("MSFT").price == 412.25
        assert reader.header()["writer_pid"] == child.proc.pid
        assert reader.writer_alive()
    finally:
        reader.close()
    child.send("exit")
    child.finish()
    assert not exists(name)                          # the owner unlinked it


def test_tracker_trap_is_real(name, spawn):
    """Control for the next test: a plain SharedMemory(name) attach in a
    process that then exits destroys the segment (cpython issue 82300)."""
    from multiprocessing.shared_memory import SharedMemory
    victim = SharedMemory(name, create=True, size=64)
    try:
        subprocess.run([sys.executable, str(PROCS / "raw_attach.py"), name],
                       capture_output=True, timeout=TIMEOUT, check=True)
        if exists(name):
            pytest.skip("this Python's SharedMemory no longer tracks attaches")
    finally:
        victim.close()
        try:
            victim.unlink()
        except FileNotFoundError:   # the child's tracker removed it; ours
            from multiprocessing import resource_tracker   # must forget it
            resource_tracker.unregister(victim._name, "shared_memory")


def test_readers_that_exit_leave_the_book_intact(name):
    with SharedPriceBook(SYMBOLS, name) as price_book:
        price_book.update("GOOG", 170.0)
        for i in range(3):
            seen = run_reader(name)       # attaches, reads, exits
            assert seen["quotes"]["GOOG"]["price"] == 170.0 + i
            assert exists(name)
            again = SharedPriceBook.attach(name)
            try:
                assert again.read("GOOG").price == 170.0 + i
            finally:
                again.close()
            price_book.update("GOOG", 171.0 + i)
    assert not exists(name)


def test_torn_reads_under_stress(name, spawn):
    writer = spawn("stress_writer.py", name, 1.5, 5_000_000)
    writer.expect("ready")
    reader = spawn("stress_reader.py", name, 8.0)
    reader.expect("ready")
    writer.send("go")
    done = writer.expect("done")
    stats = json.loads(reader.expect("{"))
    writer.send("exit")
    writer.finish()
    reader.finish()
    stats["writer_done"] = int(done.split()[1])
    print("\nstress:", json.dumps(stats))
    print(f"seqlock retries: {stats['retries']}; negative control, raw "
          f"copies without the seqlock: {stats['torn_raw']} torn records "
          f"in {stats['raw_copies']} copies")
    assert stats["writer_updates"] == stats["writer_done"]
    assert stats["torn_read"] == 0
    assert stats["torn_snapshot"] == 0
    assert stats["snapshot_not_coherent"] == 0
    assert stats["went_backwards"] == 0
    assert stats["version_went_backwards"] == 0
    assert stats["distinct_seen"] > 1000
    assert not exists(name)


def test_book_in_use(name, spawn):
    child = spawn("owner.py", name, *SYMBOLS)
    pid = int(child.expect("ready").split()[1])
    with pytest.raises(BookInUse, match=f"running process {pid}"):
        SharedPriceBook(SYMBOLS, name)
    assert remove_stale(name) is None                 # never a live book
    reader = SharedPriceBook.attach(name)
    try:
        assert reader.writer_alive()
    finally:
        reader.close()
    child.send("exit")
    child.finish()
    assert not exists(name)


def test_sigkilled_owner_leaves_its_book_to_the_next_owner(name, spawn):
    child = spawn("owner.py", name, *SYMBOLS)
    child.expect("ready")
    dead = child.proc.pid
    os.kill(dead, signal.SIGKILL)
    child.proc.wait(timeout=TIMEOUT)
    # No resource tracker removes it by name behind a new owner's back: it
    # stays until the next owner takes it over (or remove_stale removes it).
    assert exists(name)
    with SharedPriceBook(SYMBOLS, name) as price_book:
        assert price_book.took_over_from == dead
        price_book.update("AAPL", 1.0)
        with SharedPriceBook.attach(name) as reader:
            assert reader.read("AAPL").price == 1.0
    assert not exists(name)


def test_take_over_a_dead_writers_book(name):
    make_segment(name, "stale")
    old = SharedPriceBook.attach(name)
    try:
        dead = old.header()["writer_pid"]
        assert old.read("AAA").price == 42.0
        assert not old.writer_alive()
    finally:
        old.close()
    with SharedPriceBook(SYMBOLS, name) as price_book:
        assert price_book.took_over_from == dead
        assert price_book.read("AAPL") is None
        assert price_book.header()["writer_pid"] == os.getpid()
    assert not exists(name)


def test_take_over_a_segment_that_is_not_a_book(name):
    make_segment(name, "badmagic")
    with SharedPriceBook(SYMBOLS, name) as price_book:
        assert price_book.took_over_from == 0
        reader = SharedPriceBook.attach(name, SYMBOLS)    # a book now
        reader.close()
    assert not exists(name)


def test_remove_stale(name):
    assert remove_stale(name) is None                 # nothing there
    for kind, expect_dead_pid in (("stale", True), ("badmagic", False)):
        make_segment(name, kind)
        assert exists(name)
        removed = remove_stale(name)
        assert (removed > 0) if expect_dead_pid else (removed == 0)
        assert not exists(name)
    with SharedPriceBook(SYMBOLS, name):
        assert remove_stale(name) is None             # our own, alive
        assert exists(name)
    assert not exists(name)


def test_follower_waits_out_a_dead_writers_book_and_takes_the_next(name):
    make_segment(name, "stale")
    follower = book.Follower(name, interval=0)
    try:
        assert follower.look() is None          # there, but its writer is dead: not attached
        assert follower.attaches == 0
        with SharedPriceBook(SYMBOLS, name) as price_book:   # a new orderbook takes the name over
            price_book.update("AAPL", 3.0)
            assert follower.look().read("AAPL").price == 3.0
            assert follower.attaches == 1
            follower.lost()                    # a failed read: look again at once
            assert follower.look().read("AAPL").price == 3.0
            assert follower.attaches == 2
    finally:
        follower.close()


def test_an_empty_segment_is_not_a_book_and_is_cleaned_once_old(name, monkeypatch):
    fd = book.shm_open(name, os.O_CREAT | os.O_EXCL | os.O_RDWR)
    os.close(fd)                               # a creator that died before sizing it
    try:
        with pytest.raises(book.BookEmpty):
            SharedPriceBook.attach(name)
        assert remove_stale(name) is None      # it may be a creator's, about to size it
        assert exists_at_all(name)
        monkeypatch.setattr(book.stale, "CREATION_GRACE", 0.0)   # as if it were that old
        assert remove_stale(name) == 0
        assert not exists_at_all(name)
    finally:
        with contextlib.suppress(FileNotFoundError):
            book.shm_unlink(name)


def exists_at_all(name):
    """Is there a segment of that name, even an empty one?"""
    try:
        os.close(book.shm_open(name, os.O_RDONLY))
    except FileNotFoundError:
        return False
    return True


# -- the follower's read path: what every long-lived reader uses ------------------------

def test_follower_reads_answer_none_without_a_book(name):
    follower = book.Follower(name, interval=0)
    try:
        assert follower.latest("AAPL") is None
        assert follower.snapshot() is None and follower.quotes() is None
        assert follower.header() is None and follower.new_quotes() == []
    finally:
        follower.close()


def test_follower_new_quotes_learns_first_then_gives_what_changed_and_what_was_missed(name):
    follower = book.Follower(name, SYMBOLS, interval=0)
    try:
        with SharedPriceBook(SYMBOLS, name) as price_book:
            price_book.update("AAPL", 1.0)
            assert follower.new_quotes() == []            # the first look only learns
            assert follower.new_quotes() == []            # nothing new since
            for price in (2.0, 3.0, 4.0):
                price_book.update("AAPL", price)
            price_book.update("MSFT", 5.0)
            got = {q.symbol: (q.price, q.updates, missed) for q, missed in follower.new_quotes()}
            assert got == {"AAPL": (4.0, 4, 2), "MSFT": (5.0, 1, 0)}
            price_book.update_index(price_book.index("GOOG"), float("nan"), 99, 1)  # not usable: left out
            assert follower.new_quotes() == []
            assert follower.latest("AAPL").price == 4.0
            assert follower.latest("IBM") is None            # not in this book
            assert follower.quotes()["MSFT"].price == 5.0
            assert follower.header()["updates"] == 6
            price_book._i64[book.field_offset(HEADER_DTYPE, "writer_pid") // 8] = 2**62  # "dies"
        with SharedPriceBook(SYMBOLS, name) as price_book:      # a restarted orderbook's book
            price_book.update("AAPL", 9.0)
            assert follower.new_quotes() == []            # a new book: learn it again
            price_book.update("AAPL", 10.0)
            ((quote, missed),) = follower.new_quotes()
            assert (quote.price, missed) == (10.0, 0) and follower.attaches == 2
    finally:
        follower.close()


def test_follower_raises_busy_for_a_live_writer_and_drops_a_dead_writers_book(name):
    follower = book.Follower(name, SYMBOLS, interval=3600)   # looks again only when told
    try:
        with SharedPriceBook(SYMBOLS, name) as price_book:
            price_book.update("AAPL", 1.0)
            assert follower.latest("AAPL").price == 1.0
            w = HEADER_DTYPE.itemsize // 8                       # AAPL's version word
            price_book._u64[w] += 1                                    # odd: stuck in mid-write
            with pytest.raises(book.BookBusy) as busy:
                follower.latest("AAPL")
            assert busy.value.writer_alive
            with pytest.raises(book.BookBusy):
                follower.new_quotes()
            assert follower.current is not None                  # a live writer's: kept
            # the writer "dies" in mid-write: a pid that is no process
            price_book._i64[book.field_offset(HEADER_DTYPE, "writer_pid") // 8] = 2**62
            assert follower.latest("AAPL") is None                 # dropped, not raised
            assert follower.current is None
            price_book._i64[book.field_offset(HEADER_DTYPE, "writer_pid") // 8] = os.getpid()
            price_book._u64[w] += 1
    finally:
        follower.close()


# -- one symbol rule ---------------------------------------------------------------------

@pytest.mark.parametrize("symbol, ok", [
    ("AAPL", True), ("BRK.B", True), ("A", True), ("ABCDEFGH", True), ("X1", True),
    ("aapl", False), ("1AB", False), ("ABCDEFGHI", False), ("A-B", False), ("", False),
    ("A B", False), ("ÄPL", False), (".A", False)])
def test_config_book_and_wire_share_one_symbol_rule(name, symbol, ok):
    from hftlab import protocol
    from hftlab.config import Config
    assert protocol.is_symbol(symbol) is ok
    if ok:
        assert protocol.decode(protocol.encode(protocol.Price(1, 1, symbol, 1.0))[:-1]).symbol == symbol
        Config(symbols=(symbol,))
        SharedPriceBook([symbol], name).__exit__()
        return
    with pytest.raises(ValueError, match=protocol.SYMBOL_RULE.replace(".", r"\.")):
        Config(symbols=(symbol,))
    with pytest.raises(ValueError, match="bad symbol"):
        SharedPriceBook([symbol], name)
    assert not exists(name)
