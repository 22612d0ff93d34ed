"""The leaderboard: a match's scoreboard, live, best P&L first, and how it ended.

`Leaderboard` is given a running `hftlab.match.Match` and shows one row per strategy
(P&L, realized, unrealized, fees, position) from ``match.scoreboard()``, every
``interval`` seconds, in a `hftlab.widgets.live.Live` loop, like every other view. It
reads the match only through its public methods, and only one thread drives the match
at a time: the live loop while it runs, then the caller.

`follow` is the one call a lesson needs: it runs the loop until the match is over (or
the loop's own limit: `hftlab.widgets.live.DURATION` seconds in JupyterLab,
`hftlab.widgets.live.HEADLESS_FRAMES` frames with ``HFTLAB_HEADLESS=1``), then lets the
match run to its end without the widget, stops it, and shows the final table from the
summary (`hftlab.match.Match.stop`), which it returns.

    with Match(config, ["ours=ours", "slow=slow:100"], out, duration=15) as match:
        board = widgets.Leaderboard(match)
        display(board)
        summary = board.follow()
"""

from __future__ import annotations

import html

import ipywidgets as W

from hftlab.match import ranked
from hftlab.widgets.live import Live
from hftlab.widgets.view import View, html_table, styled, text_table

__all__ = ["Leaderboard", "ROW_HEADER", "SUMMARY_HEADER", "live_cells", "summary_cells"]

ROW_HEADER = ("#", "strategy", "P&L", "realized", "unrealized", "fees", "position")
SUMMARY_HEADER = ("#", "strategy", "P&L", "fills", "rejects", "slippage/share", "t2t p50 ms", "status")


def _money(value) -> str:
    return "-" if value is None else f"{value:,.2f}"


def live_cells(rows) -> list:
    """The scoreboard's rows (`hftlab.match.Row`) as table cells, best P&L first."""
    ordered = sorted(rows, key=lambda r: (-r.pnl, r.strategy))
    return [(str(i), r.strategy, _money(r.pnl), _money(r.realized), _money(r.unrealized), _money(r.fees),
             str(r.position)) for i, r in enumerate(ordered, 1)]


def summary_cells(summary: dict) -> list:
    """A match's summary (strategy -> numbers) as table cells, best P&L first."""
    out = []
    for i, (name, s) in enumerate(ranked(summary), 1):
        slip = "-" if s["mean_slippage"] is None else f"{s['mean_slippage']:.4f}"
        t2t = "-" if s["tick_to_trade_p50_us"] is None else f"{s['tick_to_trade_p50_us'] / 1000:.1f}"
        out.append((str(i), name, _money(s["pnl"]), str(s["fills"]), str(sum(s["rejects"].values())),
                    slip, t2t, s["status"]))
    return out


class Leaderboard(View):
    """A running `hftlab.match.Match`'s scoreboard, live; `follow()` to the match's end."""

    def __init__(self, match, interval: float = 0.25):
        self.match, self.interval = match, interval
        self.rows, self.summary = [], None
        self.title = styled(W.HTML(), "hftlab-leaderboard-title")
        self.table = styled(W.HTML(), "hftlab-leaderboard")
        self.live = Live(self._step, interval, name="leaderboard")
        self.widget = W.VBox([self.title, self.table, self.live.box])
        self._show()

    def _step(self) -> None:
        """One frame: a look at the match (it samples every 0.25 s), the table; the loop
        ends once the match is over."""
        self.rows = self.match.scoreboard()
        self._show()
        if not self.match.step():
            self.live.stop()   # from the loop's own thread: it only asks, and the loop ends

    def _show(self) -> None:
        if self.summary is not None:
            why = self.match.ended or "stopped"
            self.title.value = f"<b>Final</b>: {html.escape(why)}"
            self.table.value = html_table(SUMMARY_HEADER, [[html.escape(c) for c in row]
                                                           for row in summary_cells(self.summary)])
            return
        self.title.value = f"<b>Live</b>: {self.match.elapsed():.1f} s into the match"
        self.table.value = html_table(ROW_HEADER, [[html.escape(c) for c in row] for row in live_cells(self.rows)])

    def follow(self, duration: float | None = None, frames: int | None = None) -> dict:
        """Show the match live until it is over (or the loop's limit), run it to its end,
        stop it, show the final table: the match's summary."""
        self.live.start(duration, frames)
        self.live.wait()
        self.summary = self.match.wait()   # the rest of the match, if the loop ended first
        self._show()
        return self.summary

    def text(self) -> str:
        if self.summary is not None:
            return text_table(SUMMARY_HEADER, summary_cells(self.summary))
        return text_table(ROW_HEADER, live_cells(self.rows))

    def describe(self) -> str:
        names = ", ".join(e.name for e in self.match.entries)
        return f"Leaderboard of the match {names} (live in JupyterLab; .text() for a snapshot)"

    def close(self) -> None:
        self.live.stop()
