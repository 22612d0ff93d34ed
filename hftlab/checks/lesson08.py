"""Lesson 08's checks: the expected wait of each reader policy, and conflation (seen and missed)."""

from __future__ import annotations

import math

from hftlab.checks.common import Verdict, Wrong, bounded, call, run_cases

__all__ = ["check_expected_wait", "check_seen_and_missed"]


def check_expected_wait(fn) -> Verdict:
    """fn(policy, interval_s, wake_us) -> the typical wait (us) from a write to the reader's look.

    policy is "spin", "sleep" (a selectors.DefaultSelector, epoll on Linux, with
    timeout interval_s) or "doorbell"; wake_us is what waking a sleeping process costs."""
    cases = [
        ("sleep", 0.001, 50.0, 550.0, "a tick lands at a random moment of the sleep: it waits half "
                                      "the interval on average, plus the wake-up at the end."),
        ("sleep", 0.005, 40.0, 2540.0, "half the interval, plus the wake-up."),
        ("sleep", 0.0001, 50.0, 550.0, "epoll counts its timeout in whole milliseconds, rounded "
                                       "up: asking for 0.1 ms sleeps 1 ms."),
        ("doorbell", 0.001, 50.0, 50.0, "the doorbell does not depend on any interval: the writer "
                                        "wakes the reader at once, which costs one wake-up."),
        ("spin", 0.001, 50.0, 0.0, "a spinning reader never sleeps: nothing to wait for, "
                                   "nothing to wake (count its look as 0)."),
    ]

    def judge(fn, case):
        policy, interval, wake, want, hint = case
        got = call(fn, policy, interval, wake)
        what = f"expected_wait({policy!r}, {interval!r}, {wake!r})"
        if isinstance(got, bool) or not isinstance(got, (int, float)):
            raise Wrong(f"{what} returned {got!r}: return a number of microseconds.")
        if not math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-6):
            raise Wrong(f"{what} returned {got!r}, expected {want!r}.\n  Hint: {hint}")

    return run_cases("expected_wait", fn, cases, judge)


def check_seen_and_missed(fn) -> Verdict:
    """fn(looks) -> (seen, missed): a reader's looks at a record's `updates` counter."""
    cases = [([0, 1, 1, 4, 9], (3, 6)), ([5], (0, 0)), ([0, 0, 0], (0, 0)), ([2, 3, 4, 5], (3, 0)),
             ([0, 100], (1, 99))]

    def judge(fn, case):
        looks, want = case
        got = bounded(fn, list(looks), hint="one pass over the looks is enough; no loop needs to wait.")
        if not isinstance(got, (tuple, list)) or tuple(got) != want:
            raise Wrong(f"seen_and_missed({looks}) returned {got!r}, expected {want}.\n  Hint: a look "
                         "that finds the counter moved by k saw 1 tick and missed k - 1; one that "
                         "finds it unchanged saw none; the first value is only where counting starts.")

    return run_cases("seen_and_missed", fn, cases, judge)
