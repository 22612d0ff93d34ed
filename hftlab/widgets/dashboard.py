"""The dashboard: the whole running system on one screen, and buttons to start and stop it.

Book (`BookView`), chart (`PriceChart`), news (`NewsReader`), the order blotter
(`recent_orders`) and one row per process with start, stop, kill and restart buttons,
which call the launcher's own API. It is the only view that needs a
`hftlab.launcher.Launcher` (the others take a Config): it starts and stops processes, and
reads the order manager's log.
"""

from __future__ import annotations

import html
import signal
import threading

import ipywidgets as W

from hftlab import rules
from hftlab.launcher import NAMES, Launcher
from hftlab.widgets.blotter import Blotter, recent_orders
from hftlab.widgets.bookview import BookView
from hftlab.widgets.chart import PriceChart
from hftlab.widgets.live import HEADLESS_FRAMES, Live, headless
from hftlab.widgets.news import NewsReader
from hftlab.widgets.view import MISSING, View, html_table, styled, text_table

__all__ = ["Dashboard", "ProcessPanel"]


class ProcessPanel:
    """One row per process: running or not, pid, and start / stop / kill / restart buttons."""

    def __init__(self, launcher: Launcher):
        self.launcher = launcher
        self.live = None  # the loop that refreshes this panel, if any (the dashboard's)
        self.note = styled(W.HTML(), "hftlab-proc-note")
        self.buttons = {}
        self.labels = {}
        rows = []
        for name in NAMES:
            self.labels[name] = styled(W.HTML(layout=W.Layout(width="240px", flex="0 0 auto")),
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
        return text_table(("process", "state", "pid"), self.rows())


class Dashboard(View):
    """The whole system on one screen: book, chart, news, orders and processes, live."""

    def __init__(self, launcher: Launcher, interval: float = 0.25, chart_every: int = 2,
                 start: bool = True):
        self.launcher = launcher
        cfg = launcher.config
        self.chart_every = chart_every
        self.book = BookView(cfg, interval, start=False)
        self.chart = PriceChart(cfg, reader=self.book.reader, start=False)
        self.news = NewsReader(cfg)
        self.news_box = styled(W.HTML(), "hftlab-news")
        self.news_bar = W.IntProgress(value=50, min=0, max=100, layout=W.Layout(width="240px"))
        self.orders = []
        self.orders_box = styled(W.HTML(), "hftlab-orders")
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
        self.widget = styled(W.VBox([title, self.live.box, top, bottom]), "hftlab-dashboard")
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
        self.orders_box.value = html_table(Blotter._fields, [[html.escape(c) for c in o] for o in self.orders])
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
        orders = text_table(Blotter._fields, self.orders) if self.orders else "no orders yet"
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
