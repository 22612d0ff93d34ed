"""``hftlab bench``: throughput and latency of the real processes, beside a bare baseline.

Every figure is measured, none is guessed, and each comes with a baseline taken in the
same run on the same machine, because a number alone says little about IPC in Python:

- **Throughput.** The four processes run with the gateway in benchmark mode
  (``--bench-ticks``); a SIGUSR1 makes it send a burst of N ticks in large writes, as
  fast as the orderbook takes them. The book header's counters (``last_seq``,
  ``updates``, ``gaps``) say whether every tick reached the book; the burst's first
  tick's ``ts_ns`` and the ``written_ns`` of its last record say how long it took. The
  burst is repeated (``throughput_runs``: at least 3, min/median/max; the figure is the
  median), each a new burst with seqs after the last's. Two bare readers receive the same
  burst from a second gateway: one does the book's work per tick, bare (split, convert
  the four fields, one seqlocked write: ``fair_baseline_throughput_ticks_per_s``, the
  comparison that means something), one only splits it into lines (the stream's
  ceiling, ``stream_ceiling_ticks_per_s``).
- **Latency.** Then the gateway ticks at a calm pace (random intervals of mean
  ``tick_interval``) that leaves the machine mostly idle, and every hop is timestamped
  with ``time.time_ns()``, the one
  clock that every process on one machine shares: the gateway made the tick (PRICE
  ``ts_ns``), the orderbook wrote it (record ``written_ns``), the strategy saw it and
  decided (its ``--latency-log``), the order manager received the order (journal
  ``recv_ns``). Tick-to-trade is ``recv_ns - tick_ts_ns`` of each journalled order.
  The baseline is four bare processes on the same path with no trading logic: a
  timestamped line over TCP, into a shared-memory record (the book's seqlock, written
  the way the book writes it), polled the same way the strategy polls, and over TCP again.

The processes keep their files (the journal, the logs) in RAM where the system has a folder
there (``/dev/shm`` on Linux; ``--files-in DIR`` to choose): the figures are about IPC, and a
journal on a disk adds the disk's stalls to the order hop (``--journal-cost DIR`` measures them).

CPU per process (``cpu_idle_cores``): while the four processes run with no tick flowing
(only heartbeats) and while paced, from ``/proc/PID/task/*/schedstat`` (nanoseconds) on
Linux, n/a elsewhere. The report prints the issue's targets beside the figures
(``targets``); nothing asserts them, a figure depends on the machine and its load.

The comparison of clocks across processes is sound only on one machine: across
machines ``time.time_ns()`` differs by the clocks' offset (PTP or NTP would be needed).

Run: ``hftlab bench [--quick] [--json PATH] [--plot PATH]``.

The package, one idea a module:

- `hftlab.bench.runner`: starts the real processes and measures them beside the
  baselines (`bench` is the whole run);
- `hftlab.bench.bare`: starts the bare baseline processes and measures them;
- `hftlab.bench.baseline`: the bare baseline processes, a program of their own
  (``python -m hftlab.bench.baseline ROLE --help``);
- `hftlab.bench.measure`: percentiles, CPU per process, the machine, waiting, a burst;
- `hftlab.bench.report`: the text table and the histograms;
- `hftlab.bench.wakeups`: what the server's loop (blocking, a thread, a timeout, selectors,
  asyncio) adds to one TCP hop into a sleeping process (``hftlab bench --wakeups``).

This module is the ``hftlab bench`` command line, and re-exports what lessons use.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from hftlab import book
from hftlab.bench.bare import measure_bare_reader, measure_baseline_latency
from hftlab.bench.measure import BenchError, percentiles
from hftlab.bench.report import plot, report, report_journal_cost
from hftlab.bench.runner import (DEFAULT, QUICK, TICK_INTERVAL, bench, measure_burst, measure_journal_cost,
                                 measure_system, throughput_curve)
from hftlab.bench.wakeups import measure_wakeups, report_wakeups
from hftlab.launcher import LaunchError

__all__ = ["main", "bench", "report", "plot", "throughput_curve", "measure_burst", "measure_system",
           "measure_bare_reader", "measure_baseline_latency", "measure_journal_cost",
           "report_journal_cost", "measure_wakeups", "report_wakeups", "percentiles", "BenchError",
           "QUICK", "DEFAULT", "TICK_INTERVAL"]


def main(argv=None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    _check(p, args)
    if args.wakeups:
        print(report_wakeups(measure_wakeups(gap=args.gap)), flush=True)
        return 0
    if args.journal_cost is not None:
        return _journal_cost(args)
    return _bench(args)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hftlab bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a short run (about 15 s): fewer ticks, 3 s windows")
    p.add_argument("--ticks", type=int, default=None, help="ticks in the throughput burst")
    p.add_argument("--duration", type=float, default=None, help="seconds of each latency window")
    p.add_argument("--tick-interval", type=float, default=TICK_INTERVAL,
                   help=f"mean seconds between paced ticks of each symbol (default {TICK_INTERVAL})")
    p.add_argument("--poll-interval", type=float, default=None,
                   help="the strategy's (and the baseline poller's) poll interval in seconds")
    p.add_argument("--json", metavar="PATH", help="write the results to this JSON file")
    p.add_argument("--plot", metavar="PATH", help="save histograms of every hop to this PNG file")
    p.add_argument("--journal-cost", metavar="DIR", nargs="?", const=".",
                   help="instead: measure what fsyncing the journal costs an order, with the journal "
                        "in DIR (default: the current folder)")
    p.add_argument("--orders", type=int, default=500, help="orders per setting for --journal-cost")
    p.add_argument("--files-in", metavar="DIR", default=None,
                   help="where the processes keep their journal and logs during the run (default: "
                        "/dev/shm, in RAM, where it exists: the figures then measure IPC, not a disk)")
    p.add_argument("--wakeups", action="store_true",
                   help="instead: what each kind of server loop (blocking recv, a thread, a socket "
                        "timeout, selectors, asyncio) adds to one TCP hop into a sleeping process")
    p.add_argument("--gap", type=float, default=0.01,
                   help="with --wakeups: seconds between messages, how long the server sleeps (default 0.01)")
    return p


def _check(p: argparse.ArgumentParser, args) -> None:
    """Exit with a usage error (status 2) on a value the bench cannot use."""
    for name in ("ticks", "duration", "tick_interval", "poll_interval", "gap"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive; got {value}")
    if args.files_in is not None and not os.path.isdir(args.files_in):
        p.error(f"--files-in must be an existing folder; got {args.files_in!r}")


def _journal_cost(args) -> int:
    """hftlab bench --journal-cost DIR: print what an fsync costs an order."""
    try:
        print(report_journal_cost(measure_journal_cost(args.orders, args.journal_cost),
                                  os.path.abspath(args.journal_cost)), flush=True)
    except (BenchError, LaunchError, OSError) as exc:
        print(f"hftlab bench: {exc}", file=sys.stderr)
        return 1
    return 0


def _bench(args) -> int:
    """hftlab bench: measure, print the table, save the JSON and the plot if asked."""
    try:
        results = bench(args.quick, args.ticks, args.duration, args.tick_interval, args.poll_interval,
                        files_in=args.files_in)
    except (BenchError, LaunchError, book.BookError, OSError) as exc:
        print(f"hftlab bench: {exc}", file=sys.stderr)
        return 1
    print(report(results), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({k: v for k, v in results.items() if k != "samples_ns"}, f, indent=2)
    if args.plot:
        plot(results, args.plot)
    return 0
