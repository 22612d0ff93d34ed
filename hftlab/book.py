"""The book: the latest price of every symbol, in one shared-memory segment.

The orderbook process owns (creates, writes, unlinks) a POSIX shared-memory
segment; the strategy, the order manager, notebooks and tests attach to it by
name and read.  They are started independently (other terminals, notebook
kernels), so they share no parent and no inherited objects: only the name.

Layout (little-endian, every field 8-byte aligned)::

    offset 0            HEADER_DTYPE, one record (96 bytes)
    offset header_size  RECORD_DTYPE * n_symbols (56 bytes each)

The header says what the segment is (magic, layout_version, n_symbols,
record_size, header_size), who writes it (writer_pid, created_ns,
heartbeat_ns), the state of the feed (feed_state, session, last_seq, gaps)
and a total update count.  A record holds one symbol's latest price with the
feed seq and timestamps of the tick that set it; seq 0 means "no price yet"
(price is NaN until then).

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
symbols too.

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

Each version change must be one 8-byte store, and each version read one
8-byte load: they go through a memoryview cast to "Q".  struct.pack_into
will not do for the version, because it zero-fills its target before writing
the value: readers could see a transient 0, an even number, before and after
their copy and accept a torn record.

The honest caveat: a seqlock in C needs memory fences so that the CPU does
not reorder the version stores/loads with the data.  On x86-64 (TSO: stores
are seen in program order, loads are not reordered with other loads) plain
stores and loads suffice.  On ARM64 (e.g. Apple silicon) the hardware may
reorder them, and CPython cannot issue acquire/release fences; here we rely
on the microseconds of interpreter work between one store (or load) and the
next, which in practice exceed any reordering window.  The torn-read stress
test in tests/test_book.py checks this on the machine it runs on.

The resource tracker trap (cpython issue 82300)
-----------------------------------------------
Before Python 3.13, ``SharedMemory(name)`` registers the segment with the
calling process's resource tracker even when it only attaches, and the
tracker unlinks every registered segment when that process exits: the first
reader to exit would destroy the book.  3.13 added ``track=False``.  Readers
here never register: on 3.13+ they pass ``track=False``; before, they replace
``resource_tracker.register`` with a no-op while the segment is opened (under
a module-level lock; shared_memory.py looks the function up on the module at
call time; unregister is muted the same way when such a handle removes a
stale segment).  Unregistering afterwards is not an option: the tracker keeps a
set of names, so that would also cancel the registration of a segment of the
same name that this same process owns.

Who unlinks: only the owner, on a clean exit (``unlink()``, or leaving a
``with`` block).  The owner does not register with the tracker either: the
tracker of a SIGKILLed owner would unlink the segment *by name* some
milliseconds later, and by then that name may belong to the fresh book of a
restarted orderbook.  A segment left behind by a writer that died is instead
detected through ``writer_pid`` and replaced by the next owner, or removed by
``remove_stale()`` (``hftlab clean``; the launcher does it when it reaps an
orderbook it had to kill).

Removing a stale book must never remove a live one, and two races make that
hard.  (1) A creator makes the segment (empty), sizes it (all zeros) and only
then writes its pid: for those microseconds a segment being born looks like
one whose creator died.  A segment that is still unclaimed (empty, or zero
magic and zero pid) is therefore left alone until it is CREATION_GRACE seconds
old (by its inode's change time).  (2) Unlinking goes by name: a remover that
examined a stale book, then unlinked the name after a new orderbook had
replaced that book, would remove the new one.  So every remover (``remove_stale``
and a creator taking a name over) holds an exclusive ``flock`` on the segment
it examined while it checks that the name still refers to that very segment
and unlinks it; removers of one segment take turns, and the name can change
under a remover only by the hands of the segment's live owner.  Readers that
are still mapped keep the old, unlinked segment: when ``writer_alive()``
turns false they should close() and attach() again.

POSIX only (Linux, macOS); names are at most 30 characters because macOS
allows 31 including the leading slash.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import re
import secrets
import struct
import sys
import threading
import time
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory
from typing import NamedTuple

import numpy as np

__all__ = [
    "HEADER_DTYPE", "RECORD_DTYPE", "FEED_NEVER", "FEED_UP", "FEED_DOWN", "FEED_STATES",
    "MAGIC", "LAYOUT_VERSION", "MAX_SYMBOLS", "MAX_RETRIES",
    "BookError", "BookNotFound", "BookEmpty", "BookInUse", "LayoutMismatch", "BookBusy",
    "Quote", "new_name", "check_name", "layout_nbytes", "SharedPriceBook", "remove_stale",
    "Follower",
]

MAGIC = b"HFTBOOK1"
LAYOUT_VERSION = 1
MAX_SYMBOLS = 64
MAX_NAME_LEN = 30
# A segment nobody has claimed yet (empty, or no pid in its header) is taken for
# one being created, and never removed, until it is this many seconds old.
CREATION_GRACE = 10.0
FEED_NEVER, FEED_UP, FEED_DOWN = 0, 1, 2
# What a person is shown for each feed state (the dashboard, `hftlab status`).
FEED_STATES = {FEED_NEVER: "never connected", FEED_UP: "UP", FEED_DOWN: "DOWN"}

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

HEADER_DTYPE = np.dtype([
    ("magic", "S8"),
    ("layout_version", "<u4"),
    ("n_symbols", "<u4"),
    ("record_size", "<u4"),
    ("header_size", "<u4"),
    ("writer_pid", "<i8"),
    ("created_ns", "<i8"),
    ("heartbeat_ns", "<i8"),
    ("feed_state", "<i8"),
    ("session", "S16"),
    ("last_seq", "<u8"),
    ("updates", "<u8"),
    ("gaps", "<u8"),
])

RECORD_DTYPE = np.dtype([
    ("version", "<u8"),
    ("symbol", "S8"),
    ("price", "<f8"),
    ("seq", "<u8"),
    ("ts_ns", "<i8"),
    ("written_ns", "<i8"),
    ("updates", "<u8"),
])

assert HEADER_DTYPE.itemsize % 8 == 0 and RECORD_DTYPE.itemsize % 8 == 0


def _off(dtype, field):
    return dtype.fields[field][1]


# The fields are 8-byte aligned so that each can be stored and loaded with
# one 8-byte machine instruction, which is atomic on x86-64 and ARM64.  A
# memoryview cast to "Q"/"q" does exactly that (one 8-byte memcpy per item).
# struct.pack_into does not: it zero-fills its target before writing the
# fields (a reader polling a word that pack_into keeps rewriting with 5 saw
# 0 in 2% of its reads), so a version written with it passes through 0, an
# even number, and a reader that reads that 0 before and after its copy
# accepts a torn record; an earlier version of this module did that and the
# stress test caught a few torn reads per ten seconds of hammering.  So the
# versions and the header's live fields go through the cast views, and the
# data fields of a record are packed with one struct.pack and copied in
# while the version is odd.
#
# Measured with timeit (x86-64 Linux, CPython 3.11, numpy 2.4, no reader
# running): update_index 0.36 us, update 0.48 us, read 0.50 us, snapshot
# 0.9 us with 4 symbols and 3.0 us with 64, header 1.4 us.  The same update
# with numpy scalar setitem per field costs 3.3 us.  (The price check that
# snapshot() does since is lost in the noise with 4 symbols: on a loaded 2-core
# machine, best of 9 timeit runs, 1.9-3.3 us with it, 2.3-2.5 us without.)
assert sys.byteorder == "little"      # the cast views are native-endian
_DATA = struct.Struct("<dQqqQ")       # price, seq, ts_ns, written_ns, updates
_HEADER = struct.Struct("<8s4I4q16s3Q")  # all of HEADER_DTYPE, for header()
assert _HEADER.size == HEADER_DTYPE.itemsize

_R_DATA = _off(RECORD_DTYPE, "price")
assert [_off(RECORD_DTYPE, f) for f in
        ("price", "seq", "ts_ns", "written_ns", "updates")] == \
    [_R_DATA + 8 * k for k in range(5)]
assert _R_DATA + _DATA.size == RECORD_DTYPE.itemsize
assert _off(RECORD_DTYPE, "version") == 0

_H_MAGIC = _off(HEADER_DTYPE, "magic")
_H_SESSION = _off(HEADER_DTYPE, "session")
# indexes of 8-byte header words, for the cast views
_W_HEARTBEAT = _off(HEADER_DTYPE, "heartbeat_ns") // 8
_W_FEED_STATE = _off(HEADER_DTYPE, "feed_state") // 8
_W_LAST_SEQ = _off(HEADER_DTYPE, "last_seq") // 8
_W_UPDATES = _off(HEADER_DTYPE, "updates") // 8
_W_GAPS = _off(HEADER_DTYPE, "gaps") // 8


class BookError(RuntimeError):
    """Something is wrong with the shared price book."""


class BookNotFound(BookError):
    """No book of that name exists (yet)."""


class BookEmpty(BookNotFound):
    """The segment exists but has no size yet: its creator is between creating it and
    sizing it (microseconds), or died right there."""


class BookInUse(BookError):
    """The name belongs to a book whose writer is still running."""


class LayoutMismatch(BookError):
    """The segment is not a book of the layout (or symbols) expected."""


class BookBusy(BookError):
    """A record stayed in mid-write for the whole read: its writer is stopped,
    stalled or dead in the middle of an update.  ``writer_alive`` says which."""

    def __init__(self, message, writer_alive):
        super().__init__(message)
        self.writer_alive = writer_alive


class Quote(NamedTuple):
    symbol: str
    price: float
    seq: int
    ts_ns: int
    written_ns: int
    updates: int


def new_name() -> str:
    """A fresh segment name: "hftlab_" + 8 hex digits."""
    return "hftlab_" + secrets.token_hex(4)


def layout_nbytes(n_symbols) -> int:
    """Bytes used by the layout for n_symbols (the mapping is page-rounded)."""
    if not 1 <= n_symbols <= MAX_SYMBOLS:
        raise ValueError(f"a book holds 1..{MAX_SYMBOLS} symbols, "
                         f"not {n_symbols}")
    return HEADER_DTYPE.itemsize + n_symbols * RECORD_DTYPE.itemsize


def check_name(name):
    """The name, if it can name a book on Linux and macOS; ValueError saying why not."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"bad book name {name!r}: use letters, digits, "
                         "'_', '.' or '-'")
    if len(name) > MAX_NAME_LEN:
        raise ValueError(f"book name {name!r} is longer than {MAX_NAME_LEN} "
                         "characters (macOS allows 31 including the slash)")
    return name


def _check_symbols(symbols):
    if isinstance(symbols, (str, bytes)):
        raise ValueError("symbols must be a sequence of strings, not one "
                         f"string: {symbols!r}")
    symbols = tuple(symbols)
    if not 1 <= len(symbols) <= MAX_SYMBOLS:
        raise ValueError(f"a book holds 1..{MAX_SYMBOLS} symbols, "
                         f"got {len(symbols)}")
    for s in symbols:
        if (not isinstance(s, str) or not s or not s.isascii()
                or len(s) > 8 or "\0" in s):
            raise ValueError(f"bad symbol {s!r}: symbols are non-empty "
                             "ASCII strings of at most 8 characters")
    if len(set(symbols)) != len(symbols):
        raise ValueError(f"duplicate symbols in {symbols}")
    return symbols


def _pid_alive(pid):
    if pid <= 0:
        return False
    if os.name != "posix":
        return True         # os.kill(pid, 0) would terminate it on Windows
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):   # no such pid (a damaged header's)
        return False
    except PermissionError:
        return True         # alive, but another user's
    return True


# -- opening a segment without the resource tracker -------------------------

_tracker_lock = threading.Lock()


@contextlib.contextmanager
def _tracker_disabled():
    # Before 3.13 SharedMemory always (un)registers; mute both for the
    # duration.  Another thread of this process creating a SharedMemory at
    # this very moment would be muted too: the lock only orders our own calls.
    with _tracker_lock:
        saved = resource_tracker.register, resource_tracker.unregister
        resource_tracker.register = resource_tracker.unregister = \
            lambda name, rtype: None
        try:
            yield
        finally:
            resource_tracker.register, resource_tracker.unregister = saved


def _open_untracked(name):
    """Attach to an existing segment; FileNotFoundError if there is none."""
    try:
        if sys.version_info >= (3, 13):
            return SharedMemory(name, track=False)
        with _tracker_disabled():
            return SharedMemory(name)
    except ValueError:      # mmap of a 0-byte segment: not sized yet, or creator died
        raise BookEmpty(f"shared memory {name!r} exists but is still empty: is an "
                        "orderbook starting?") from None


def _unlink_name(name):
    """Remove a segment by name alone (one that cannot even be mapped)."""
    from multiprocessing import shared_memory
    shared_memory._posixshmem.shm_unlink("/" + name)


def _create_untracked(name, size):
    """Create a new segment that no resource tracker will ever unlink."""
    if sys.version_info >= (3, 13):
        return SharedMemory(name, create=True, size=size, track=False)
    with _tracker_disabled():
        return SharedMemory(name, create=True, size=size)


def _unlink_untracked(shm):
    if sys.version_info >= (3, 13):
        shm.unlink()        # track=False: unlink leaves the tracker alone
    else:
        with _tracker_disabled():
            shm.unlink()


def _header_of(shm):
    """The header of a segment as a numpy record, or None if too small."""
    if shm.size < HEADER_DTYPE.itemsize:
        return None
    return np.frombuffer(bytes(shm.buf[:HEADER_DTYPE.itemsize]),
                         HEADER_DTYPE)[0]


def _claimed(h):
    """(writer pid or 0, is a valid book) for a segment's header record."""
    valid = h["magic"] == MAGIC and h["layout_version"] == LAYOUT_VERSION
    if valid or h["magic"] == b"":
        return int(h["writer_pid"]), valid
    return 0, False


def remove_stale(name) -> int | None:
    """Remove the segment `name` if its writer is dead or it is not a book.

    Returns the dead writer's pid (0 if the segment was not a valid book),
    or None if nothing was removed: no such segment, its writer is alive, or
    it is younger than CREATION_GRACE and not claimed yet (being created).
    """
    outcome, pid, valid = _remove_unless_live(check_name(name))
    if outcome != "removed":
        return None
    return pid if valid else 0


def _remove_unless_live(name, mine_is_stale=False):
    """Unlink segment `name` unless a live process claims it or it may still be
    being created.  Returns (outcome, pid, valid): outcome "absent", "alive"
    (pid claims it), "young" (unclaimed and younger than CREATION_GRACE) or
    "removed" (pid: its dead writer, valid: whether it was a book).
    `mine_is_stale`: a segment claimed by this very process counts as stale.
    """
    from multiprocessing import shared_memory
    try:
        fd = shared_memory._posixshmem.shm_open("/" + name, os.O_RDWR, 0o600)
    except FileNotFoundError:
        return "absent", 0, False
    try:
        # Removers take turns on this segment (see the module docstring).
        # Where flock is not supported on shared memory, the race is narrower
        # but not closed.
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        st = os.fstat(fd)
        if not _still_named(name, st):
            return "absent", 0, False   # removed or replaced meanwhile
        header = None
        if st.st_size >= HEADER_DTYPE.itemsize:
            with mmap.mmap(fd, HEADER_DTYPE.itemsize, prot=mmap.PROT_READ) as m:
                header = np.frombuffer(m[:HEADER_DTYPE.itemsize], HEADER_DTYPE)[0]
        if header is None and st.st_size > 0:
            pid, valid = 0, False       # too small to be a book
        elif header is None or (header["magic"] == b"" and int(header["writer_pid"]) == 0):
            # Unclaimed: being created, or left by a creator that died right there.
            if time.time() - st.st_ctime < CREATION_GRACE:
                return "young", 0, False
            pid, valid = 0, False
        else:
            pid, valid = _claimed(header)
        if _pid_alive(pid) and not (mine_is_stale and pid == os.getpid()):
            return "alive", pid, valid
        try:
            _unlink_name(name)
        except FileNotFoundError:
            return "absent", 0, False
        return "removed", pid, valid
    finally:
        os.close(fd)                    # releases the flock


def _still_named(name, st) -> bool:
    """Does `name` still refer to the segment whose fstat is `st`?"""
    from multiprocessing import shared_memory
    try:
        fd = shared_memory._posixshmem.shm_open("/" + name, os.O_RDONLY, 0o600)
    except FileNotFoundError:
        return False
    try:
        now = os.fstat(fd)
    finally:
        os.close(fd)
    return (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)


class SharedPriceBook:
    """Latest price per symbol in shared memory: one writer, many readers.

    ``SharedPriceBook(symbols, name)`` creates the book as its owner (the one
    writer); ``SharedPriceBook.attach(name)`` opens it as a reader.  The
    owner's writes must come from one thread at a time.
    """

    def __init__(self, symbols, name=None):
        symbols = _check_symbols(symbols)
        name = new_name() if name is None else check_name(name)
        nbytes = layout_nbytes(len(symbols))
        self.took_over_from = None
        tries = 0
        give_up = time.monotonic() + CREATION_GRACE + 5.0
        while True:
            try:
                shm = _create_untracked(name, nbytes)
                # Claim it at once: until our pid is in the header, a rival
                # creator or remove_stale() would take it for a dead one's.
                struct.pack_into("<q", shm.buf, _off(HEADER_DTYPE, "writer_pid"), os.getpid())
                break
            except FileExistsError:
                pass
            outcome, pid, valid = _remove_unless_live(name, mine_is_stale=True)
            if outcome == "alive":
                raise BookInUse(
                    f"book {name!r} is owned by running process {pid}: "
                    "stop it or choose another --shm-name")
            if outcome == "removed":
                self.took_over_from = pid if valid else 0
            if outcome == "young":
                # Another creator is between creating and claiming it (or died
                # there): it claims it within microseconds, or it grows old.
                time.sleep(0.01)
            else:
                tries += 1
            if tries >= 5 or time.monotonic() > give_up:
                raise BookError(f"could not create book {name!r}: the name keeps "
                                "being re-created by another process")

        self._setup(shm, symbols, owner=True)
        # Fill everything, then the magic last: a reader that sees the magic
        # sees a complete book (and a rival creator sees our pid meanwhile).
        now = time.time_ns()
        h = np.ndarray((), HEADER_DTYPE, buffer=shm.buf)
        h["writer_pid"] = os.getpid()
        h["layout_version"] = LAYOUT_VERSION
        h["n_symbols"] = len(symbols)
        h["record_size"] = RECORD_DTYPE.itemsize
        h["header_size"] = HEADER_DTYPE.itemsize
        h["created_ns"] = now
        h["heartbeat_ns"] = now
        h["feed_state"] = FEED_NEVER
        del h
        self._records["symbol"] = [s.encode("ascii") for s in symbols]
        self._records["price"] = np.nan
        self._buf[_H_MAGIC:_H_MAGIC + 8] = MAGIC

        # The only writer can keep the counters in Python instead of reading
        # them back from shared memory on every update.
        self._versions = [0] * len(symbols)
        self._sym_updates = [0] * len(symbols)
        self._last_seq = 0
        self._updates = 0
        self._gaps = 0

    @classmethod
    def attach(cls, name, symbols=None) -> "SharedPriceBook":
        """Open an existing book as a reader.  Never registers the segment
        with this process's resource tracker (see the module docstring)."""
        try:
            shm = _open_untracked(check_name(name))
        except FileNotFoundError:
            raise BookNotFound(f"no book named {name!r} in shared memory: "
                               "is the orderbook running?") from None
        except OSError as exc:      # e.g. another user's segment of that name
            raise BookError(f"cannot open shared memory {name!r}: {exc.strerror or exc}; "
                            "choose another --shm-name") from None
        try:
            found = cls._validate(shm, name)
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

    @staticmethod
    def _validate(shm, name):
        h = _header_of(shm)
        if h is None:
            raise LayoutMismatch(f"shared memory {name!r} is {shm.size} "
                                 "bytes, too small for a book header")
        if h["magic"] == b"":
            raise BookNotFound(f"shared memory {name!r} exists but is not "
                               "initialised: its creator is starting up or "
                               "died; retry, or run remove_stale()")
        if h["magic"] != MAGIC:
            raise LayoutMismatch(f"shared memory {name!r} is not a price "
                                 f"book (magic {bytes(h['magic'])!r}, "
                                 f"expected {MAGIC!r})")
        checks = [("layout_version", LAYOUT_VERSION),
                  ("record_size", RECORD_DTYPE.itemsize),
                  ("header_size", HEADER_DTYPE.itemsize)]
        for field, want in checks:
            if int(h[field]) != want:
                raise LayoutMismatch(
                    f"book {name!r} has {field} {int(h[field])}, this code "
                    f"expects {want}: run the same hftlab version everywhere")
        n = int(h["n_symbols"])
        if not 1 <= n <= MAX_SYMBOLS or shm.size < layout_nbytes(n):
            raise LayoutMismatch(f"book {name!r} claims {n} symbols but the "
                                 f"segment is {shm.size} bytes")
        rec = np.frombuffer(shm.buf, RECORD_DTYPE, n, HEADER_DTYPE.itemsize)
        symbols = tuple(s.decode("ascii", "replace") for s in rec["symbol"])
        del rec
        return symbols

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
        # the price of every record, from a snapshot's bytes
        self._prices = struct.Struct("<" + f"{_R_DATA}xd{rsize - _R_DATA - 8}x" * len(symbols))
        self._writable = owner
        self._closed = False
        self._unlinked = False

    # -- writer --------------------------------------------------------------

    def _check_writer(self):
        if self._closed:
            raise BookError(f"book {self.name!r} is closed")
        if not self.owner:
            raise BookError(f"book {self.name!r} is attached read-only: only "
                            "the orderbook process that created it writes")

    def update(self, symbol, price, seq=None, ts_ns=None) -> None:
        """Set `symbol`'s price.  seq defaults to the last seq + 1, ts_ns to
        now.  seq must be >= 1 (0 means "no price yet")."""
        self._check_writer()
        i = self.index(symbol)
        if seq is None:
            seq = self._last_seq + 1
        elif seq < 1:
            raise ValueError(f"seq must be >= 1, not {seq}")
        if ts_ns is None:
            ts_ns = time.time_ns()
        self.update_index(i, float(price), seq, ts_ns)

    def update_index(self, i, price, seq, ts_ns) -> None:
        """The hot path: set record i (seq >= 1), no defaults, no lookups."""
        if not self._writable:
            self._check_writer()
        u = self._sym_updates[i] + 1
        # Packed first: a bad argument raises here, before the record is
        # opened (an odd version left behind would stall every reader).
        data = _DATA.pack(price, seq, ts_ns, time.time_ns(), u)
        u64 = self._u64
        w = self._vword[i]
        v = self._versions[i] + 1
        u64[w] = v                      # odd: write in progress
        self._data[i][:] = data
        u64[w] = v + 1                  # even: done
        self._versions[i] = v + 1
        self._sym_updates[i] = u
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

    # -- readers (the owner may read too) ------------------------------------

    def index(self, symbol) -> int:
        try:
            return self._index[symbol]
        except KeyError:
            raise KeyError(f"unknown symbol {symbol!r}: book {self.name!r} "
                           f"has {', '.join(self.symbols)}") from None

    def _retry(self, tries, what, wait):
        self.retries += 1
        if tries >= (MAX_RETRIES if wait else _SPIN):
            pid = self.header()["writer_pid"]
            alive = _pid_alive(pid)
            state = ("is stopped or stalled in mid-write; retry later" if alive else
                     "died in mid-write; restart the orderbook")
            raise BookBusy(f"{what} of book {self.name!r} stayed in mid-write "
                           f"over {tries} tries: its writer (pid {pid}) {state}", alive)
        if tries > _SPIN:
            time.sleep(_BACKOFF_S)

    def read(self, symbol, wait=True) -> Quote | None:
        """`symbol`'s latest quote, or None if it has no usable price.

        No usable price: none written yet, or one that is not a finite number
        above 0 (see the module docstring).  A record in mid-write is retried
        for about a second, or only a few microseconds with ``wait=False``,
        then BookBusy is raised."""
        i = self.index(symbol)
        if self._closed:
            raise BookError(f"book {self.name!r} is closed")
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

    def snapshot(self, wait=True) -> np.ndarray:
        """A copy of all records, taken while no record was being written,
        so it is consistent across symbols too.

        A price that is not usable (see read()) is NaN in the copy.  `wait`
        as for read()."""
        if self._closed:
            raise BookError(f"book {self.name!r} is closed")
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
                records = np.frombuffer(bytearray(raw), RECORD_DTYPE)
                # Plain floats and a comprehension: about 0.3 us for a few
                # symbols, where numpy's comparisons would cost 5 us.
                bad = [i for i, p in enumerate(self._prices.unpack(raw))
                       if not 0.0 < p < _INF]      # NaN fails too
                if bad:
                    records["price"][bad] = np.nan
                return records
            tries += 1
            self._retry(tries, "snapshot", wait)

    def quotes(self, wait=True) -> dict:
        """symbol -> Quote, or None for no usable price; from one snapshot."""
        out = {}
        for s, (_, _, price, seq, ts_ns, written_ns, updates) in zip(
                self.symbols, self.snapshot(wait).tolist()):
            out[s] = None if seq == 0 or price != price else Quote(
                s, price, seq, ts_ns, written_ns, updates)
        return out

    def header(self) -> dict:
        """The header as plain Python values.

        The header has no version counter; its fields are independent
        values, and two equal consecutive copies are taken as consistent.
        """
        if self._closed:
            raise BookError(f"book {self.name!r} is closed")
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
        return _pid_alive(self.header()["writer_pid"])

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
            _unlink_untracked(self._shm)

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


class Follower:
    """A reader that follows the book of one name across orderbook restarts.

    ``follower.book()`` is the attached book, or None while there is no live one:
    no segment yet, one still being created, or one whose writer has died (a stale
    book is not attached: a restarted orderbook will replace it).  It looks again at
    most every `interval` seconds, so it is cheap to call in a polling loop.  A reader
    whose read fails because the writer died in mid-write (BookBusy with writer_alive
    false) may call `lost()`, and the next `book()` tries again; it need not: the next
    look notices the dead writer by itself.  `attaches` counts the books attached so far, so a
    caller can tell a new book from the old one.  LayoutMismatch (a book with other
    symbols) is not waited out: it is raised.
    """

    def __init__(self, name, symbols=None, interval=0.5):
        self.name = check_name(name)
        self.symbols = None if symbols is None else tuple(symbols)
        self.interval = interval
        self.attaches = 0
        self._book = None
        self._next_look = 0.0

    def book(self):
        now = time.monotonic()
        if now < self._next_look:
            return self._book
        self._next_look = now + self.interval
        if self._book is not None and not self._book.writer_alive():
            self.lost()
        if self._book is None:
            try:
                book = SharedPriceBook.attach(self.name, self.symbols)
            except BookNotFound:
                return None
            if not book.writer_alive():
                book.close()
                return None
            self._book = book
            self.attaches += 1
        return self._book

    @property
    def current(self):
        """The book attached now (or None), without looking again."""
        return self._book

    def lost(self) -> None:
        """Drop the current book (its writer died); the next book() looks again at once."""
        if self._book is not None:
            self._book.close()
            self._book = None
        self._next_look = 0.0

    def close(self) -> None:
        self.lost()
