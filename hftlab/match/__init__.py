"""``hftlab match``: several strategies trade against one exchange on one feed, and are scored.

    hftlab match --fast --out DIR --entry a=ours --entry b=slow:100 --entry r=random --duration 10

    from hftlab.match import Match
    with Match(config, ["a=ours --short-window 3", "r=random"], "out", duration=10) as match:
        summary = match.wait()        # or: while match.step(): show(match.scoreboard())

Entries (`parse_entry`, in `hftlab.match.entries`): ``ours [OPTIONS]`` (our strategy, with
Config flags of its own), ``slow:MS`` (ours, waiting MS ms before each send),
``random`` (`hftlab.match.random_trader`, the seeded baseline) and ``cmd:COMMAND`` (a
learner's program in the strategy's role, docs/roles.md).

The match's defaults, unless a flag says otherwise (``hftlab match`` applies them,
`MATCH_DEFAULTS`; a `Match` made in Python takes its config as given):

- ``--position-limit 100`` and ``--rate-limit 50``: Ready Trader Go's limits, so a
  strategy that piles up a position or floods the exchange is refused, and it shows.
- ``--momentum 0.3``: the seeded walk trends, so a signal that follows the trend is worth
  something and being late (``slow:MS``) costs money.

What it writes in DIR: ``match_events.csv`` (the order manager's event file,
`hftlab.events`), ``scoreboard.csv`` (each strategy's P&L every 0.25 s, marked to the
book), ``summary.json`` (per strategy: P&L, fills, rejects by kind, drawdown, slippage,
tick-to-trade, status), ``pnl.png``, and every process's log in ``DIR/logs``.

The parts: `hftlab.match.entries` (what an entry is), `hftlab.match.score` (events to
scores, pure), `hftlab.match.report` (the files), `hftlab.match.run` (`Match`: the
processes and the clock), `hftlab.match.command` (the command line), and
`hftlab.match.random_trader`.
"""

from hftlab.match.command import MATCH_DEFAULTS, main
from hftlab.match.entries import Entry, check_entries, parse_entry
from hftlab.match.run import Match
from hftlab.match.score import Row, Tally, max_drawdown, percentile, ranked, reject_kind, table

__all__ = ["MATCH_DEFAULTS", "Match", "Entry", "parse_entry", "check_entries", "Row", "Tally",
           "reject_kind", "percentile", "max_drawdown", "ranked", "table", "main"]
