"""A class in one match: how tick-to-trade grows with the number of strategies on one feed.

    python -m hftlab.bench.crowd [--sizes 1,4,16] [--duration 8] [--out DIR]

One match (`hftlab.match.Match`) for each size N, one after the other in this run: N
copies of our strategy (the timed one, `hftlab.bench.timed`, each with its latency log),
each with its own id, at the FAST cadence on the trending walk, for ``--duration``
seconds. Two figures per strategy, summed up per match as the median and the worst of
the strategies' p50 (and p99), and the median p50 against the lone strategy's, measured
in the same run:

- book -> strategy: from the orderbook's write of a tick (the record's written_ns) to the
  strategy's look that saw it, over every tick each strategy saw (its latency log);
- tick-to-trade: the gateway's tick time to the order manager's receipt of the order it
  caused, over the orders (the match's event file). With them, the orderbook's CPU
time per tick written (Linux: /proc schedstat), which grows with the readers it has to
ring. Figures are printed, never asserted (docs/performance.md has those of this machine
and what they mean).

Every copy decides on the same ticks (they are the same strategy on the same prices), so
a tick that makes an order makes N orders at once: the figures include the doorbell
waking N sleeping readers one by one and the order manager answering N orders in turn.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time

from hftlab.bench.measure import cpu_seconds
from hftlab.config import FAST, Config
from hftlab.match import MATCH_DEFAULTS, Match

__all__ = ["SIZES", "crowd", "table", "main"]

SIZES = (1, 4, 16)


def crowd(n: int, duration: float, out: str) -> dict:
    """One match of `n` copies of our strategy; its figures (microseconds)."""
    config = Config(**FAST, **MATCH_DEFAULTS)
    logs = [f"{out}/latency-s{i}.csv" for i in range(n)]
    with Match(config, [f"s{i}=ours --latency-log {log}" for i, log in enumerate(logs)], out,
               duration=duration) as match:
        writer = match.lab.pid("orderbook")
        cpu, ticks = cpu_seconds(writer), match.follower.header()["updates"]
        while match.step():
            time.sleep(0.05)
        cpu, ticks = _minus(cpu_seconds(writer), cpu), match.follower.header()["updates"] - ticks
        summary = match.stop()
    seen = [_book_to_strategy(log) for log in logs]
    seen_p50s = [statistics.median(s) for s in seen if s]
    scores = summary.values()
    p50s = [s["tick_to_trade_p50_us"] for s in scores if s.get("tick_to_trade_p50_us") is not None]
    p99s = [s["tick_to_trade_p99_us"] for s in scores if s.get("tick_to_trade_p99_us") is not None]
    return {"strategies": n, "finished": sum(s["status"].startswith("finished") for s in scores),
            "seen_p50_median": statistics.median(seen_p50s) if seen_p50s else None,
            "seen_p50_worst": max(seen_p50s, default=None),
            "seen_p99_worst": max((_p99(s) for s in seen if s), default=None),
            "orders": sum(s["orders"] for s in scores), "fills": sum(s["fills"] for s in scores),
            "p50_median": statistics.median(p50s) if p50s else None, "p50_worst": max(p50s, default=None),
            "p99_median": statistics.median(p99s) if p99s else None, "p99_worst": max(p99s, default=None),
            "orderbook_us_per_tick": cpu / ticks * 1e6 if cpu is not None and ticks else None}


def _book_to_strategy(path: str) -> list:
    """Microseconds from the book's write to the strategy's look, per tick its latency log
    has ([] without a log: a strategy that never became ready)."""
    try:
        with open(path, newline="") as f:
            return [(int(r["seen_ns"]) - int(r["written_ns"])) / 1000 for r in csv.DictReader(f)]
    except FileNotFoundError:
        return []


def _p99(values: list) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def _minus(after, before):
    return after - before if after is not None and before is not None else None


def table(rows: list) -> str:
    """The figures of one run, with each size's median p50 against the first size's."""
    base = rows[0]["p50_median"] if rows and rows[0]["p50_median"] else None
    seen_base = rows[0].get("seen_p50_median") if rows else None
    out = ["            book -> strategy (each strategy's p50; the worst p99)"
           "    tick-to-trade (each strategy's p50, p99)",
           "strategies  finished  p50 median  p50 worst  p99 worst  vs lone   orders  fills  p50 median  p50 worst"
           "  p99 median  p99 worst  p50 vs lone  orderbook/tick"]
    for r in rows:
        def us(key):
            return f"{r[key]:,.0f} us" if r.get(key) is not None else "-"
        ratio = f"{r['p50_median'] / base:.2f}x" if base and r["p50_median"] else "-"
        per_tick = r.get("orderbook_us_per_tick")
        per_tick = f"{per_tick:,.0f} us" if per_tick is not None else "-"
        seen = r.get("seen_p50_median")
        seen_ratio = f"{seen / seen_base:.2f}x" if seen and seen_base else "-"
        out.append(f"{r['strategies']:>10}  {r['finished']:>8}  {us('seen_p50_median'):>10}  "
                   f"{us('seen_p50_worst'):>9}  {us('seen_p99_worst'):>9}  {seen_ratio:>7}   "
                   f"{r['orders']:>6}  {r['fills']:>5}  "
                   f"{us('p50_median'):>10}  {us('p50_worst'):>9}  {us('p99_median'):>10}  {us('p99_worst'):>9}  "
                   f"{ratio:>11}  {per_tick:>14}")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m hftlab.bench.crowd", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default=",".join(map(str, SIZES)), help="numbers of strategies, e.g. 1,4,16")
    p.add_argument("--duration", type=float, default=8.0, help="seconds of trading per match")
    p.add_argument("--out", default=None, help="keep each match's files in DIR/N (default: a temporary folder)")
    args = p.parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        p.error(f"--sizes takes numbers separated by commas; got {args.sizes!r}")
    if not sizes or min(sizes) < 1:
        p.error("--sizes takes numbers of 1 and up")
    rows = []
    with tempfile.TemporaryDirectory(prefix="hftlab-crowd-") as tmp:
        for n in sizes:
            rows.append(crowd(n, args.duration, f"{args.out or tmp}/{n}"))
            print(table(rows).splitlines()[-1] if len(rows) > 1 else table(rows), flush=True)
    print()
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
