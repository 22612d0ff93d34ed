"""The price chart: the recent prices of each symbol with the strategy's moving averages.

Drawn as a PNG by matplotlib's Agg canvas on a private `Figure` (no pyplot: pyplot keeps
global state, and the chart is drawn in a background thread). This is the only module of
hftlab that imports matplotlib.
"""

from __future__ import annotations

import html
import io
import threading
from collections import deque

import ipywidgets as W
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hftlab import rules
from hftlab.widgets.bookview import FollowedBook
from hftlab.widgets.live import Live
from hftlab.widgets.view import View, config_of, styled

__all__ = ["PriceChart", "moving_average_series"]


def moving_average_series(values, n: int) -> list:
    """The strategy's n-tick moving average at each point (None until n values exist)."""
    values = list(values)
    return [rules.moving_average(values[:i + 1], n) if i + 1 >= n else None
            for i in range(len(values))]


class PriceChart(View):
    """The recent prices of each symbol, sampled from the book, with the strategy's MAs.

    The moving averages use `hftlab.rules.moving_average` over the config's windows, on
    the prices this chart saw. The strategy polls the book every millisecond and sees
    every tick; the chart samples it a few times a second, so with a fast feed its
    averages are over sampled prices and only approximate the strategy's. The caption
    says how many updates were sampled out of how many happened. `source` is a Config, a
    launcher or a book's name (without a Config, give the `windows`); a dashboard passes
    its book view's `reader`, so that the two share one attachment to the book.
    """

    def __init__(self, source, windows: tuple | None = None, history: int = 120,
                 interval: float = 0.5, size=(7.0, 3.6), reader: FollowedBook | None = None,
                 start: bool = True):
        config = config_of(source)
        if windows is None:
            windows = (config.short_window, config.long_window) if config else ()
        self.windows = tuple(windows)
        self.reader = reader or FollowedBook(source)
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
        self.image = styled(W.Image(format="png", layout=W.Layout(
            width="100%", max_width=f"{size[0] * 90:.0f}px", height="auto")), "hftlab-chart")
        self.caption = styled(W.HTML(), "hftlab-chart-caption")
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
