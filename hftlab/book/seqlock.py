"""The seqlocked book: `SharedPriceBook`, one writer and many readers of one segment.

The orderbook process owns (creates, writes, unlinks) a POSIX shared-memory
segment; the strategy, the order manager, notebooks and tests attach to it by
name and read.  They are started independently (other terminals, notebook
kernels), so they share no parent and no inherited objects: only the name.
What the segment's bytes mean is `hftlab.book.layout`'s subject.

Why a seqlock and not a lock
----------------------------
A reader must never see half of an update (the new price with the old seq).
A ``multiprocessing.Lock()`` created in each process is a different lock in
each process and so locks nothing between them; a lock can only be shared by
inheritance from a common parent, and a process started from another
terminal has none.  A named POSIX semaphore would work, but then a slow or
dead reader can stall the writer, and every access costs system calls.

So each record carries a sequence counter, ``version``, as trading systems
do.  The writer makes it odd, writes the fields, and makes it even again.
A reader reads the version (retrying while it is odd), copies the record,
and reads the version again; if it changed, the copy may be torn and the
reader retries.  Readers never block the writer, nobody makes a system call,
and the writer does not even know how many readers there are.  A writer that
dies in mid-write leaves an odd version for ever, so readers give up after
MAX_RETRIES (about a second) and raise BookBusy rather than hang.  snapshot()
does the same over all records at once, so its copy is consistent across
symbols too.  The version goes up by 2 per write from 0, so a record's update
count is version // 2.

The writer stores the header's ``updates`` and ``last_seq`` once per batch of
writes, after every record of it.  That is sound for every reader: a record
is consistent by its own version, whatever the header says; a reader that
polls ``updates`` sees the new count no earlier than the records it counts;
and the doorbell's arm-then-look protocol (`hftlab.book.doorbell`) needs only
that the count be stored before the writer's ring() loads the sleepers word.

A writer that is stopped in mid-write (SIGSTOP, a debugger) looks the same
as a dead one until it runs again.  A reader that must not wait that second
(an event loop serving other clients) passes ``wait=False``: it then spins
_SPIN times at most (tens of microseconds, no sleep) and raises BookBusy,
and tries again later; BookBusy says whether the writer is still running.

Prices come from shared memory that any process of the same user can write,
so the read path trusts no price: a price that is not a finite number above
0 reads as "no price" (read() gives None, snapshot() a NaN price), whoever
wrote it.  Every reader goes through read() or snapshot(), so this one check
covers them all.

The honest caveat: a seqlock in C needs memory fences so that the CPU does
not reorder the version stores/loads with the data (docs/roles.md, "The
seqlock", gives them).  On x86-64 (TSO) plain stores and loads suffice.  On
ARM64 the hardware may reorder them, and CPython cannot issue fences: we rely
on the microseconds of interpreter work between one access and the next.  The
torn-read stress test in tests/test_book.py checks it on the machine it runs on.

Creating the segment (and taking a dead writer's name over) and checking that
a segment is a book this code can read are `hftlab.book.opening`'s subject.
"""

from __future__ import annotations

import contextlib
import mmap
import socket
import struct
import sys
import time

import numpy as np

from hftlab.book.doorbell import ring_bells, sweep_bells
from hftlab.book.layout import (FEED_DOWN, FEED_NEVER, FEED_UP, HEADER_DTYPE, HEADER_STRUCT, RECORD_DATA,
                                RECORD_DATA_OFFSET, RECORD_DTYPE, BookBusy, BookError, LayoutMismatch, Quote,
                                check_name, check_symbols, header_word, layout_nbytes, new_name, pid_alive)
from hftlab.book.layout import field_offset as _off
from hftlab.book.opening import book_symbols, create_segment, fill_book, open_segment
from hftlab.book.untracked import unlink_untracked

__all__ = ["SharedPriceBook", "MAX_RETRIES"]

# A reader gives up after this many failed attempts at one consistent copy.
# The first _SPIN retries spin; after that each retry sleeps briefly, so that
# a writer preempted in mid-write gets the CPU back (on a busy machine a
# pure spin of 10,000 tries lasts a few ms, less than one time slice) and a
# dead writer is reported after about a second (measured on Linux, where a
# 20 us sleep lasts about 100 us).
MAX_RETRIES = 10_000
_SPIN = 100
_BACKOFF_S = 20e-6
_INF = float("inf")
_U64_MAX = 2**64 - 1


# The 8-byte fields are 8-byte aligned so that each can be stored and loaded
# with one 8-byte machine instruction, which is atomic on x86-64 and ARM64.  A
# memoryview cast to "Q"/"q" does exactly that (one 8-byte memcpy per item).
# struct.pack_into does not: it zero-fills its target before writing the
# fields, so a version written with it passes through 0, an even number, and a
# reader that reads that 0 before and after its copy accepts a torn record (an
# earlier version of this module did that, and the stress test caught it).  So
# the versions and the header's live fields go through the cast views, and the
# data fields of a record are packed with one struct.pack and copied in while
# the version is odd.  What each read and write costs: docs/performance.md,
# "The book's reads and writes".
assert sys.byteorder == "little"      # the cast views are native-endian
_DATA, _HEADER, _R_DATA = RECORD_DATA, HEADER_STRUCT, RECORD_DATA_OFFSET
_H_SESSION = _off(HEADER_DTYPE, "session")
_W_HEARTBEAT, _W_FEED_STATE, _W_LAST_SEQ, _W_UPDATES, _W_GAPS, _W_SLEEPERS = map(
    header_word, ("heartbeat_ns", "feed_state", "last_seq", "updates", "gaps", "sleepers"))


class SharedPriceBook:
    """Latest price per symbol in shared memory: one writer, many readers.

    ``SharedPriceBook(symbols, name)`` creates the book as its owner (the one
    writer); ``SharedPriceBook.attach(name)`` opens it as a reader.  The
    owner's writes must come from one thread at a time.
    """

    # -- the seqlock: the writer's store, the reader's load ---------------------

    def write_ticks(self, indexes, prices, seqs, stamps) -> None:
        """The writer's store: each tick of four equal-length columns (record
        index, price, seq >= 1, ts_ns) written under its record's seqlock (the
        version odd, the fields, the version even), in order; then the header's
        ``updates`` and ``last_seq`` once, which is sound for every reader (the
        module docstring says why).  Does not ring: the caller rings once per batch."""
        if not self._writable:
            self._check_writer()
        if not len(indexes) == len(prices) == len(seqs) == len(stamps):
            raise ValueError(f"write_ticks needs columns of equal length; got {len(indexes)}, "
                             f"{len(prices)}, {len(seqs)} and {len(stamps)}")
        pack, now = _DATA.pack, time.time_ns
        u64, vword, views, versions = self._u64, self._vword, self._data, self._versions
        before = sum(versions)
        try:
            for i, price, seq, ts_ns in zip(indexes, prices, seqs, stamps):
                v = versions[i] + 1
                # Packed first: a bad value raises with the record still closed
                # (an odd version left behind would stall every reader).
                data = pack(price, seq, ts_ns, now(), (v + 1) >> 1)
                w = vword[i]
                u64[w] = v              # odd: write in progress
                views[i][:] = data
                u64[w] = v + 1          # even: done
                versions[i] = v + 1
        finally:
            # If a bad value stopped the loop, the header counts the ticks written before it.
            written = (sum(versions) - before) // 2
            if written:
                self._last_seq = seqs[written - 1]
                self._updates += written
                u64[_W_LAST_SEQ] = self._last_seq
                u64[_W_UPDATES] = self._updates

    def read(self, symbol, wait=True) -> Quote | None:
        """`symbol`'s latest quote, or None if it has no usable price.

        No usable price: none written yet, or one that is not a finite number
        above 0 (see the module docstring).  A record in mid-write is retried
        for about a second, or only a few microseconds with ``wait=False``,
        then BookBusy is raised."""
        i = self.index(symbol)
        self._check_open()
        u64 = self._u64
        w = self._vword[i]
        data = self._data[i]
        tries = 0
        while True:
            v1 = u64[w]
            if not v1 & 1:
                price, seq, ts_ns, written_ns, updates = _DATA.unpack(data)
                if u64[w] == v1:
                    break
            tries += 1
            self._retry(tries, f"record {symbol!r}", wait)
        if seq == 0 or not 0.0 < price < _INF:     # False for NaN too
            return None
        return Quote(self.symbols[i], price, seq, ts_ns, written_ns, updates)

    def _consistent_copy(self, wait) -> bytes:
        """The bytes of all records, copied while no record was being written (the
        versions equal and even before and after the copy): consistent across symbols."""
        self._check_open()
        buf = self._buf
        start, end = self._block
        versions = self._all_versions.tolist
        tries = 0
        while True:
            # Keep the window between the two version reads short (well
            # under a microsecond for a few symbols): the longer it is, the
            # likelier a busy writer lands in it and the copy is retried.
            before = versions()
            raw = bytes(buf[start:end])
            if versions() == before and not any(v & 1 for v in before):
                return raw
            tries += 1
            self._retry(tries, "snapshot", wait)

    def _retry(self, tries, what, wait):
        self.retries += 1
        if tries >= (MAX_RETRIES if wait else _SPIN):
            pid = self.header()["writer_pid"]
            alive = pid_alive(pid)
            state = ("is stopped or stalled in mid-write; retry later" if alive else
                     "died in mid-write; restart the orderbook")
            raise BookBusy(f"{what} of book {self.name!r} stayed in mid-write "
                           f"over {tries} tries: its writer (pid {pid}) {state}", alive)
        if tries > _SPIN:
            time.sleep(_BACKOFF_S)

    def _check_open(self):
        if self._closed:
            raise BookError(f"book {self.name!r} is closed")

    # -- making a book, attaching to one ------------------------------------

    def __init__(self, symbols, name=None):
        symbols = check_symbols(symbols)
        name = new_name() if name is None else check_name(name)
        nbytes = layout_nbytes(len(symbols))
        shm, self.took_over_from = create_segment(name, nbytes)

        fill_book(shm, symbols)
        self._setup(shm, symbols, owner=True)
        # The only writer can keep the counters in Python instead of reading
        # them back from shared memory on every update.
        self._versions = [0] * len(symbols)
        self._last_seq = 0
        self._updates = 0
        self._gaps = 0

    @classmethod
    def attach(cls, name, symbols=None) -> "SharedPriceBook":
        """Open an existing book as a reader.  Never registers the segment
        with this process's resource tracker (see the module docstring)."""
        shm = open_segment(name)
        try:
            found = book_symbols(shm, name)
            if symbols is not None and tuple(symbols) != found:
                raise LayoutMismatch(
                    f"book {name!r} holds symbols {found}, not the expected "
                    f"{tuple(symbols)}: start the orderbook with the same "
                    "symbols, or attach without symbols=")
            self = cls.__new__(cls)
            self.took_over_from = None
            self._setup(shm, found, owner=False)
            return self
        except BaseException:
            shm.close()
            raise

    def _setup(self, shm, symbols, owner):
        self._shm = shm
        self._buf = shm.buf
        self.name = shm.name.lstrip("/")
        self.symbols = symbols
        self.owner = owner
        self.nbytes = layout_nbytes(len(symbols))
        page = mmap.PAGESIZE
        self.mapped_bytes = -(-shm.size // page) * page
        self.retries = 0
        self._index = {s: i for i, s in enumerate(symbols)}
        hsize, rsize = HEADER_DTYPE.itemsize, RECORD_DTYPE.itemsize
        offsets = [hsize + i * rsize for i in range(len(symbols))]
        # Views on the segment; close() must release every one of them.
        self._u64 = shm.buf.cast("Q")
        self._i64 = shm.buf.cast("q")
        self._vword = [off // 8 for off in offsets]       # record versions
        self._all_versions = self._u64[hsize // 8:self.nbytes // 8:rsize // 8]
        self._data = [shm.buf[off + _R_DATA:off + rsize] for off in offsets]
        self._records = np.ndarray((len(symbols),), RECORD_DTYPE,
                                   buffer=shm.buf, offset=hsize)
        self._block = (hsize, self.nbytes)
        # the price of every record, and every record's data, from a snapshot's bytes
        self._prices = struct.Struct("<" + f"{_R_DATA}xd{rsize - _R_DATA - 8}x" * len(symbols))
        self._unpack_records = struct.Struct("<" + f"{_R_DATA}x{_DATA.format.lstrip('<')}" * len(symbols)).unpack
        self._writable = owner
        self._closed = False
        self._unlinked = False
        self.rings = 0              # bells rung by ring(), for the writer's counts
        self._bell_sender = None    # the writer's socket for ringing, made on the first ring

    # -- the writer's other calls ---------------------------------------------

    def _check_writer(self):
        self._check_open()
        if not self.owner:
            raise BookError(f"book {self.name!r} is attached read-only: only "
                            "the orderbook process that created it writes")

    def update(self, symbol, price, seq=None, ts_ns=None) -> None:
        """Set `symbol`'s price and ring the doorbell if a reader sleeps on it.
        seq defaults to the last seq + 1, ts_ns to now.  seq must be >= 1
        (0 means "no price yet"), and price a finite number above 0: every
        reader takes anything else for "no price", so it is refused here
        (ValueError).  The hot paths, update_index() and write_ticks(), check
        neither, and do not ring: their caller rings once per batch."""
        self._check_writer()
        i = self.index(symbol)
        if not 0.0 < float(price) < _INF:     # False for NaN too
            raise ValueError(f"price must be a finite number above 0, not {price!r}: "
                             "readers would take it for no price")
        if seq is None:
            seq = self._last_seq + 1
        elif seq < 1:
            raise ValueError(f"seq must be >= 1, not {seq}")
        if ts_ns is None:
            ts_ns = time.time_ns()
        self.update_index(i, float(price), seq, ts_ns)
        self.ring()

    def update_index(self, i, price, seq, ts_ns) -> None:
        """Set record i (seq >= 1), no defaults, no lookups: the store of `write_ticks` for
        one tick, the paced feed's hot path. Its own copy of the store, not a call of
        write_ticks: that cost a paced tick about 3.5 us (docs/performance.md, "Where the
        tuning lives"); tests/test_book.py holds the two equal."""
        if not self._writable:
            self._check_writer()
        v = self._versions[i] + 1
        data = _DATA.pack(price, seq, ts_ns, time.time_ns(), (v + 1) >> 1)  # first: see write_ticks
        u64, w = self._u64, self._vword[i]
        u64[w] = v                      # odd: write in progress
        self._data[i][:] = data
        u64[w] = v + 1                  # even: done
        self._versions[i] = v + 1
        self._last_seq = seq
        self._updates += 1
        u64[_W_LAST_SEQ] = seq
        u64[_W_UPDATES] = self._updates

    def set_feed_state(self, state, session=None) -> None:
        """FEED_NEVER, FEED_UP or FEED_DOWN; session (<= 16 ASCII chars) is
        kept unless given."""
        self._check_writer()
        if state not in (FEED_NEVER, FEED_UP, FEED_DOWN):
            raise ValueError(f"feed state must be FEED_NEVER, FEED_UP or "
                             f"FEED_DOWN (0, 1, 2), not {state!r}")
        if session is not None:
            token = session.encode("ascii")
            if len(token) > 16:
                raise ValueError(f"session token {session!r} is longer "
                                 "than 16 characters")
            # the session first, so that a reader who sees the new state
            # sees its session
            self._buf[_H_SESSION:_H_SESSION + 16] = token.ljust(16, b"\0")
        self._i64[_W_FEED_STATE] = state

    def add_gaps(self, n) -> None:
        """Count n more feed sequence gaps."""
        self._check_writer()
        if n < 0:
            raise ValueError(f"cannot add {n} gaps")
        # Saturates rather than overflow the 64-bit field: a feed may claim
        # (HB last_seq up to 2**64 - 1) more lost messages than it fits.
        self._gaps = min(self._gaps + int(n), _U64_MAX)
        self._u64[_W_GAPS] = self._gaps

    def heartbeat(self, ts_ns=None) -> None:
        """Say that the writer is alive (at ts_ns, default now)."""
        self._check_writer()
        self._i64[_W_HEARTBEAT] = time.time_ns() if ts_ns is None else ts_ns

    def ring(self) -> int:
        """Ring the doorbell if a reader sleeps on it; return how many bells were rung.

        The writer calls this after each write or batch of writes.  When nobody
        sleeps it is one 8-byte load; otherwise it clears the ``sleepers`` word and
        sends one byte to each bell, never blocking (`hftlab.book.doorbell`)."""
        u64 = self._u64
        if not u64[_W_SLEEPERS]:
            return 0
        u64[_W_SLEEPERS] = 0    # cleared before ringing: a reader arming now is rung next time
        if self._bell_sender is None:
            self._bell_sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._bell_sender.setblocking(False)
        n = ring_bells(self.name, self._bell_sender)
        self.rings += n
        return n

    # -- reading (the owner may read too) -------------------------------------

    def updates(self) -> int:
        """The header's count of every update so far: one 8-byte load, for "anything new?"."""
        self._check_open()
        return self._u64[_W_UPDATES]

    def set_sleeping(self) -> None:
        """Say "a reader is asleep on the doorbell": the writer's next ring() rings.
        Any reader may call it (see `hftlab.book.doorbell` for the order to keep)."""
        self._check_open()
        self._u64[_W_SLEEPERS] = 1

    def index(self, symbol) -> int:
        try:
            return self._index[symbol]
        except KeyError:
            raise KeyError(f"unknown symbol {symbol!r}: book {self.name!r} "
                           f"has {', '.join(self.symbols)}") from None

    def snapshot(self, wait=True) -> np.ndarray:
        """A copy of all records, taken while no record was being written,
        so it is consistent across symbols too.

        A price that is not usable (see read()) is NaN in the copy.  `wait`
        as for read()."""
        raw = self._consistent_copy(wait)
        records = np.frombuffer(bytearray(raw), RECORD_DTYPE)
        # Plain floats and a comprehension: about 0.3 us for a few
        # symbols, where numpy's comparisons would cost 5 us.
        bad = [i for i, p in enumerate(self._prices.unpack(raw))
               if not 0.0 < p < _INF]      # NaN fails too
        if bad:
            records["price"][bad] = np.nan
        return records

    def records(self, wait=True) -> list:
        """The snapshot as plain tuples, (price, seq, ts_ns, written_ns, updates) per
        record, in symbol order; the price as stored (see read() for a usable one).

        For a reader on the hot path: `snapshot` builds a NumPy array, and NumPy's many
        small calls, cheap in a loop, cost a reader that wakes with cold caches about
        40 us a look here (the strategy's, in `hftlab bench`); one struct unpack does not."""
        values = self._unpack_records(self._consistent_copy(wait))
        return [values[k:k + 5] for k in range(0, len(values), 5)]

    def quotes(self, wait=True) -> dict:
        """symbol -> Quote, or None for no usable price; from one consistent copy (records())."""
        return {s: None if seq == 0 or not 0.0 < price < _INF else Quote(s, price, seq, ts_ns, written_ns, updates)
                for s, (price, seq, ts_ns, written_ns, updates) in zip(self.symbols, self.records(wait))}

    def header(self) -> dict:
        """The header as plain Python values.

        The header has no version counter; its fields are independent
        values, and two equal consecutive copies are taken as consistent.
        """
        self._check_open()
        size = HEADER_DTYPE.itemsize
        raw = bytes(self._buf[:size])
        for _ in range(MAX_RETRIES):
            again = bytes(self._buf[:size])
            if again == raw:
                break
            raw = again
        out = dict(zip(HEADER_DTYPE.names, _HEADER.unpack(raw)))
        for field in ("magic", "session"):
            out[field] = out[field].rstrip(b"\0").decode("ascii", "replace")
        return out

    def writer_alive(self) -> bool:
        """Is the process named as writer in the header still running?"""
        return pid_alive(self.header()["writer_pid"])

    # -- lifetime -------------------------------------------------------------

    def close(self) -> None:
        """Unmap the segment from this process (the book stays)."""
        if self._closed:
            return
        self._closed = True
        self._writable = False
        # Views export the buffer: the mmap cannot close under them.
        self._records = None
        for view in (self._all_versions, self._u64, self._i64, *self._data):
            view.release()
        self._data = []
        self._buf = None
        self._shm.close()
        if self._bell_sender is not None:
            self._bell_sender.close()

    def unlink(self) -> None:
        """Remove the segment (owner only).  Mapped readers keep their
        mapping; new readers get BookNotFound."""
        if not self.owner:
            raise BookError(f"book {self.name!r} is attached read-only: only "
                            "its owner (the orderbook) removes it")
        if self._unlinked:
            return
        self._unlinked = True
        with contextlib.suppress(FileNotFoundError):   # removed behind our back
            unlink_untracked(self._shm)
        sweep_bells(self.name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        if self.owner:
            self.unlink()

    def __repr__(self):
        role = "owner" if self.owner else "reader"
        state = ", closed" if self._closed else ""
        return (f"<SharedPriceBook {self.name!r} {role} "
                f"symbols={self.symbols!r}{state}>")
