"""hftlab.alternatives: what must hold whatever the machine, never how fast.

TCP and the unlimited or batched transports deliver every tick; ZeroMQ with its default
high-water mark drops ticks in a flood and the drop is counted (from the sequence
numbers, in agreement with sent - delivered); the seqlocked book and the Manager dict
never tear, the unlocked mmap does. Every run leaves no process and no file behind.
"""

import multiprocessing
import os
import subprocess
import sys

import pytest

from hftlab import alternatives, book, protocol
from hftlab.alternatives import books, feeds
from hftlab.alternatives._child import AlternativesError, Child


def live_children():
    """Live (not zombie) processes whose parent is this test process, as ps sees them.

    Stricter than multiprocessing.active_children(), which does not list helpers such as
    multiprocessing's resource tracker (that the spawn start method would leave running).
    """
    ps = subprocess.Popen(["ps", "-A", "-o", "pid=,ppid=,stat="], stdout=subprocess.PIPE, text=True)
    rows = [r.split()[:3] for r in ps.communicate()[0].splitlines()]
    return [int(pid) for pid, ppid, stat in rows
            if int(ppid) == os.getpid() and int(pid) != ps.pid and not stat.startswith("Z")]


@pytest.fixture(autouse=True)
def nothing_left_behind(monkeypatch):
    """Every store name a test makes is gone afterwards, and no child process is left."""
    made = []
    new_name = book.new_name

    def recording():
        made.append(new_name())
        return made[-1]

    monkeypatch.setattr(book, "new_name", recording)
    yield
    assert multiprocessing.active_children() == []
    assert live_children() == []
    for name in made:
        assert not os.path.exists(f"/dev/shm/{name}"), f"{name} was left in /dev/shm"


def consistent(r):
    """The counts of a FeedResult agree with each other."""
    assert r.lost == r.sent - r.delivered >= 0
    assert r.missing == r.lost, "the seqs missing must be exactly the ticks not delivered"
    assert r.errors == 0 and r.seconds > 0


@pytest.mark.parametrize("transport", ["tcp", "zmq_unlimited", "zmq_batched", "queue",
                                       "queue_batched"])
def test_lossless_transports_deliver_every_tick(transport):
    r = feeds.measure_feed(transport, 20_000)
    consistent(r)
    assert (r.sent, r.delivered, r.lost) == (20_000, 20_000, 0)


def test_zmq_default_high_water_mark_drops_in_a_flood_and_counts_the_drop():
    # 100,000 single-tick messages as fast as the sender can: the subscriber decodes each
    # one and falls behind, and past 1000 queued messages on each side (plus the kernel's
    # buffers) the publisher drops. Should one run keep up, the counts must still add up,
    # and a second or third run on a busy machine will not.
    runs = []
    for _ in range(3):
        r = feeds.measure_feed("zmq", 100_000)
        consistent(r)
        runs.append(r)
        if r.lost:
            break
    assert runs[-1].lost > 0, f"no run dropped a tick: {runs}"
    assert 0 < runs[-1].delivered < 100_000


def test_the_tally_counts_missing_seqs_as_a_feed_handler_would():
    tally = feeds._Tally(latency=False)
    ticks = feeds.make_ticks(10)
    tally.add(ticks[:3])                          # 1..3
    tally.add([ticks[5], ticks[6]])               # 6, 7: 4 and 5 lost
    tally.add([protocol.ProtocolError("bad line")])
    assert (tally.delivered, tally.missing, tally.errors, tally.last_seq) == (5, 2, 1, 7)


@pytest.mark.parametrize("transport", ["tcp", "zmq", "queue"])
def test_paced_latency_is_measured_for_every_tick(transport):
    r = feeds.measure_latency(transport, 50, interval=0.001)
    assert (r.sent, r.received) == (50, 50)
    assert 0 < r.p50_us <= r.p99_us


def test_seqlocked_book_never_tears():
    r = books.measure_book("seqlock", reads=1_000_000, snapshots=1_000_000, seconds=0.5,
                           paced=50)
    assert r.torn_reads == 0 and r.torn_snapshots == 0
    assert r.writes > 0 and r.reads > 0 and r.snapshots > 0
    # A reader preempted for longer than the 1 ms between two paced prices sees only the
    # later one (the book keeps the latest value): some may be missed, none seen twice.
    assert 0 < r.visible_n <= 50 and 0 < r.visible_p50_us <= r.visible_p99_us


def test_manager_dict_never_tears():
    r = books.measure_book("manager", reads=2_000, snapshots=500, seconds=0.3, paced=20)
    assert r.torn_reads == 0 and r.torn_snapshots == 0
    assert r.writes > 0 and r.reads > 0 and 0 < r.visible_n <= 20


def test_unlocked_mmap_tears():
    # Three stores per record, each its own pack_into, while the reader copies the whole
    # record in one unpack_from: with both processes running, a copy now and then falls
    # between two stores. Up to three runs of a second each.
    runs = []
    for _ in range(3):
        r = books.measure_book("mmap", reads=10_000_000, snapshots=10_000_000, seconds=0.5,
                               paced=20)
        runs.append(r)
        if r.torn_reads and r.torn_snapshots:
            break
    assert runs[-1].torn_reads > 0 and runs[-1].torn_snapshots > 0, runs
    assert runs[-1].visible_n > 0


def test_bad_arguments_are_refused_with_a_reason():
    with pytest.raises(ValueError, match="unknown transport 'udp'"):
        feeds.measure_feed("udp", 10)
    with pytest.raises(ValueError, match="positive integer"):
        feeds.measure_feed("tcp", 0)
    with pytest.raises(ValueError, match="unknown store 'redis'"):
        books.measure_book("redis")
    with pytest.raises(ValueError, match="interval"):
        feeds.measure_latency("tcp", 10, interval=0)


def test_a_failing_child_is_reported_with_its_reason_and_ended():
    with Child("mmap writer", books._writer, "mmap", "/nonexistent/hftlab_x", 10, 1.0, 1,
               0.001) as child:
        with pytest.raises(AlternativesError, match="FileNotFoundError"):
            child.recv(30.0, "open the store")


def test_tables_show_every_row():
    feed = [feeds.FeedResult("tcp", 100, 100, 0, 0, 0.5),
            feeds.FeedResult("zmq", 100, 10, 90, 0, 0.1)]
    text = feeds.feed_table(feed)
    assert "TCP lines" in text and "default HWM" in text and "1.00" in text
    assert feed[1].ticks_per_s == 100.0 and feed[1].lost == 90
    lat = feeds.latency_table([feeds.LatencyResult("tcp", 10, 10, 20.0, 60.0)])
    assert "10/10" in lat
    b = books.BookResult("mmap", 10, 1.0, 100, 0.5, 3, 10, 2.0, 2, 5, 8.0, 20.0)
    assert "3 (3.0%)" in books.book_table([b]) and "2 (20%)" in books.book_table([b])
    report = alternatives.report({"feed": feed, "latency": [], "book": [b]})
    assert report.count("transport") == 2 and "BOOK" in report
    runs = [{"feed": feed, "latency": [], "book": [b]},
            {"feed": [feeds.FeedResult("tcp", 100, 100, 0, 0, 0.25), feed[1]], "latency": [],
             "book": [b]}]
    text = alternatives.summary(runs)
    assert "feed tcp: ticks/s" in text and "200.00      300.00      400.00" in text


def test_command_line_prints_the_three_tables():
    out = subprocess.run([sys.executable, "-m", "hftlab.alternatives", "--ticks", "3000",
                          "--latency-ticks", "20", "--book-seconds", "0.1"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    for word in ("FEED  throughput", "FEED  one-way latency", "BOOK  cost per access",
                 "ZeroMQ PUB/SUB", "Manager().dict()", "mmap'd file"):
        assert word in out.stdout
