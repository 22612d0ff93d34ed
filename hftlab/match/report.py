"""The match's files in its folder: scoreboard.csv as it goes, summary.json and pnl.png at the end.

Kept apart from the scoring (`hftlab.match.score`, pure) and from the processes
(`hftlab.match.run`), so each can be read, and changed, alone. The chart is drawn with
matplotlib's Agg backend: no display is needed, and none is touched.
"""

from __future__ import annotations

import json
import os

from hftlab.match.score import ROW_COLUMNS

__all__ = ["EVENTS_FILE", "SCOREBOARD_FILE", "SUMMARY_FILE", "CHART_FILE", "ScoreboardFile",
           "write_summary", "plot"]

EVENTS_FILE = "match_events.csv"
SCOREBOARD_FILE = "scoreboard.csv"
SUMMARY_FILE = "summary.json"
CHART_FILE = "pnl.png"


class ScoreboardFile:
    """scoreboard.csv, written a sample at a time (a match stopped by a crash keeps what
    it had), one row per strategy and sample; it keeps the rows for the chart too."""

    def __init__(self, path: str):
        self.path = path
        self.rows = []
        with open(path, "w") as f:
            f.write(",".join(ROW_COLUMNS) + "\n")

    def write(self, rows) -> None:
        self.rows += rows
        with open(self.path, "a") as f:
            f.writelines(",".join(str(v) for v in row) + "\n" for row in rows)


def write_summary(path: str, summary: dict, facts: dict) -> None:
    """summary.json: {"match": facts (config, duration...), "strategies": summary}; written
    beside, then moved over, so a reader never sees half of it."""
    with open(path + ".tmp", "w") as f:
        json.dump({"match": facts, "strategies": summary}, f, indent=2)
        f.write("\n")
    os.replace(path + ".tmp", path)


def plot(path: str, rows) -> None:
    """pnl.png: each strategy's P&L over the match's time, one line each."""
    import matplotlib
    matplotlib.use("Agg")  # a file, never a window: a match may run where there is no display
    from matplotlib import pyplot as plt

    lines = {}
    for row in rows:
        times, pnls = lines.setdefault(row.strategy, ([], []))
        times.append(row.time_s)
        pnls.append(row.pnl)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    try:
        for name, (times, pnls) in sorted(lines.items()):
            ax.plot(times, pnls, label=name)
        ax.axhline(0, color="grey", linewidth=0.5)
        ax.set_xlabel("seconds into the match")
        ax.set_ylabel("P&L (after fees, marked to the book)")
        ax.set_title("hftlab match")
        if lines:
            ax.legend(loc="best")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
