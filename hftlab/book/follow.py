"""Following a book across orderbook restarts: `Follower`, the one read path of every reader.

A book lives as long as its orderbook.  When the orderbook dies and is
restarted, its successor makes a new segment under the same name (taking the
dead one's over, see `hftlab.book.stale`), while a reader that is still mapped
keeps reading the old, unlinked segment, whose prices never change again.  A
reader that must outlive orderbooks (the strategy, the order manager, a
notebook view) therefore follows the book by name: it looks for a live book
every so often, drops a book whose writer has died, and attaches to the next.

Every such reader reads through a `Follower`, so that "the writer died in the
middle of an update: drop the book and look again" is written once.  Its reads
never wait: a record in mid-write is spun on for tens of microseconds at most
(``wait=False``, see `hftlab.book.seqlock`), so a reader in an event loop keeps
serving its sockets.  They all answer the same way:

- None (or nothing new): there is no live book to read now;
- BookBusy: the live writer is stopped or stalled in mid-write; try later;
- LayoutMismatch (a segment of that name with another layout or other
  symbols): raised, since waiting will not change it.
"""

from __future__ import annotations

import math
import time

import numpy as np

from hftlab.book.layout import BookBusy, BookError, BookNotFound, Quote, check_name
from hftlab.book.seqlock import SharedPriceBook

__all__ = ["Follower"]

_INF = math.inf


class Follower:
    """A reader that follows the book of one name across orderbook restarts.

    ``follower.look()`` is the attached book, or None while there is no live one:
    no segment yet, one still being created, or one whose writer has died (a stale
    book is not attached: a restarted orderbook will replace it).  It looks again at
    most every `interval` seconds, so it is cheap to call in a polling loop.  A reader
    whose read fails because the writer died in mid-write (BookBusy with writer_alive
    false) may call `lost()`, and the next `look()` tries again; it need not: the next
    look notices the dead writer by itself.  `attaches` counts the books attached so far, so a
    caller can tell a new book from the old one.  LayoutMismatch (a book with other
    symbols) is not waited out: it is raised.

    The read methods (`latest`, `snapshot`, `quotes`, `header`, `new_quotes`) do all of
    that for the caller: see the module docstring for what they answer.
    """

    def __init__(self, name, symbols=None, interval=0.5):
        self.name = check_name(name)
        self.symbols = None if symbols is None else tuple(symbols)
        self.interval = interval
        self.attaches = 0
        self._book = None
        self._next_look = 0.0
        self._seen = None  # each record's update count at the last new_quotes()
        self.error = None  # why the last look found a segment it could not read (a BookError)

    def look(self):
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
                self.error = None
                return None
            except BookError as exc:
                self.error = exc
                raise
            self.error = None
            if not book.writer_alive():
                book.close()
                return None
            self._book = book
            self.attaches += 1
            self._seen = None
        return self._book

    @property
    def current(self):
        """The book attached now (or None), without looking again."""
        return self._book

    def lost(self) -> None:
        """Drop the current book (its writer died); the next look() looks again at once."""
        if self._book is not None:
            self._book.close()
            self._book = None
        self._next_look = 0.0

    def close(self) -> None:
        self.lost()

    # -- reading: every reader's one path ----------------------------------------------

    def _look(self, what):
        """what(book) on the live book, or None if there is none or its writer died in
        mid-write (then the book is dropped, and the next look attaches the next one)."""
        book = self.look()
        if book is None:
            return None
        try:
            return what(book)
        except BookBusy as exc:
            if exc.writer_alive:
                raise
            self.lost()
            return None

    def latest(self, symbol) -> Quote | None:
        """`symbol`'s latest quote, without waiting (SharedPriceBook.read with wait=False).

        None if there is no live book, the book does not hold `symbol`, or `symbol` has
        no usable price yet.  BookBusy if its record is in mid-write by a live writer."""
        return self._look(lambda book: book.read(symbol, wait=False)
                          if symbol in book.symbols else None)

    def snapshot(self) -> np.ndarray | None:
        """A consistent copy of all records (SharedPriceBook.snapshot, without waiting),
        or None if there is no live book.  BookBusy as for latest()."""
        return self._look(lambda book: book.snapshot(wait=False))

    def quotes(self) -> dict | None:
        """symbol -> Quote (None for no usable price), from one snapshot; None if there
        is no live book.  BookBusy as for latest()."""
        return self._look(lambda book: book.quotes(wait=False))

    def header(self) -> dict | None:
        """The live book's header (SharedPriceBook.header), or None if there is none."""
        return self._look(SharedPriceBook.header)

    def new_quotes(self) -> list:
        """[(quote, missed), ...] for each symbol updated since the last call, from one
        snapshot; `missed` counts the updates this reader never saw (the book keeps only
        the latest price: that is conflation).

        The first call on a book, and the first after a new book was attached, only
        learns what is in it and returns []; so does a call with no live book.  A symbol
        whose new price is not usable is left out.  BookBusy as for latest()."""
        records = self._look(lambda book: book.records(wait=False))
        if records is None:
            return []
        seen, self._seen = self._seen, [r[4] for r in records]
        if seen is None:
            return []
        out = []
        symbols = self._book.symbols
        for i, (price, seq, ts_ns, written_ns, n) in enumerate(records):
            if n != seen[i] and 0.0 < price < _INF:  # updated, and a usable price (not NaN)
                out.append((Quote(symbols[i], price, seq, ts_ns, written_ns, n), max(n - seen[i] - 1, 0)))
        return out
