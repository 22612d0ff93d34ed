"""Why these choices: the alternatives a learner would reach for, measured side by side.

The lab makes two IPC choices: text lines over TCP for events (the feed, the orders) and
a seqlocked shared-memory book for state (the latest prices). This package measures them
live against what a learner would otherwise pick, counting what was lost or torn and not
only how fast:

- `feeds`: TCP lines vs ZeroMQ PUB/SUB vs ``multiprocessing.Queue`` (throughput, ticks
  delivered vs sent, one-way latency of paced ticks).
- `books`: `hftlab.book.SharedPriceBook` vs ``multiprocessing.Manager().dict()`` vs a
  plain mmap'd file with ``struct`` and no lock (cost per access, torn reads, time until
  a reader sees a new price).

Every run starts real processes (writer or sender in a child process, reader or receiver
in the caller), is bounded in time and count, and stops and removes everything it made.
Lesson 11 runs it; ``python -m hftlab.alternatives`` prints the tables.
"""

from __future__ import annotations

from hftlab.alternatives._child import AlternativesError
from hftlab.alternatives.books import STORES, BookResult, book_table, measure_book
from hftlab.alternatives.feeds import (TRANSPORTS, FeedResult, LatencyResult, feed_table,
                                       latency_table, measure_feed, measure_latency)

__all__ = ["AlternativesError", "TRANSPORTS", "STORES", "FeedResult", "LatencyResult",
           "BookResult", "measure_feed", "measure_latency", "measure_book", "run_all",
           "feed_table", "latency_table", "book_table", "report", "summary"]

LATENCY_TRANSPORTS = ("tcp", "zmq", "queue")


def run_all(ticks: int = 200_000, latency_ticks: int = 1000, interval: float = 0.0005,
            book_seconds: float = 0.5, say=print) -> dict:
    """Every comparison once, at lesson sizes: {"feed": [...], "latency": [...], "book": [...]}.

    About 20 to 30 seconds on a 2-core machine. `say` is told what runs (None: silent).
    """
    say = say or (lambda line: None)
    results = {"feed": [], "latency": [], "book": []}
    for transport in TRANSPORTS:
        say(f"feed: {ticks:,} ticks over {transport}")
        results["feed"].append(measure_feed(transport, ticks))
    for transport in LATENCY_TRANSPORTS:
        say(f"latency: {latency_ticks:,} paced ticks over {transport}")
        results["latency"].append(measure_latency(transport, latency_ticks, interval))
    for store in STORES:
        say(f"book: {store}")
        results["book"].append(measure_book(store, seconds=book_seconds))
    return results


def report(results: dict) -> str:
    """The three tables of run_all's results, as plain text."""
    return "\n\n".join([
        "FEED  throughput (ticks delivered per second; x first = ratio to the first row)",
        feed_table(results["feed"]),
        "FEED  one-way latency of paced ticks, microseconds",
        latency_table(results["latency"]),
        "BOOK  cost per access (microseconds), torn copies, time until a reader sees a new price",
        book_table(results["book"]),
    ])


def _figures(results: dict) -> dict:
    """The headline figures of one run_all, by name (for summary)."""
    out = {}
    tcp = results["feed"][0].ticks_per_s if results["feed"] else 0
    for r in results["feed"]:
        out[f"feed {r.transport}: ticks/s"] = r.ticks_per_s
        out[f"feed {r.transport}: x tcp"] = r.ticks_per_s / tcp if tcp else 0.0
        out[f"feed {r.transport}: delivered %"] = 100 * r.delivered / r.sent
    for r in results["latency"]:
        out[f"latency {r.transport}: p50 us"] = r.p50_us
        out[f"latency {r.transport}: p99 us"] = r.p99_us
    for r in results["book"]:
        out[f"book {r.store}: write us"] = r.write_us
        out[f"book {r.store}: read us"] = r.read_us
        out[f"book {r.store}: torn reads %"] = 100 * r.torn_read_share
        out[f"book {r.store}: torn snapshots %"] = 100 * r.torn_snapshot_share
        out[f"book {r.store}: seen p50 us"] = r.visible_p50_us
    return out


def summary(runs: list) -> str:
    """min / median / max of every headline figure over several run_all results."""
    import statistics
    per_run = [_figures(r) for r in runs]
    rows = [f"{'figure':<40}{'min':>12}{'median':>12}{'max':>12}"]
    for name in per_run[0]:
        values = [f[name] for f in per_run if f.get(name) is not None]
        if values:
            rows.append(f"{name:<40}{min(values):>12,.2f}{statistics.median(values):>12,.2f}"
                        f"{max(values):>12,.2f}")
    return "\n".join(rows)
