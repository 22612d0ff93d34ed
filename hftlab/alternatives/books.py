"""The latest-price book, three ways: the seqlocked book, a Manager dict, a bare mmap.

The lab keeps the latest price of each symbol in `hftlab.book.SharedPriceBook`: shared
memory, each record under a seqlock (lesson 03). A learner would reach for
``multiprocessing.Manager().dict()`` (a dict that several processes share, no layout to
design) or for a plain memory-mapped file written with ``struct`` (shared memory without
the seqlock). Here a writer process writes and a reader process (the calling one) reads,
and three things are measured:

- **Cost per access**: a write, a read of one symbol, a snapshot of all symbols, each
  while the other side hammers the same store.
- **Torn reads and snapshots**: in the hammering phase the writer writes ``k`` into every
  field of a record (price ``float(k)``, seq ``k``, ts_ns ``k``), so a copy whose fields
  disagree mixes two writes. A snapshot is torn if any of its records is.
- **Time until a reader sees a new price**: then the writer writes one price every
  `interval` seconds stamped with ``time.time_ns()``, and the reader, polling, notes when
  it first sees each one.

The stores (`STORES`): ``seqlock`` (the lab's book), ``manager`` (a ``Manager().dict()``
holding one ``(price, seq, ts_ns)`` tuple per symbol: replaced whole, so it cannot tear),
``mmap`` (a file in /dev/shm, 24 bytes per symbol, each field written with its own
``struct.pack_into``, read with one ``struct.unpack_from``, no lock: it can tear).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
import tempfile
import time
from dataclasses import dataclass

from hftlab import book
from hftlab.alternatives._child import Child, _CTX, percentiles_us

__all__ = ["STORES", "BookResult", "measure_book", "book_table"]

STORES = ("seqlock", "manager", "mmap")
SYMBOLS = ("AAPL", "MSFT", "GOOGL", "AMZN")
START_S = 30.0
REAL_NS = 10**15            # a ts_ns above this is a clock reading, below it a counter k
DESCRIPTIONS = {
    "seqlock": "hftlab SharedPriceBook (seqlock)",
    "manager": "multiprocessing Manager().dict()",
    "mmap": "mmap'd file + struct, no lock",
}

_RECORD = struct.Struct("<dQq")            # price, seq, ts_ns: one symbol of the mmap store
_PRICE, _SEQ, _TS = struct.Struct("<d"), struct.Struct("<Q"), struct.Struct("<q")


@dataclass
class BookResult:
    """What one store cost, and whether its readers ever saw half an update."""

    store: str
    writes: int
    write_us: float
    reads: int
    read_us: float
    torn_reads: int
    snapshots: int
    snapshot_us: float
    torn_snapshots: int
    visible_n: int               # paced prices the reader saw (not those overwritten unseen)
    visible_p50_us: float | None
    visible_p99_us: float | None

    @property
    def torn_read_share(self) -> float:
        return self.torn_reads / self.reads if self.reads else 0.0

    @property
    def torn_snapshot_share(self) -> float:
        return self.torn_snapshots / self.snapshots if self.snapshots else 0.0


# -- the three stores: open, write one symbol, read one, snapshot all ---------------------

class _Seqlock:
    def __init__(self, handle, owner):
        self.book = (book.SharedPriceBook(SYMBOLS, handle) if owner
                     else book.SharedPriceBook.attach(handle, SYMBOLS))

    def write(self, i, price, seq, ts_ns):
        self.book.update_index(i, price, seq, ts_ns)

    def read(self, i):
        q = self.book.read(SYMBOLS[i])
        return (0.0, 0, 0) if q is None else (q.price, q.seq, q.ts_ns)

    def snapshot(self):
        return [tuple(r) for r in self.book.snapshot()[["price", "seq", "ts_ns"]].tolist()]

    def close(self):
        if self.book.owner:
            self.book.unlink()
        self.book.close()


class _Manager:
    def __init__(self, handle, owner):
        self.d = handle

    def write(self, i, price, seq, ts_ns):
        self.d[SYMBOLS[i]] = (price, seq, ts_ns)    # one request, one value replaced whole

    def read(self, i):
        return self.d.get(SYMBOLS[i], (0.0, 0, 0))

    def snapshot(self):
        d = self.d.copy()                           # one request
        return [d.get(s, (0.0, 0, 0)) for s in SYMBOLS]

    def close(self):
        pass


class _Mmap:
    _ALL = struct.Struct("<" + "dQq" * len(SYMBOLS))

    def __init__(self, handle, owner):
        with open(handle, "r+b") as f:
            self.buf = mmap.mmap(f.fileno(), _RECORD.size * len(SYMBOLS))

    def write(self, i, price, seq, ts_ns):
        # One pack_into per field, as a first attempt would, the seq last as if it said
        # "done": nothing keeps a reader from copying the record between (or during)
        # these three stores.
        off = i * _RECORD.size
        _TS.pack_into(self.buf, off + 16, ts_ns)
        _PRICE.pack_into(self.buf, off, price)
        _SEQ.pack_into(self.buf, off + 8, seq)

    def read(self, i):
        return _RECORD.unpack_from(self.buf, i * _RECORD.size)

    def snapshot(self):
        v = self._ALL.unpack_from(self.buf)
        return [v[k:k + 3] for k in range(0, len(v), 3)]

    def close(self):
        self.buf.close()


_OPEN = {"seqlock": _Seqlock, "manager": _Manager, "mmap": _Mmap}


def _torn(record) -> bool:
    price, seq, ts_ns = record
    return price != seq or (ts_ns != seq and ts_ns < REAL_NS)


# -- the writer (a child process) ----------------------------------------------------------

def _writer(conn, store, handle, max_writes, max_seconds, paced, interval):
    """Hammer the store until told to stop, then write `paced` stamped prices to symbol 0."""
    s = _OPEN[store](handle, owner=True)
    try:
        conn.send(("ready",))
        if conn.recv() != ("go",):
            return
        n, k = len(SYMBOLS), 0
        start = time.perf_counter()
        end = start + max_seconds
        while k < max_writes:
            k += 1
            s.write(k % n, float(k), k, k)
            # Look for "stop" only now and then: a poll is a system call.
            if not k & 255 and (conn.poll(0) or time.perf_counter() > end):
                break
        seconds = time.perf_counter() - start
        if conn.recv() != ("stop",):              # sent by the reader when done reading
            return
        conn.send(("stopped", k, seconds))
        if conn.recv() != ("pace",):
            return
        for _ in range(paced):
            time.sleep(interval)
            k += 1
            s.write(0, float(k), k, time.time_ns())
        conn.send(("done",))
        conn.poll(60.0)                           # until the reader has finished
    finally:
        s.close()


# -- the reader (the calling process) ------------------------------------------------------

def _hammer(fn, limit, seconds, torn):
    """Call fn() up to `limit` times or for `seconds`; (calls, elapsed, torn copies)."""
    count = bad = 0
    start = time.perf_counter()
    end = start + seconds
    while count < limit:
        for _ in range(64):                       # check the clock every 64 calls
            if torn(fn()):
                bad += 1
        count += 64
        if time.perf_counter() > end:
            break
    return count, time.perf_counter() - start, bad


@contextlib.contextmanager
def _handle(store):
    """What the writer and reader open the store by: a book name, a dict proxy, a path."""
    if store == "seqlock":
        name = book.new_name()
        try:
            yield name
        finally:
            book.remove_stale(name)              # only if its writer died without unlinking
    elif store == "manager":
        with _CTX.Manager() as manager:           # its server process ends with the block
            yield manager.dict()
    else:
        folder = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
        path = os.path.join(folder, book.new_name())
        with open(path, "xb") as f:
            f.truncate(_RECORD.size * len(SYMBOLS))
        try:
            yield path
        finally:
            os.unlink(path)


def measure_book(store: str, reads: int = 200_000, snapshots: int = 50_000,
                 seconds: float = 0.5, paced: int = 200, interval: float = 0.001,
                 timeout: float = 60.0) -> BookResult:
    """Measure one store with a writer process hammering it, then writing paced prices.

    The reader reads for up to `reads` reads or `seconds`, then snapshots for up to
    `snapshots` or `seconds`; then `paced` prices, one every `interval` seconds, are
    timed from write to first sight. Bounded by `timeout` seconds in all.
    """
    _check(store, reads, snapshots, paced, seconds, interval)
    deadline = time.monotonic() + timeout
    with _handle(store) as handle, \
            Child(f"{store} writer", _writer, store, handle, 10**9, timeout, paced,
                  interval) as child:
        child.recv(START_S, "open the store")
        s = _OPEN[store](handle, owner=False)
        try:
            n = len(SYMBOLS)
            child.send("go")
            i = iter(range(10**12))
            n_reads, t_reads, torn_reads = _hammer(lambda: s.read(next(i) % n), reads,
                                                   seconds, _torn)
            n_snaps, t_snaps, torn_snaps = _hammer(s.snapshot, snapshots, seconds,
                                                   lambda snap: any(map(_torn, snap)))
            child.send("stop")
            _, writes, t_writes = child.recv(START_S, "stop writing")
            child.send("pace")
            seen = _watch_paced(s, child, writes, writes + paced, deadline)
            child.recv(max(1.0, deadline - time.monotonic()), "finish the paced writes")
            child.send("bye")
        finally:
            s.close()
    p = percentiles_us(seen)
    return BookResult(store, writes, t_writes / writes * 1e6, n_reads, t_reads / n_reads * 1e6,
                      torn_reads, n_snaps, t_snaps / n_snaps * 1e6, torn_snaps, len(seen),
                      p["p50"], p["p99"])


def _check(store, reads, snapshots, paced, seconds, interval) -> None:
    """ValueError on a store or a size measure_book cannot use."""
    if store not in STORES:
        raise ValueError(f"unknown store {store!r}: choose one of {', '.join(STORES)}")
    for name, value in (("reads", reads), ("snapshots", snapshots), ("paced", paced)):
        if not (isinstance(value, int) and value >= 1):
            raise ValueError(f"{name} must be a positive integer, not {value!r}")
    if not (0 < seconds <= 60 and 0 < interval <= 1):
        raise ValueError("seconds must be in (0, 60] and interval in (0, 1]: "
                         f"got {seconds!r} and {interval!r}")


def _watch_paced(s, child, last, final, deadline) -> list:
    """Poll symbol 0 until the paced price `final` is seen (or `deadline`); the time from
    each price's write to its first sight (ns), for the prices not overwritten unseen."""
    seen, polls = [], 0
    while last < final and time.monotonic() < deadline:
        polls += 1
        if not polls & 4095:              # now and then: is the writer still there?
            child.check_alive("write the paced prices")
        price, seq, ts_ns = s.read(0)
        # A new price counts once it is whole (the mmap store may show the new
        # seq before its timestamp): what a careful reader would wait for.
        if seq != last and price == seq and ts_ns > REAL_NS:
            seen.append(time.time_ns() - ts_ns)
            last = seq
    return seen


def book_table(results) -> str:
    """A plain-text table of BookResults; costs also as a ratio to the first row's."""
    base = results[0] if results else None
    rows = [f"{'store':<36}{'write us':>9}{'read us':>9}{'x first':>8}{'torn reads':>16}"
            f"{'torn snaps':>15}{'seen p50/p99 us':>17}"]
    for r in results:
        ratio = r.read_us / base.read_us if base and base.read_us else 0.0
        seen = ("-" if r.visible_p50_us is None
                else f"{r.visible_p50_us:,.0f}/{r.visible_p99_us:,.0f}")
        rows.append(f"{DESCRIPTIONS[r.store]:<36}{r.write_us:>9.2f}{r.read_us:>9.2f}{ratio:>8.1f}"
                    f"{f'{r.torn_reads:,} ({r.torn_read_share:.1%})':>16}"
                    f"{f'{r.torn_snapshots:,} ({r.torn_snapshot_share:.0%})':>15}{seen:>17}")
    return "\n".join(rows)
