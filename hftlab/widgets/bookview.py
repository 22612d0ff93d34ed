"""The book view: a live table of the shared-memory book, read as any reader would.

`FollowedBook` attaches to the book by name through `hftlab.book.Follower` (a reader,
never registered with the resource tracker), so it finds the book again when the
orderbook is restarted; `BookView` shows one row per symbol (price, change, seq, age,
stale) and the book's counters.
"""

from __future__ import annotations

import html
import threading
import time
from typing import NamedTuple

import ipywidgets as W

from hftlab import book
from hftlab.widgets.live import Live
from hftlab.widgets.view import MISSING, View, book_name, config_of, html_table, styled, text_table

__all__ = ["FollowedBook", "BookView", "Row"]


class FollowedBook:
    """The book of one name, followed across orderbook restarts (`hftlab.book.Follower`).

    `quotes()` and `header()` are None while there is no live book (the orderbook is not
    running, or its writer died in mid-write: the next read looks again).
    """

    def __init__(self, source):
        self.name = book_name(source)
        self.follower = book.Follower(self.name, interval=0.5)
        self._lock = threading.Lock()  # a view's thread and the notebook may both read

    def _read(self, what):
        with self._lock:
            price_book = self.follower.look()
            if price_book is None:
                return None
            try:
                return what(price_book)
            except book.BookError:  # its writer died in mid-write: look again next time
                self.follower.lost()
                return None

    def quotes(self) -> dict | None:
        """symbol -> `hftlab.book.Quote` (None for a symbol without a price yet)."""
        return self._read(lambda price_book: price_book.quotes())

    def header(self) -> dict | None:
        """The book's header fields, and ``writer_alive``."""
        return self._read(lambda price_book: {**price_book.header(), "writer_alive": price_book.writer_alive()})

    def close(self) -> None:
        with self._lock:
            self.follower.close()


class Row(NamedTuple):
    symbol: str
    price: float | None
    change: float | None  # since the previous update this view saw
    seq: int
    age_s: float | None  # since the orderbook wrote it
    stale: bool


class BookView(View):
    """A live table of the shared-memory book: one row per symbol and the book's counters.

    A price is *stale* when its last update is older than `stale_after` seconds, or the
    feed is DOWN, or the book's writer is gone. The change column compares with the
    previous update this view saw: the book keeps only the latest price, and a reader that
    looks 4 times a second misses the ticks in between (conflation, as the strategy does).
    `source` is a Config, a launcher or a book's name (see `hftlab.widgets.view`).
    """

    HEADER = ("symbol", "price", "change", "seq", "age", "stale")

    def __init__(self, source, interval: float = 0.25, stale_after: float | None = None,
                 start: bool = True):
        config = config_of(source)
        if stale_after is None:
            stale_after = 3 * max(config.tick_interval, config.heartbeat_interval) if config else 3.0
        self.stale_after = stale_after
        self.reader = FollowedBook(source)
        self._last = {}  # symbol -> (seq, price) last seen
        self._change = {}
        self.rows: list = []
        self.header: dict | None = None
        self.table = styled(W.HTML(), "hftlab-book")
        self.counters = styled(W.HTML(), "hftlab-book-counters")
        self.live = Live(self.refresh, interval, "book view", on_stop=self.reader.close)
        self.widget = W.VBox([W.HTML(f"<b>Shared-memory book</b> <code>{self.reader.name}</code>"),
                              self.table, self.counters, self.live.box])
        self.refresh()
        if start:
            self.start()

    def rows_now(self) -> list:
        """Read the book once; returns the rows (and keeps them, with the header)."""
        quotes, header = self.reader.quotes(), self.reader.header()
        if quotes is None or header is None:
            self.header = None
            self.rows = [Row(s, None, None, 0, None, True) for s in self._last]
            return self.rows
        self.header = header
        feed_ok = header["feed_state"] == book.FEED_UP and header["writer_alive"]
        now = time.time_ns()
        rows = []
        for symbol, q in quotes.items():
            if q is None:
                rows.append(Row(symbol, None, None, 0, None, True))
                continue
            seen = self._last.get(symbol)
            if seen is not None and seen[0] != q.seq:
                self._change[symbol] = q.price - seen[1]
            self._last[symbol] = (q.seq, q.price)
            age = (now - q.written_ns) / 1e9
            rows.append(Row(symbol, q.price, self._change.get(symbol), q.seq, age,
                            age > self.stale_after or not feed_ok))
        self.rows = rows
        return rows

    def _cells(self, row: Row) -> tuple:
        if row.price is None:
            return (row.symbol, MISSING, MISSING, MISSING, MISSING, "yes")
        change = MISSING if row.change is None else f"{row.change:+.2f}"
        return (row.symbol, f"{row.price:.2f}", change, str(row.seq), f"{row.age_s:.2f}s",
                "yes" if row.stale else "no")

    def _counters(self) -> str:
        h = self.header
        if h is None:
            return f"no book {self.reader.name!r} (is the orderbook running?)"
        state = book.FEED_STATES.get(h["feed_state"], str(h["feed_state"]))
        return (f"feed {state}  updates {h['updates']}  gaps {h['gaps']}  last seq {h['last_seq']}"
                f"  writer pid {h['writer_pid']}")

    def refresh(self) -> None:
        self.rows_now()
        rows = [self._cells(r) for r in self.rows]
        self.table.value = html_table(self.HEADER, [
            [c if r.price is None or i != 2 or r.change is None else
             f"<span style='color:{'green' if r.change >= 0 else 'crimson'}'>{c}</span>"
             for i, c in enumerate(cells)] for cells, r in zip(rows, self.rows)])
        self.counters.value = f"<code>{html.escape(self._counters())}</code>"

    def text(self) -> str:
        """The table and counters as plain text, read from the book now."""
        self.rows_now()
        return (f"book {self.reader.name}: {self._counters()}\n"
                + text_table(self.HEADER, [self._cells(r) for r in self.rows]))

    def describe(self) -> str:
        return (f"BookView of book {self.reader.name}: {', '.join(self.HEADER)} per symbol, "
                f"refreshed every {self.live.interval:g} s (live in JupyterLab; .text() for a snapshot)")

    def close(self) -> None:
        self.live.stop()
        self.reader.close()
