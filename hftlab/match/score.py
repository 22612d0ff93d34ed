"""From the exchange's events to a scoreboard: pure functions and one tally, no I/O.

The match feeds every row of its event file (`hftlab.events`) to a `Tally` as it is
written, and asks it for the scoreboard's rows at the book's prices of the moment
(`Tally.rows`) and, at the end, for the summary (`Tally.summary`). Money goes through
`hftlab.accounts`, the order manager's own arithmetic, so the scoreboard can never
disagree with the exchange on what a P&L is. Pure, so the tests feed hand-made events.

What the numbers mean:

- ``position`` in a row: the strategy's gross position, the sum over symbols of the
  absolute quantity held (one number for a chart; the summary's ``max_abs_position``
  is the largest absolute position in any one symbol, which the position limit bounds).
- ``max_drawdown``: the largest fall of the P&L from an earlier peak, over the rows
  sampled (the match samples every 0.25 s and once at the end).
- ``mean_slippage``: per share, averaged over fills (`hftlab.accounts.slippage`: positive
  is money lost against the price the strategy sent).
- ``tick_to_trade_p50_us``/``p99``: ``time_ns - tick_ts_ns`` of the order rows (the
  gateway's tick time to the order manager's receipt), nearest-rank percentiles.
- ``rejects``: counted by kind, the first words of the reason (`reject_kind`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

from hftlab import events as _events
from hftlab.accounts import Ledger, slippage

__all__ = ["Row", "ROW_COLUMNS", "SUMMARY_COLUMNS", "reject_kind", "percentile", "max_drawdown", "Tally",
           "ranked", "table"]


class Row(NamedTuple):
    """One line of scoreboard.csv: a strategy's money at one moment of the match."""
    time_s: float
    strategy: str
    position: int
    realized: float
    unrealized: float
    fees: float
    pnl: float


ROW_COLUMNS = Row._fields
SUMMARY_COLUMNS = ("pnl", "realized", "unrealized", "fees", "orders", "fills", "rejects", "max_drawdown",
                   "max_abs_position", "mean_slippage", "tick_to_trade_p50_us", "tick_to_trade_p99_us",
                   "status")

# Reasons named by a phrase anywhere in them (the limits' wording may grow), then by their start.
_PHRASES = (("position limit", "position limit"), ("rate limit", "message rate limit"),
            ("duplicate order_id", "duplicate order_id"), ("cannot check the price", "price unchecked"),
            ("unknown symbol", "unknown symbol"))
_FIRST_WORDS = ("price", "quantity")


def reject_kind(reason: str) -> str:
    """The kind of a reject's reason, for counting: "position limit", "message rate limit",
    "price", "quantity", ...; else its first two words."""
    text = reason.strip().lower()
    for phrase, kind in _PHRASES:
        if phrase in text:
            return kind
    for word in _FIRST_WORDS:
        if text.split(" ", 1)[0] == word:
            return word
    return " ".join(text.split()[:2]) or "no reason"


def percentile(values, q: float):
    """The nearest-rank `q` percentile (0-100) of `values`, or None if there are none."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def max_drawdown(pnls) -> float:
    """The largest fall from a running peak in the series `pnls` (0 if it never falls).
    The peak starts at 0: a strategy that only ever lost has drawn down from nothing."""
    peak, worst = 0.0, 0.0
    for pnl in pnls:
        peak = max(peak, pnl)
        worst = max(worst, peak - pnl)
    return round(worst, 2)


class _Stats:
    """One strategy's counts, besides its money (which its `Account` keeps)."""

    def __init__(self):
        self.orders = 0
        self.rejects = {}
        self.slippage = []
        self.tick_to_trade_ns = []
        self.max_abs_position = 0
        self.pnls = []


class Tally:
    """The events of a match so far, per strategy in `strategies` (rows of others are
    counted under their own names too, so nothing is lost, but only asked-for names are
    guaranteed a row)."""

    def __init__(self, strategies=()):
        self.ledger = Ledger()
        self.stats = {}
        for name in strategies:
            self._of(name)

    def _of(self, name: str) -> _Stats:
        if name not in self.stats:
            self.stats[name] = _Stats()
            self.ledger[name]  # an Account from the start: a strategy with no fill still has a row
        return self.stats[name]

    def add(self, events) -> None:
        """Count each of `events` (`hftlab.events.Event`s, in file order)."""
        for e in events:
            stats = self._of(e.strategy)
            if e.kind == _events.ORDER:
                stats.orders += 1
                if e.tick_ts_ns:
                    stats.tick_to_trade_ns.append(e.time_ns - e.tick_ts_ns)
            elif e.kind == _events.REJECT:
                kind = reject_kind(e.reason)
                stats.rejects[kind] = stats.rejects.get(kind, 0) + 1
            elif e.kind == _events.FILL and e.fill_price is not None:
                account = self.ledger[e.strategy]
                account.fill(e.side, e.qty, e.symbol, e.fill_price, e.fee or 0.0)
                stats.slippage.append(slippage(e.side, e.price, e.fill_price))
                stats.max_abs_position = max(stats.max_abs_position, abs(account.position[e.symbol]))

    def rows(self, time_s: float, marks: dict) -> list:
        """Every strategy's `Row` at `time_s`, marked to `marks` (symbol -> price); each
        row's P&L also goes into that strategy's drawdown."""
        out = []
        for name, stats in self.stats.items():
            a = self.ledger[name]
            pnl = float(round(a.pnl(marks), 2))
            stats.pnls.append(pnl)
            out.append(Row(round(time_s, 3), name, sum(abs(q) for q in a.position.values()),
                           float(round(a.realized, 2)), float(round(a.unrealized(marks), 2)),
                           float(round(a.fees, 2)), pnl))
        return out

    def summary(self, marks: dict, statuses: dict | None = None) -> dict:
        """strategy -> its numbers (`SUMMARY_COLUMNS`), marked to `marks`; `statuses` gives
        each one's status ("finished" if not given)."""
        out = {}
        for name, stats in self.stats.items():
            a = self.ledger[name]
            t2t = stats.tick_to_trade_ns
            p50, p99 = percentile(t2t, 50), percentile(t2t, 99)
            out[name] = {
                "pnl": round(a.pnl(marks), 2), "realized": round(a.realized, 2),
                "unrealized": float(round(a.unrealized(marks), 2)), "fees": round(a.fees, 2),
                "orders": stats.orders, "fills": a.fills, "rejects": dict(stats.rejects),
                "max_drawdown": max_drawdown(stats.pnls + [a.pnl(marks)]),
                "max_abs_position": stats.max_abs_position,
                "mean_slippage": round(sum(stats.slippage) / len(stats.slippage), 4) if stats.slippage else None,
                "tick_to_trade_p50_us": None if p50 is None else round(p50 / 1000, 1),
                "tick_to_trade_p99_us": None if p99 is None else round(p99 / 1000, 1),
                "status": (statuses or {}).get(name, "finished"),
            }
        return out


def ranked(summary: dict) -> list:
    """[(strategy, numbers), ...] best P&L first (then by name, for a stable order)."""
    return sorted(summary.items(), key=lambda item: (-item[1]["pnl"], item[0]))


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return str(sum(value.values()))
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def table(summary: dict) -> str:
    """The scoreboard as a text table, one row per strategy, best P&L first."""
    heads = ("strategy", "pnl", "realized", "unrealized", "fees", "orders", "fills", "rejects",
             "max_dd", "max_pos", "slippage", "t2t_p50_us", "t2t_p99_us", "status")
    keys = ("pnl", "realized", "unrealized", "fees", "orders", "fills", "rejects", "max_drawdown",
            "max_abs_position", "mean_slippage", "tick_to_trade_p50_us", "tick_to_trade_p99_us")
    rows = [[name] + [_cell(numbers[k]) for k in keys] + [numbers["status"]]
            for name, numbers in ranked(summary)]
    widths = [max(len(r[i]) for r in [heads, *rows]) for i in range(len(heads) - 1)]
    lines = []
    for r in [heads, *rows]:
        cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:-1], widths[1:])]
        lines.append("  ".join(cells + [r[-1]]))
    return "\n".join(lines)
