"""Opening a book's segment: creating it (taking a dead writer's name over) and checking
that a segment someone else made is a book this code can read.

Opening and creating go through `hftlab.book.untracked`: no resource tracker may ever
unlink a book.  A creator that finds the name taken asks `hftlab.book.stale` whether
it may take it over: never from a live writer, and never from a creator that is still
between creating its segment and claiming it with its pid, which it does at once.
A reader checks the header (magic, layout version, sizes, symbol count) before it
trusts a single offset, since any process of the same user may have written it.
`hftlab.book.seqlock`'s `SharedPriceBook` does the rest.
"""

from __future__ import annotations

import os
import struct
import time

import numpy as np

from hftlab.book import stale
from hftlab.book.layout import (FEED_NEVER, HEADER_DTYPE, LAYOUT_VERSION, MAGIC, MAX_SYMBOLS, RECORD_DTYPE,
                                BookError, BookInUse, BookNotFound, LayoutMismatch, NotYours, check_name,
                                field_offset, layout_nbytes)
from hftlab.book.untracked import create_untracked, open_untracked

__all__ = ["create_segment", "fill_book", "open_segment", "book_symbols", "header_of"]


def create_segment(name: str, nbytes: int) -> tuple:
    """(a new segment `name` of `nbytes`, claimed with this process's pid, took_over_from).

    took_over_from is None, or the pid of the dead writer whose stale book was removed
    to make room (0 if what was there was not a book).  BookInUse if a live process
    owns the name; NotYours if another user's segment has it; BookError if the name
    keeps being re-created by another process."""
    took_over_from = None
    tries = 0
    give_up = time.monotonic() + stale.CREATION_GRACE + 5.0
    while True:
        try:
            shm = create_untracked(name, nbytes)
            # Claim it at once: until our pid is in the header, a rival
            # creator or remove_stale() would take it for a dead one's.
            struct.pack_into("<q", shm.buf, field_offset(HEADER_DTYPE, "writer_pid"), os.getpid())
            return shm, took_over_from
        except FileExistsError:
            pass
        outcome, pid, valid = stale.remove_unless_live(name, mine_is_stale=True)
        if outcome == "foreign":
            raise NotYours(f"book {name!r} belongs to {stale.owner_name(pid)}, not to you: choose "
                           "another --shm-name (hftlab run --free-ports picks a fresh one)")
        if outcome == "alive":
            raise BookInUse(
                f"book {name!r} is owned by running process {pid}: "
                "stop it or choose another --shm-name")
        if outcome == "removed":
            took_over_from = pid if valid else 0
        if outcome == "young":
            # Another creator is between creating and claiming it (or died
            # there): it claims it within microseconds, or it grows old.
            time.sleep(0.01)
        else:
            tries += 1
        if tries >= 5 or time.monotonic() > give_up:
            raise BookError(f"could not create book {name!r}: the name keeps "
                            "being re-created by another process")


def fill_book(shm, symbols) -> None:
    """Make the new segment `shm` a book of `symbols`: the header, each record's symbol and a
    NaN price ("no price yet"), then the magic last, so that a reader that sees the magic
    sees a complete book (and a rival creator sees our pid meanwhile)."""
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
    records = np.ndarray((len(symbols),), RECORD_DTYPE, buffer=shm.buf, offset=HEADER_DTYPE.itemsize)
    records["symbol"] = [s.encode("ascii") for s in symbols]
    records["price"] = np.nan
    del records
    at = field_offset(HEADER_DTYPE, "magic")
    shm.buf[at:at + len(MAGIC)] = MAGIC


def open_segment(name: str):
    """Open the existing segment `name` (untracked) for a reader; BookNotFound if there
    is none, BookError if it cannot be opened."""
    try:
        return open_untracked(check_name(name))
    except FileNotFoundError:
        raise BookNotFound(f"no book named {name!r} in shared memory: "
                           "is the orderbook running?") from None
    except PermissionError:
        raise NotYours(f"book {name!r} belongs to {stale.owner_name(stale.segment_owner(name))}, not to "
                       "you: choose another --shm-name") from None
    except OSError as exc:
        raise BookError(f"cannot open shared memory {name!r}: {exc.strerror or exc}; "
                        "choose another --shm-name") from None


def header_of(shm):
    """The header of a segment as a numpy record, or None if too small."""
    if shm.size < HEADER_DTYPE.itemsize:
        return None
    return np.frombuffer(bytes(shm.buf[:HEADER_DTYPE.itemsize]),
                         HEADER_DTYPE)[0]


def book_symbols(shm, name) -> tuple:
    """The symbols of the book in `shm`, after checking that it is a complete book of
    this layout (BookNotFound while its creator is still filling it, LayoutMismatch for
    anything else)."""
    h = header_of(shm)
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
