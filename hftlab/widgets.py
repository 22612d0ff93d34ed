"""Live views of the running system for notebooks: the book, a price chart, a wire tap, a dashboard.

Every view reads the system from the outside, the way any other process would: the book
through `SharedPriceBook.attach` (a reader, never registered with the resource tracker),
the feeds and the order port through plain TCP sockets and `hftlab.protocol`. Nothing here
reaches into the processes' Python objects; they have none to share.

- `BookView`: one row per symbol (price, change, seq, age, stale) and the book's counters.
- `PriceChart`: the recent prices of each symbol and the strategy's moving averages, as a
  PNG drawn by matplotlib's Agg canvas (a `Figure`, no pyplot: no global state in threads).
- `WireTap`: one message at a time, its raw bytes (hex and text) beside its decoded fields.
- `Dashboard`: book + chart + news + order blotter + one row per process with start, stop,
  kill and restart buttons (the `Launcher`'s own API).

Live updates run in a background thread (`Live`) so the learner can keep working. Each has
a stop button and stops itself after `DURATION` seconds; with ``HFTLAB_HEADLESS=1`` (the
test runs) it stops after `HEADLESS_FRAMES` frames. A background thread never prints: an
error ends the loop and is shown in the loop's status line (and kept in ``.error``). While
a loop runs, it alone sets its widgets' values: values set from two threads can reach the
browser out of order, and the page then keeps showing the older one.

Every view has a plain-text form, ``.text()``, for static viewers and for tests. Displayed
in a notebook, a view's ``text/plain`` is a short stable description (live numbers in a
saved notebook would be stale the moment it is saved, and nbval compares that text).

This is the only module of hftlab that imports ipywidgets.
"""

from __future__ import annotations

import html
import io
import os
import re
import select
import signal
import socket
import threading
import time
from collections import deque
from typing import NamedTuple

import ipywidgets as W
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hftlab import book as _book
from hftlab import process, protocol, rules
from hftlab.launcher import NAMES, Launcher

DURATION = 180.0  # seconds a live view runs in JupyterLab before it stops itself
HEADLESS_FRAMES = 8  # frames a live view draws when HFTLAB_HEADLESS=1, then stops
MISSING = "-"


def headless() -> bool:
    """True in test runs (HFTLAB_HEADLESS=1): nobody watches, so loops are bounded."""
    return os.environ.get("HFTLAB_HEADLESS", "") not in ("", "0")


def _css(widget, *classes):
    for c in classes:
        widget.add_class(c)
    return widget


def _table(header, rows) -> str:
    """An HTML table: the first column (a name) left-aligned, the others (numbers) right."""
    align = lambda i: "left" if i == 0 else "right"
    th = "".join(f"<th style='padding:1px 8px;text-align:{align(i)}'>{html.escape(h)}</th>"
                 for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(f"<td style='padding:1px 8px;text-align:{align(i)};font-family:monospace;"
                         "white-space:nowrap'>"
                         f"{cell}</td>" for i, cell in enumerate(row)) + "</tr>" for row in rows)
    return f"<table style='border-collapse:collapse'><tr>{th}</tr>{body}</table>"


def _plain_table(header, rows) -> str:
    """Rows of strings as aligned plain text (the same table the widget shows)."""
    cols = list(zip(header, *rows))
    widths = [max(len(str(c)) for c in col) for col in cols]
    lines = ["  ".join(str(c).rjust(w) for c, w in zip(line, widths)) for line in [header, *rows]]
    return "\n".join(line.rstrip() for line in lines)


# -- the live loop ------------------------------------------------------------------------


class Live:
    """Call `step` every `interval` seconds in a daemon thread, until stopped.

    The loop ends by itself after `duration` seconds (or `HEADLESS_FRAMES` frames when
    headless), when the stop button is pressed, when `stop()` is called, or when `step`
    raises (the error is kept in `.error` and shown in the status line, never printed).
    """

    def __init__(self, step, interval: float, name: str = "live view", on_stop=None):
        self.step, self.interval, self.name, self.on_stop = step, interval, name, on_stop
        self.frames = 0
        self.error = None
        self._thread = None
        self._stopping = threading.Event()
        self.button = W.Button(description="stop", icon="stop", button_style="warning",
                               tooltip=f"stop the {name}", layout=W.Layout(width="80px"))
        self.button.on_click(lambda _: self.stop())
        self.status = W.HTML()
        self.box = W.HBox([self.button, self.status])

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, duration: float | None = None, frames: int | None = None) -> "Live":
        """Run for `duration` seconds (default DURATION), at most `frames` frames."""
        if self.running:
            return self
        if frames is None and headless():
            frames = HEADLESS_FRAMES
        duration = DURATION if duration is None else duration
        self._stopping.clear()
        self.error = None
        self.frames = 0
        self.button.disabled = False
        self.status.value = f"live for {duration:g} s" + (f" or {frames} frames" if frames else "")
        self._thread = threading.Thread(target=self._run, args=(duration, frames),
                                        name=f"hftlab {self.name}", daemon=True)
        self._thread.start()
        return self

    def _run(self, duration, frames) -> None:
        end = time.monotonic() + duration
        why = f"stopped after {duration:g} s"
        while True:
            if self._stopping.is_set():
                why = "stopped"
                break
            if frames is not None and self.frames >= frames:
                why = f"stopped after {frames} frames (headless)"
                break
            if time.monotonic() >= end:
                break
            began = time.monotonic()
            try:
                self.step()
            except Exception as exc:  # shown, not printed: this is a background thread
                self.error = exc
                why = f"stopped by an error: {html.escape(str(exc))}"
                break
            self.frames += 1
            self._stopping.wait(max(0.0, self.interval - (time.monotonic() - began)))
        self.button.disabled = True
        self.status.value = f"<i>{why} ({self.frames} frames)</i>"
        if self.on_stop is not None:
            try:
                self.on_stop()
            except Exception as exc:
                self.error = self.error or exc

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the loop to end and wait for it (at most `timeout` seconds)."""
        self._stopping.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the loop ends by itself; True if it has ended."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running


class _View:
    """What every view shares: a widget, a plain-text form, a live loop, close()."""

    widget: W.Widget
    live: Live

    def text(self) -> str:
        raise NotImplementedError

    def describe(self) -> str:
        """A short stable description (the text a saved notebook shows)."""
        raise NotImplementedError

    def start(self, duration: float | None = None, frames: int | None = None):
        self.live.start(duration, frames)
        return self

    def stop(self) -> None:
        self.live.stop()

    def _repr_mimebundle_(self, **kwargs):
        bundle = self.widget._repr_mimebundle_(**kwargs)
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        data["text/plain"] = self.describe()
        return bundle

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(self.text())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# -- reading the book --------------------------------------------------------------------


def _book_name(source) -> str:
    if isinstance(source, Launcher):
        return source.config.shm_name
    return getattr(source, "shm_name", source)


class BookReader:
    """A reader attached to the book by name; re-attaches when the orderbook is restarted.

    `quotes()` is None while there is no book (the orderbook is not running).
    """

    def __init__(self, source):
        self.name = _book_name(source)
        self.follower = _book.Follower(self.name, interval=0.5)
        self._lock = threading.RLock()  # a view's thread and the notebook may both read

    @property
    def book(self):
        return self.follower.current

    @property
    def attaches(self) -> int:
        return self.follower.attaches

    def ensure(self):
        with self._lock:
            return self.follower.book()

    def _read(self, what):
        with self._lock:
            book = self.follower.book()
            if book is None:
                return None
            try:
                return what(book)
            except _book.BookError:  # its writer died in mid-write: look again next time
                self.follower.lost()
                return None

    def quotes(self) -> dict | None:
        return self._read(lambda book: book.quotes())

    def header(self) -> dict | None:
        def header(book):
            h = book.header()
            h["writer_alive"] = book.writer_alive()
            return h
        return self._read(header)

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


FEED_STATES = {_book.FEED_NEVER: "not yet", _book.FEED_UP: "UP", _book.FEED_DOWN: "DOWN"}


class BookView(_View):
    """A live table of the shared-memory book: one row per symbol and the book's counters.

    A price is *stale* when its last update is older than `stale_after` seconds, or the
    feed is DOWN, or the book's writer is gone. The change column compares with the
    previous update this view saw: the book keeps only the latest price, and a reader that
    looks 4 times a second misses the ticks in between (conflation, as the strategy does).
    """

    HEADER = ("symbol", "price", "change", "seq", "age", "stale")

    def __init__(self, source, interval: float = 0.25, stale_after: float | None = None,
                 start: bool = True):
        config = source.config if isinstance(source, Launcher) else None
        if stale_after is None:
            stale_after = 3 * max(config.tick_interval, config.heartbeat_interval) if config else 3.0
        self.stale_after = stale_after
        self.reader = BookReader(source)
        self._last = {}  # symbol -> (seq, price) last seen
        self._change = {}
        self.rows: list = []
        self.header: dict | None = None
        self.table = _css(W.HTML(), "hftlab-book")
        self.counters = _css(W.HTML(), "hftlab-book-counters")
        self.live = Live(self.refresh, interval, "book view", on_stop=self.reader.close)
        self.widget = W.VBox([W.HTML(f"<b>Shared-memory book</b> <code>{self.reader.name}</code>"),
                              self.table, self.counters, self.live.box])
        self.refresh()
        if start:
            self.start()

    def read(self) -> list:
        """Read the book once; returns the rows (and keeps them, with the header)."""
        quotes, header = self.reader.quotes(), self.reader.header()
        if quotes is None or header is None:
            self.header = None
            self.rows = [Row(s, None, None, 0, None, True) for s in self._last]
            return self.rows
        self.header = header
        feed_ok = header["feed_state"] == _book.FEED_UP and header["writer_alive"]
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
        state = FEED_STATES.get(h["feed_state"], str(h["feed_state"]))
        return (f"feed {state}  updates {h['updates']}  gaps {h['gaps']}  last seq {h['last_seq']}"
                f"  writer pid {h['writer_pid']}")

    def refresh(self) -> None:
        self.read()
        rows = [self._cells(r) for r in self.rows]
        self.table.value = _table(self.HEADER, [
            [c if r.price is None or i != 2 or r.change is None else
             f"<span style='color:{'green' if r.change >= 0 else 'crimson'}'>{c}</span>"
             for i, c in enumerate(cells)] for cells, r in zip(rows, self.rows)])
        self.counters.value = f"<code>{html.escape(self._counters())}</code>"

    def text(self) -> str:
        """The table and counters as plain text, read from the book now."""
        self.read()
        return (f"book {self.reader.name}: {self._counters()}\n"
                + _plain_table(self.HEADER, [self._cells(r) for r in self.rows]))

    def describe(self) -> str:
        return (f"BookView of book {self.reader.name}: {', '.join(self.HEADER)} per symbol, "
                f"refreshed every {self.live.interval:g} s (live in JupyterLab; .text() for a snapshot)")

    def close(self) -> None:
        self.live.stop()
        self.reader.close()


# -- the price chart ---------------------------------------------------------------------


def moving_average_series(values, n: int) -> list:
    """The strategy's n-tick moving average at each point (None until n values exist)."""
    values = list(values)
    return [rules.moving_average(values[:i + 1], n) if i + 1 >= n else None
            for i in range(len(values))]


class PriceChart(_View):
    """The recent prices of each symbol, sampled from the book, with the strategy's MAs.

    The moving averages use `hftlab.rules.moving_average` over the config's windows, on
    the prices this chart saw. The strategy polls the book every millisecond and sees
    every tick; the chart samples it a few times a second, so with a fast feed its
    averages are over sampled prices and only approximate the strategy's. The caption
    says how many updates were sampled out of how many happened.
    """

    def __init__(self, source, windows: tuple | None = None, history: int = 120,
                 interval: float = 0.5, size=(7.0, 3.6), reader: BookReader | None = None,
                 start: bool = True):
        config = source.config if isinstance(source, Launcher) else None
        if windows is None:
            windows = (config.short_window, config.long_window) if config else ()
        self.windows = tuple(windows)
        self.reader = reader or BookReader(source)
        self._own_reader = reader is None
        self.history = {}  # symbol -> deque of prices
        self.last_seq = {}
        self.sampled = 0
        self.first_updates = None
        self.updates = 0
        self.size = size
        self._maxlen = history
        self._lock = threading.Lock()
        self.png = b""
        # As wide as its box allows, up to its natural size: a narrow screen scales it down.
        self.image = _css(W.Image(format="png", layout=W.Layout(
            width="100%", max_width=f"{size[0] * 90:.0f}px", height="auto")), "hftlab-chart")
        self.caption = _css(W.HTML(), "hftlab-chart-caption")
        self.live = Live(self.refresh, interval, "price chart",
                         on_stop=self.reader.close if self._own_reader else None)
        self.widget = W.VBox([self.image, self.caption, self.live.box])
        self.sample()
        if start:
            self.start()

    def sample(self) -> int:
        """Record each symbol's price if it changed since the last sample; returns how many."""
        quotes = self.reader.quotes()
        if quotes is None:
            return 0
        new = 0
        with self._lock:
            for symbol, q in quotes.items():
                if q is None or self.last_seq.get(symbol) == q.seq:
                    continue
                self.last_seq[symbol] = q.seq
                self.history.setdefault(symbol, deque(maxlen=self._maxlen)).append(q.price)
                new += 1
            total = sum(q.updates for q in quotes.values() if q is not None)
            if self.first_updates is None or total < self.updates:  # a restarted orderbook
                self.first_updates = total - new
            self.updates = total
            self.sampled += new
        return new

    def draw(self) -> bytes:
        """Draw the chart as PNG bytes (a private Figure: safe in a background thread)."""
        with self._lock:
            series = {s: list(h) for s, h in self.history.items()}
        fig = Figure(figsize=self.size, dpi=90)
        FigureCanvasAgg(fig)
        # Fixed margins: a layout engine would cost more than the drawing itself.
        fig.subplots_adjust(left=0.08, right=0.98, top=0.92, bottom=0.04, hspace=0.3, wspace=0.18)
        symbols = list(series) or ["(no prices yet)"]
        cols = 2 if len(symbols) > 1 else 1
        rows = -(-len(symbols) // cols)
        axes = fig.subplots(rows, cols, squeeze=False).ravel()
        for ax, symbol in zip(axes, symbols):
            prices = series.get(symbol, [])
            ax.plot(prices, color="black", linewidth=1.0, label="price")
            for n, color in zip(self.windows, ("tab:blue", "tab:orange", "tab:green")):
                ma = moving_average_series(prices, n)
                ax.plot([m if m is not None else float("nan") for m in ma], color=color,
                        linewidth=1.0, label=f"MA {n}")
            ax.set_title(f"{symbol} {prices[-1]:.2f}" if prices else symbol, fontsize=9)
            ax.tick_params(labelsize=7)
            ax.ticklabel_format(axis="y", useOffset=False)  # 140.08, not 0.08 + 1.4e2
            ax.set_xticks([])
        for ax in axes[len(symbols):]:
            ax.set_visible(False)
        if self.windows:
            axes[0].legend(fontsize=7, loc="upper left")
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()

    def refresh(self) -> None:
        self.sample()
        self.png = self.draw()
        self.image.value = self.png
        self.caption.value = f"<small>{html.escape(self._caption())}</small>"

    def _caption(self) -> str:
        seen = self.updates - (self.first_updates or 0)
        return (f"sampled {self.sampled} of {seen} book updates since the chart started; "
                f"moving averages over {' and '.join(map(str, self.windows)) or 'no'} samples")

    def text(self) -> str:
        with self._lock:
            lines = [f"{s}: {len(h)} prices, last {h[-1]:.2f}" if h else f"{s}: no prices"
                     for s, h in sorted(self.history.items())]
        for symbol in sorted(self.history):
            prices = list(self.history[symbol])
            for n in self.windows:
                if len(prices) >= n:
                    lines.append(f"{symbol} MA {n}: {rules.moving_average(prices, n):.2f}")
        return "\n".join([self._caption(), *lines])

    def describe(self) -> str:
        return (f"PriceChart of book {self.reader.name}: recent prices per symbol with moving "
                f"averages over {self.windows} (live in JupyterLab; .text() for a summary)")

    def close(self) -> None:
        self.live.stop()
        if self._own_reader:
            self.reader.close()


# -- the wire tap ------------------------------------------------------------------------


class Step(NamedTuple):
    """One message off the wire: its number, its exact bytes and what they decode to."""
    n: int
    raw: bytes  # the whole line, b'\n' included
    msg: object  # a protocol message, or a protocol.ProtocolError


def hexdump(data: bytes, width: int = 16) -> str:
    """Offset, hex and printable text, `width` bytes a line (non-printables as '.')."""
    lines = []
    for off in range(0, len(data), width):
        chunk = data[off:off + width]
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{off:04x}  {chunk.hex(' '):<{width * 3 - 1}}  {text}")
    return "\n".join(lines)


def fields_of(msg) -> list:
    """[(field, value)] of a decoded message, or of the error in its place."""
    if isinstance(msg, protocol.ProtocolError):
        return [("error", msg.reason)]
    return [("type", protocol.wire_type(msg)), *zip(msg._fields, msg)]


class WireTap(_View):
    """Read a feed (or any byte source) one message at a time, raw bytes beside decoded.

        tap = WireTap.connect(host, port)   # subscribe to a feed, or dial the order port
        step = tap.next()                   # Step(n, raw, msg); the "next" button does this
        tap.send(protocol.Order(...))       # on the order port: then tap.next() is the reply

    Bytes that arrive while nobody steps wait in the socket's receive buffer (and then in
    the gateway's buffer for us, which drops a subscriber more than 1 MiB behind).
    `WireTap.replay(data)` steps through recorded bytes instead of a socket.
    """

    def __init__(self, sock: socket.socket | None = None, data: bytes = b"", label: str = "",
                 keep: int = 8):
        self.sock = sock
        self.label = label or (f"{sock.getpeername()[0]}:{sock.getpeername()[1]}" if sock else "bytes")
        self._buf = bytearray(data)
        self._decoder = protocol.Decoder()
        self._lock = threading.Lock()
        self.eof = sock is None
        self.count = 0
        self.sent = []  # raw lines sent with send()
        self.current: Step | None = None
        self.recent = deque(maxlen=keep)
        self.next_button = W.Button(description="next", icon="step-forward", button_style="primary",
                                    tooltip="read the next message off the wire",
                                    layout=W.Layout(width="90px"))
        self.next_button.on_click(self._on_next)
        self.note = W.HTML()
        self.raw_box = _css(W.HTML(), "hftlab-tap-raw")
        self.decoded_box = _css(W.HTML(), "hftlab-tap-decoded")
        self.history_box = W.HTML()
        self.live = Live(self._follow_one, 0.2, "wire tap", on_stop=self._followed)
        self.widget = W.VBox([
            W.HTML(f"<b>Wire tap</b> <code>{html.escape(self.label)}</code>"),
            W.HBox([self.next_button, self.note]),
            W.HBox([W.VBox([W.HTML("<i>raw bytes</i>"), self.raw_box]),
                    W.VBox([W.HTML("<i>decoded</i>"), self.decoded_box])],
                   layout=W.Layout(grid_gap="24px")),
            self.history_box,
        ])
        self._show()

    @classmethod
    def connect(cls, host, port=None, label: str = "", timeout: float = 5.0) -> "WireTap":
        """Dial `host:port` (or a Launcher and 'price', 'news' or 'orders')."""
        if isinstance(host, Launcher):
            cfg = host.config
            port_of = {"price": cfg.price_port, "news": cfg.news_port, "orders": cfg.order_port}
            if port not in port_of:
                raise ValueError(f"tap which port? say 'price', 'news' or 'orders', not {port!r}")
            label = label or f"{port} {cfg.host}:{port_of[port]}"
            host, port = cfg.host, port_of[port]
        return cls(process.dial(host, port, timeout), label=label)

    @classmethod
    def replay(cls, data: bytes, label: str = "recorded bytes") -> "WireTap":
        """Step through bytes already recorded (no socket)."""
        return cls(None, bytes(data), label)

    # -- stepping ------------------------------------------------------------------

    def _line(self, timeout: float) -> bytes | None:
        deadline = time.monotonic() + timeout
        while True:
            end = self._buf.find(b"\n")
            if end >= 0:
                raw = bytes(self._buf[:end + 1])
                del self._buf[:end + 1]
                return raw
            if len(self._buf) > protocol.MAX_LINE + 1:
                raw = bytes(self._buf)  # the decoder reports it too long and skips the rest
                self._buf.clear()
                return raw
            if self.eof:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no complete message from {self.label} within {timeout:g} s")
            ready, _, _ = select.select([self.sock], [], [], left)
            if ready:
                data = self.sock.recv(65536)
                if data:
                    self._buf += data
                else:
                    self.eof = True

    def next(self, timeout: float = 5.0) -> Step:
        """Read the next message; returns Step(n, raw, msg).

        Raises EOFError at the end of the stream, TimeoutError if none comes in time.
        """
        with self._lock:
            raw = self._line(timeout)
            if raw is None:
                self.note.value = "<i>end of stream</i>"
                raise EOFError(f"{self.label}: no more messages (the other side closed, or "
                               "the recorded bytes are all read)")
            items = self._decoder.feed(raw)
            msg = items[0] if items else protocol.ProtocolError("rest of a line that was too long")
            self.count += 1
            self.current = Step(self.count, raw, msg)
            self.recent.append(self.current)
            self._show()  # under the lock: the button and a follow loop may both step
            return self.current

    def next_of(self, kind, timeout: float = 5.0, limit: int = 10_000) -> Step:
        """Step until a message of type `kind` (a class like protocol.Heartbeat, or 'HB')."""
        cls = protocol.MESSAGE_TYPES[kind] if isinstance(kind, str) else kind
        deadline = time.monotonic() + timeout
        for _ in range(limit):
            step = self.next(max(0.0, deadline - time.monotonic()))
            if isinstance(step.msg, cls):
                return step
        raise TimeoutError(f"no {cls.__name__} in the next {limit} messages from {self.label}")

    def send(self, msg) -> bytes:
        """Send a message (or raw bytes, to see what a bad line gets); returns the bytes sent."""
        if self.sock is None:
            raise ValueError("this tap replays recorded bytes; it has no socket to send on")
        raw = msg if isinstance(msg, (bytes, bytearray)) else protocol.encode(msg)
        self.sock.sendall(raw)
        self.sent.append(bytes(raw))
        return bytes(raw)

    def _on_next(self, _button) -> None:
        try:
            self.next(timeout=2.0)
        except (EOFError, TimeoutError, OSError) as exc:
            self.note.value = f"<i>{html.escape(str(exc))}</i>"

    def _follow_one(self) -> None:
        try:
            self.next(timeout=1.0)
        except TimeoutError:
            pass

    def follow(self, duration: float | None = None, frames: int | None = None) -> "WireTap":
        """Step by itself, a few messages a second, in the background (stop button).

        The next button is off meanwhile: one thread at a time updates the widget.
        """
        self.widget.children = (*self.widget.children[:4], self.live.box)
        self.next_button.disabled = True
        return self.start(duration, frames)

    def _followed(self) -> None:
        self.next_button.disabled = self.eof and not self._buf  # closed, or all read

    # -- showing -------------------------------------------------------------------

    def _show(self) -> None:
        step = self.current
        if step is None:
            self.raw_box.value = "<i>no message yet: press next</i>"
            self.decoded_box.value = ""
        else:
            self.raw_box.value = f"<pre style='margin:0'>{html.escape(self._raw_text(step))}</pre>"
            self.decoded_box.value = _table(("field", "value"), [
                (html.escape(k), html.escape(repr(v))) for k, v in fields_of(step.msg)])
            self.note.value = f"message #{step.n}, {len(step.raw)} bytes"
        self.history_box.value = "<pre style='margin:0;font-size:85%'>" + html.escape(
            "\n".join(self._summary(s) for s in self.recent)) + "</pre>"

    @staticmethod
    def _raw_text(step: Step) -> str:
        return f"{hexdump(step.raw)}\ntext: {step.raw!r}"

    @staticmethod
    def _summary(step: Step) -> str:
        kind = "ERROR?" if isinstance(step.msg, protocol.ProtocolError) else protocol.wire_type(step.msg)
        return f"#{step.n:<3} {kind:<6} {step.raw.decode('ascii', 'backslashreplace').rstrip()}"

    def text(self) -> str:
        """The current message: hex dump, bytes and decoded fields."""
        step = self.current
        if step is None:
            return f"WireTap {self.label}: no message yet (press next or call .next())"
        decoded = "\n".join(f"  {k:<10} {v!r}" for k, v in fields_of(step.msg))
        return (f"message #{step.n}, {len(step.raw)} bytes from {self.label}\n"
                f"{self._raw_text(step)}\ndecoded:\n{decoded}")

    def describe(self) -> str:
        if self.sock is None:  # recorded bytes: the same every run
            return self.text()
        return (f"WireTap on {self.label}: {self.count} messages read (live: press next or call "
                ".next(); .text() shows the current one)")

    def close(self) -> None:
        self.live.stop()
        if self.sock is not None:
            self.sock.close()
            self.eof = True
        self.next_button.disabled = True


# -- the dashboard's other parts ----------------------------------------------------------


class NewsReader:
    """A subscriber to the news feed that never blocks; reconnects after a gateway restart."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.sock = None
        self.decoder = protocol.Decoder()
        self.sentiment = None
        self.seq = 0
        self.received = 0
        self._next_try = 0.0

    def poll(self) -> None:
        """Read whatever news has arrived, without waiting."""
        if self.sock is None:
            if time.monotonic() < self._next_try:
                return
            self._next_try = time.monotonic() + 1.0
            try:
                self.sock = process.dial(self.host, self.port, timeout=0.5)
            except OSError:
                return
            self.sock.setblocking(False)
            self.decoder = protocol.Decoder()
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self.close()
                return
            for msg in self.decoder.feed(data):
                if isinstance(msg, protocol.News):
                    self.sentiment, self.seq = msg.sentiment, msg.seq
                    self.received += 1

    @property
    def connected(self) -> bool:
        return self.sock is not None

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


ORDER_LINE = re.compile(r"^(\d\d:\d\d:\d\d\.\d{3}) order_manager: (?:Received Order (\d+): "
                        r"(BUY|SELL) (-?\d+) (\S+) @ (\S+)|Rejected (\S+) from \S+: (.*))$")


class Blotter(NamedTuple):
    time: str
    order_id: str
    side: str
    qty: str
    symbol: str
    price: str
    reply: str  # "ACK n" or "REJECT: reason"


def recent_orders(launcher: Launcher, n: int = 8) -> list:
    """The last `n` orders the order manager answered, from its log and its journal.

    The log has every answer in order (ACKs and REJECTs); the journal (`read_journal`)
    adds the client's order_id to each booked order.
    """
    from hftlab.order_manager import read_journal

    child = launcher.children.get("order_manager")
    if child is None:
        return []
    ids = {row["order_no"]: row for row in read_journal(launcher.config.journal)}
    rows = []
    for line in launcher.log("order_manager", 400).splitlines():
        m = ORDER_LINE.match(line)
        if not m:
            continue
        t, no, side, qty, symbol, price, rej_id, reason = m.groups()
        if no is not None:
            row = ids.get(no, {})
            rows.append(Blotter(t, row.get("order_id", "?"), side, qty, symbol, price, f"ACK {no}"))
        else:
            rows.append(Blotter(t, rej_id, MISSING, MISSING, MISSING, MISSING, f"REJECT: {reason}"))
    return rows[-n:]


class ProcessPanel:
    """One row per process: running or not, pid, and start / stop / kill / restart buttons."""

    def __init__(self, launcher: Launcher):
        self.launcher = launcher
        self.live = None  # the loop that refreshes this panel, if any (the dashboard's)
        self.note = _css(W.HTML(), "hftlab-proc-note")
        self.buttons = {}
        self.labels = {}
        rows = []
        for name in NAMES:
            self.labels[name] = _css(W.HTML(layout=W.Layout(width="240px", flex="0 0 auto")),
                                     "hftlab-proc")
            size = lambda px: W.Layout(width=px, flex="0 0 auto")  # never squeezed to "st..."
            self.buttons[name] = {
                "start": W.Button(description="start", icon="play", layout=size("74px")),
                "stop": W.Button(description="stop", icon="stop", layout=size("70px"),
                                 tooltip="SIGTERM: a clean exit"),
                "kill": W.Button(description="kill", icon="skull", button_style="danger",
                                 layout=size("66px"), tooltip="SIGKILL: a crash"),
                "restart": W.Button(description="restart", icon="refresh", layout=size("88px"),
                                    tooltip="stop (if running) and start again"),
            }
            for action, button in self.buttons[name].items():
                button.on_click(lambda _b, n=name, a=action: self.do(n, a))
            rows.append(W.HBox([self.labels[name], *self.buttons[name].values()]))
        self.widget = W.VBox([*rows, self.note])
        self.refresh()

    def do(self, name: str, action: str) -> None:
        """start, stop (SIGTERM), kill (SIGKILL) or restart one process, as its button does."""
        try:
            if action == "start":
                self.launcher.start_one(name)
            elif action == "stop":
                self.launcher.kill(name, signal.SIGTERM)
            elif action == "kill":
                self.launcher.kill(name, signal.SIGKILL)
            elif action == "restart":
                self.launcher.restart(name)
            else:
                raise ValueError(f"unknown action {action!r}: start, stop, kill or restart")
            self.note.value = f"{action} {name}: done"
        except Exception as exc:  # a button handler: show it, the kernel must go on
            self.note.value = f"<span style='color:crimson'>{action} {name}: {html.escape(str(exc))}</span>"
        # One writer per widget: a widget set from two threads can reach the browser out of
        # order (each thread's messages queue separately), and then a later identical value
        # is never sent, so the page would show the older state for good. While a live loop
        # owns the rows, its next frame shows the change.
        if self.live is None or not self.live.running:
            self.refresh()

    def rows(self) -> list:
        status = self.launcher.status()
        out = []
        for name in NAMES:
            s = status.get(name)
            if s is None:
                out.append((name, "not started", MISSING))
            elif s["running"]:
                out.append((name, "running", str(s["pid"])))
            else:
                out.append((name, f"stopped (exit {s['returncode']})", str(s["pid"])))
        return out

    def refresh(self) -> None:
        # Now and then send the state even if unchanged: a change that reached the page out
        # of order (see do()) would otherwise stay wrong there for good, because ipywidgets
        # sends a value only when it differs from the kernel's copy.
        resend = self.live is not None and self.live.running and self.live.frames % 8 == 0
        for name, state, pid in self.rows():
            running = state == "running"
            color = "green" if running else "crimson"
            self.labels[name].value = (f"<code>{name}</code> <span style='color:{color}'>{state}"
                                       f"</span> <code>pid {pid}</code>")
            self.buttons[name]["start"].disabled = running
            self.buttons[name]["stop"].disabled = not running
            self.buttons[name]["kill"].disabled = not running
            if resend:
                self.labels[name].send_state("value")
                for button in self.buttons[name].values():
                    button.send_state("disabled")

    def text(self) -> str:
        return _plain_table(("process", "state", "pid"), self.rows())


class Dashboard(_View):
    """The whole system on one screen: book, chart, news, orders and processes, live."""

    def __init__(self, launcher: Launcher, interval: float = 0.25, chart_every: int = 2,
                 start: bool = True):
        self.launcher = launcher
        cfg = launcher.config
        self.chart_every = chart_every
        self.book = BookView(launcher, interval, start=False)
        self.chart = PriceChart(launcher, reader=self.book.reader, start=False)
        self.news = NewsReader(cfg.host, cfg.news_port)
        self.news_box = _css(W.HTML(), "hftlab-news")
        self.news_bar = W.IntProgress(value=50, min=0, max=100, layout=W.Layout(width="240px"))
        self.orders = []
        self.orders_box = _css(W.HTML(), "hftlab-orders")
        self.procs = ProcessPanel(launcher)
        self._stop_all = False
        self._loop_ended = False
        self._end_lock = threading.Lock()
        self.live = Live(self.refresh, interval, "dashboard", on_stop=self._ended)
        self.procs.live = self.live
        title = W.HTML(f"<h3 style='margin:0'>hftlab live: book <code>{cfg.shm_name}</code>, "
                       f"{len(cfg.symbols)} symbols, a tick every {cfg.tick_interval:g} s</h3>")
        box = lambda title, *kids: W.VBox([W.HTML(f"<b>{title}</b>"), *kids],
                                          layout=W.Layout(border="1px solid #ddd", padding="4px",
                                                          margin="2px"))
        # Two rows; on the left what keeps its size (tables, buttons), on the right what
        # gives way on a narrow screen: the chart scales down, and the orders table, which
        # must show every column, moves below the processes when the two do not fit side by
        # side (at JupyterLab's default width with the file browser open they do not).
        fixed, flexible = W.Layout(flex="0 0 auto"), W.Layout(flex="1 1 auto", min_width="320px")
        whole = W.Layout(flex="1 1 auto", min_width="max-content")  # never narrower than its table
        top = W.HBox([W.VBox([box("Shared-memory book", self.book.table, self.book.counters),
                              box("News sentiment", self.news_bar, self.news_box)], layout=fixed),
                      W.VBox([box("Prices and the strategy's moving averages",
                                  self.chart.image, self.chart.caption)], layout=flexible)])
        bottom = W.HBox([W.VBox([box("Processes", self.procs.widget)], layout=fixed),
                         W.VBox([box("Orders (most recent last)", self.orders_box)], layout=whole)],
                        layout=W.Layout(flex_flow="row wrap"))
        self.widget = _css(W.VBox([title, self.live.box, top, bottom]), "hftlab-dashboard")
        self.refresh()
        if start:
            self.start()

    def start(self, duration: float | None = None, frames: int | None = None):
        self._loop_ended = False
        return super().start(duration, frames)

    def refresh(self) -> None:
        self.book.refresh()
        if self.live.frames % self.chart_every == 0:
            self.chart.refresh()
        else:
            self.chart.sample()
        self.news.poll()
        cfg = self.launcher.config
        s = self.news.sentiment
        side = rules.news_signal(s, cfg.bullish, cfg.bearish) or "no signal"
        if s is not None:
            self.news_bar.value = s
        self.news_box.value = (f"<code>{self._news_text()}</code>" if s is not None else
                               "<i>waiting for news</i>")
        self.news_bar.bar_style = {"BUY": "success", "SELL": "danger"}.get(side, "info")
        self.orders = recent_orders(self.launcher)
        self.orders_box.value = _table(Blotter._fields, [[html.escape(c) for c in o] for o in self.orders])
        self.procs.refresh()

    def _news_text(self) -> str:
        cfg = self.launcher.config
        s = self.news.sentiment
        if s is None:
            return "news: none yet" + ("" if self.news.connected else " (not connected)")
        side = rules.news_signal(s, cfg.bullish, cfg.bearish) or "no signal"
        return (f"sentiment {s} (news #{self.news.seq}): {side}; BUY above {cfg.bullish}, "
                f"SELL below {cfg.bearish}")

    def text(self) -> str:
        orders = _plain_table(Blotter._fields, self.orders) if self.orders else "no orders yet"
        return "\n\n".join([self.book.text(), self.chart.text(), self._news_text(),
                            orders, self.procs.text()])

    def describe(self) -> str:
        return (f"Dashboard of {self.launcher.config.shm_name}: book, price chart, news, orders "
                "and processes (live in JupyterLab; .text() for a snapshot)")

    def stop_all_when_done(self) -> None:
        """Stop the whole system when the live view ends: now if it has already ended,
        else when its stop button is pressed or its duration is over.

        A notebook's last cell calls this instead of stopping the launcher at once, so
        that "Run All" leaves the learner a live dashboard that still cleans up after itself.
        Headless nobody watches and the loop is bounded: wait for its last frames, so a
        test run ends with everything stopped.
        """
        if headless():
            self.live.wait(HEADLESS_FRAMES * self.live.interval + 30)
        with self._end_lock:
            self._stop_all = True
            ended = self._loop_ended or not self.live.running
        if ended:
            self._ended()

    def _ended(self) -> None:
        with self._end_lock:  # the loop's thread and the notebook may both get here
            self._loop_ended = True
            stop = self._stop_all
        self._release()
        if stop:
            self.launcher.close()
            self.procs.refresh()

    def _release(self) -> None:
        self.news.close()
        self.book.reader.close()

    def close(self) -> None:
        self.live.stop()
        self._release()
