"""The book's bytes: what one shared-memory segment holds, and the names around it.

Layout (little-endian, every 8-byte field 8-byte aligned, no padding)::

    offset 0            HEADER_DTYPE, one record (104 bytes)
    offset header_size  RECORD_DTYPE * n_symbols (56 bytes each)

The header says what the segment is (magic, layout_version, n_symbols,
record_size, header_size), who writes it (writer_pid, created_ns,
heartbeat_ns), the state of the feed (feed_state, session, last_seq, gaps)
a total update count, and ``sleepers``: not 0 while a reader sleeps on the
doorbell and wants to be rung after the next write (`hftlab.book.doorbell`;
any reader may set it, the writer clears it when it rings).  A record holds one symbol's latest price with the
feed seq and timestamps of the tick that set it; seq 0 means "no price yet"
(price is NaN until then).  ``version`` is the record's seqlock counter (see
`hftlab.book.seqlock`).

The 8-byte fields are 8-byte aligned so that each can be stored and loaded with one
8-byte machine instruction, which is atomic on x86-64 and ARM64.  A field
added later (a new header word) changes LAYOUT_VERSION, so that a reader of
the old layout refuses the new book instead of misreading it.

Symbols follow the wire's rule (`hftlab.protocol.SYMBOL_RE`): what the book
holds is what a PRICE line can carry, and it fits the 8-byte symbol field.
Book names are at most 30 characters because macOS allows 31 including the
leading slash.  POSIX only (Linux, macOS).
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import struct
from typing import NamedTuple

import numpy as np

from hftlab import protocol

__all__ = [
    "MAGIC", "LAYOUT_VERSION", "MAX_SYMBOLS", "MAX_NAME_LEN",
    "FEED_NEVER", "FEED_UP", "FEED_DOWN", "FEED_STATES", "HEADER_DTYPE", "RECORD_DTYPE", "field_offset",
    "header_word", "HEADER_STRUCT", "RECORD_DATA", "RECORD_DATA_OFFSET",
    "BookError", "BookNotFound", "BookEmpty", "BookInUse", "NotYours", "LayoutMismatch", "BookBusy",
    "Quote", "new_name", "check_name", "check_symbols", "layout_nbytes", "pid_alive", "user_name",
]

MAGIC = b"HFTBOOK1"
LAYOUT_VERSION = 2  # 2: the header's "sleepers" word (the doorbell)
MAX_SYMBOLS = 64
MAX_NAME_LEN = 30
FEED_NEVER, FEED_UP, FEED_DOWN = 0, 1, 2
# What a person is shown for each feed state (the dashboard, `hftlab status`).
FEED_STATES = {FEED_NEVER: "never connected", FEED_UP: "UP", FEED_DOWN: "DOWN"}

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
    ("sleepers", "<u8"),
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


def field_offset(dtype, field) -> int:
    """The byte offset of `field` in a header or record."""
    return dtype.fields[field][1]


def header_word(field) -> int:
    """The index of an 8-byte header field among the header's 8-byte words (for a
    memoryview cast to "Q": one 8-byte load or store)."""
    return field_offset(HEADER_DTYPE, field) // 8


# The same bytes as struct formats, for the hot paths (one pack or unpack instead of NumPy's
# many small calls): the header whole, and a record after its version word.
HEADER_STRUCT = struct.Struct("<8s4I4q16s4Q")
RECORD_DATA = struct.Struct("<dQqqQ")           # price, seq, ts_ns, written_ns, updates
RECORD_DATA_OFFSET = field_offset(RECORD_DTYPE, "price")
assert HEADER_STRUCT.size == HEADER_DTYPE.itemsize and field_offset(RECORD_DTYPE, "version") == 0
assert [field_offset(RECORD_DTYPE, f) for f in ("price", "seq", "ts_ns", "written_ns", "updates")] == \
    [RECORD_DATA_OFFSET + 8 * k for k in range(5)]
assert RECORD_DATA_OFFSET + RECORD_DATA.size == RECORD_DTYPE.itemsize


class BookError(RuntimeError):
    """Something is wrong with the shared price book."""


class BookNotFound(BookError):
    """No book of that name exists (yet)."""


class BookEmpty(BookNotFound):
    """The segment exists but has no size yet: its creator is between creating it and
    sizing it (microseconds), or died right there."""


class BookInUse(BookError):
    """The name belongs to a book whose writer is still running."""


class NotYours(BookError):
    """The segment under that name belongs to another user: never read, taken over or removed.
    (A course server has many users, and every user's books are in the one /dev/shm.)"""


class LayoutMismatch(BookError):
    """The segment is not a book of the layout (or symbols) expected."""


class BookBusy(BookError):
    """A record stayed in mid-write for the whole read: its writer is stopped,
    stalled or dead in the middle of an update.  ``writer_alive`` says which."""

    def __init__(self, message, writer_alive):
        super().__init__(message)
        self.writer_alive = writer_alive


class Quote(NamedTuple):
    """One symbol's latest price, as read from its record."""
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


def check_symbols(symbols) -> tuple:
    """The symbols as a tuple, if a book can hold them; ValueError saying why not."""
    if isinstance(symbols, (str, bytes)):
        raise ValueError("symbols must be a sequence of strings, not one "
                         f"string: {symbols!r}")
    symbols = tuple(symbols)
    if not 1 <= len(symbols) <= MAX_SYMBOLS:
        raise ValueError(f"a book holds 1..{MAX_SYMBOLS} symbols, "
                         f"got {len(symbols)}")
    for s in symbols:
        if not protocol.is_symbol(s):
            raise ValueError(f"bad symbol {s!r}: a symbol {protocol.SYMBOL_RULE}")
    if len(set(symbols)) != len(symbols):
        raise ValueError(f"duplicate symbols in {symbols}")
    return symbols


def user_name(uid) -> str:
    """How a message names a user: "alice (uid 1001)", or "uid 1001" for a uid with no name."""
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def pid_alive(pid) -> bool:
    """Is process `pid` (a header's writer_pid) running?  False for 0 and below."""
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
