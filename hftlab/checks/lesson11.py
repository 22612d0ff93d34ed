"""Lesson 11's check: the speed-up of one transport over another, in ticks delivered per second."""

from __future__ import annotations

import math

from hftlab.alternatives.feeds import FeedResult
from hftlab.checks.common import Verdict, Wrong, call, run_cases

__all__ = ["check_speedup"]


def check_speedup(fn) -> Verdict:
    """fn(new, base) -> how many times as many ticks per second `new` delivered as `base`."""
    def run(transport, sent, delivered, seconds):
        return FeedResult(transport, sent, delivered, sent - delivered, 0, seconds)

    cases = [
        (run("queue_batched", 1000, 1000, 0.25), run("queue", 1000, 1000, 2.0),
         "each run's rate is its ticks over its seconds; divide the new rate by the base rate."),
        (run("tcp", 4000, 4000, 1.0), run("queue", 1000, 1000, 1.0),
         "the two runs sent different numbers of ticks: compare rates (ticks per second), "
         "not times."),
        (run("zmq", 100_000, 10_000, 0.1), run("tcp", 100_000, 100_000, 0.5),
         "count the ticks DELIVERED: a tick that ZeroMQ dropped was not carried, however "
         "fast it was sent."),
        (run("tcp", 500, 500, 0.5), run("tcp", 500, 500, 0.5), "the same run twice is 1.0."),
    ]

    def judge(fn, case):
        new, base, hint = case
        want = new.ticks_per_s / base.ticks_per_s
        got = call(fn, new, base)
        what = f"speedup({new.transport} {new.delivered:,} of {new.sent:,} in {new.seconds:g} s, " \
               f"{base.transport} {base.delivered:,} of {base.sent:,} in {base.seconds:g} s)"
        if isinstance(got, bool) or not isinstance(got, (int, float)):
            raise Wrong(f"{what} returned {got!r}: return a number (a ratio, like 2.5).")
        if not math.isclose(got, want, rel_tol=1e-6):
            if want != 1 and got and math.isclose(got, 1 / want, rel_tol=1e-6):
                hint = ("it is upside down: how many times as fast `new` is means new's rate "
                        "divided by base's rate.")
            raise Wrong(f"{what} returned {got!r}, expected {want!r}.\n  Hint: {hint}")

    return run_cases("speedup", fn, cases, judge)
