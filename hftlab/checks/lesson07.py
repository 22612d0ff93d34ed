"""Lesson 07's check: a prediction of the book view once the gateway is SIGKILLed."""

from __future__ import annotations

from hftlab.checks.common import Verdict, Wrong, bounded, run_cases

__all__ = ["check_gateway_kill", "GATEWAY_KILL_CHOICES", "GATEWAY_KILL_TRUTH"]


# A decision on the live dashboard: what does the book view show once the gateway is dead?

GATEWAY_KILL_CHOICES = {
    "prices": ("last known", "empty"),
    "stale": ("every row", "some rows", "no row"),
    "feed": ("UP", "DOWN"),
    "seq": ("frozen", "advancing", "back to 0"),
    "orderbook": ("running", "exited"),
}
# What lesson 07 observes on the live system (its cell asserts the same before checking).
GATEWAY_KILL_TRUTH = {"prices": "last known", "stale": "every row", "feed": "DOWN",
                      "seq": "frozen", "orderbook": "running"}
_GATEWAY_KILL_HINTS = {
    "prices": "nobody erases the book when the feed drops: the book is state, the latest price "
              "of each symbol, and it stays until a new price overwrites it.",
    "stale": "the orderbook marks the whole feed DOWN in the book's header, and the view calls "
             "every price of a DOWN feed stale, however young it is.",
    "feed": "the kernel closes a SIGKILLed process's sockets: the orderbook reads end-of-stream "
            "at once and writes FEED_DOWN into the header.",
    "seq": "each record keeps the sequence number of the last PRICE written into it; no PRICE "
           "arrives, so nothing moves (and nothing resets it).",
    "orderbook": "losing its feed is not a reason to die: the orderbook keeps the book, marks it "
                 "stale and reconnects with back-off (hftlab.link.Link).",
}


def _within_07(fn, *args, seconds: float = 5.0):
    """`bounded`, with the hint this answer needs."""
    return bounded(fn, *args, seconds=seconds,
                   hint="return the dict at once; the check runs nothing else.")


def check_gateway_kill(fn, observed: dict | None = None) -> Verdict:
    """fn() -> the learner's prediction of the book view after the gateway is SIGKILLed.

    `observed` is what the lesson saw on its live system (the same keys); it defaults to
    `GATEWAY_KILL_TRUTH`, which the lesson asserts it saw.
    """
    truth = dict(GATEWAY_KILL_TRUTH if observed is None else observed)

    def judge(fn, key):
        got = _within_07(fn)
        if not isinstance(got, dict):
            raise Wrong(f"gateway_kill() returned {got!r}: return a dict with the keys "
                         f"{', '.join(GATEWAY_KILL_CHOICES)}.")
        if got.get(key) not in GATEWAY_KILL_CHOICES[key]:
            choices = " or ".join(repr(c) for c in GATEWAY_KILL_CHOICES[key])
            raise Wrong(f"its {key!r} is {got.get(key)!r}; choose {choices}.")
        if got[key] != truth[key]:
            raise Wrong(f"you predicted {key} {got[key]!r}; the book view showed {truth[key]!r}.\n"
                         f"  Hint: {_GATEWAY_KILL_HINTS[key]}")

    return run_cases("gateway_kill", fn, list(GATEWAY_KILL_CHOICES), judge)
