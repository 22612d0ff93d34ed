"""Lesson 12's check: a prediction of what a slowed copy of our strategy loses in a match.

The learner writes down, before the match runs, whose mean slippage per share and whose
P&L come out higher: ``"ours"``, ``"slow"`` or ``"same"``. The check judges that against
the match the lesson just ran (its summary, `hftlab.match.Match.stop`), never against a
stored answer: the measurement is the truth, whatever it was on this machine this time.
"""

from __future__ import annotations

from hftlab.checks.common import Verdict, Wrong, bounded, run_cases

__all__ = ["MATCH_CHOICES", "MATCH_KEYS", "SAME_SLIPPAGE", "SAME_PNL", "check_match"]

MATCH_CHOICES = ("ours", "slow", "same")
MATCH_KEYS = ("slippage", "pnl")
SAME_SLIPPAGE = 0.005   # dollars per share: closer than this, the two slippages are "same"
SAME_PNL = 1.0          # dollars: closer than this, the two P&Ls are "same"

_HINTS = {
    "slippage": {
        "slow": "slippage is the fill price minus the price the strategy saw, signed so that more is "
                "worse. Ours sends within a millisecond of the tick, before the book moves; the slow "
                "copy waits, and on a trending walk the price has moved on, against it, by the time "
                "its order is filled.",
        "ours": "this time the slow copy's fills were the better ones: while it waited, the walk more "
                "often turned back than went on. On a walk that trends that is rare; run the match again.",
        "same": "this time the book hardly moved while the slow copy waited. On a walk that trends it "
                "usually moves on, against the late order; run the match again.",
    },
    "pnl": {
        "ours": "the slow copy pays its slippage on every share of every fill, and on a trending walk "
                "it also buys after the rise has begun and sells after the fall has: the same signals, "
                "worse prices.",
        "slow": "here the late copy came out ahead: its worse fills were outweighed by luck in what it "
                "held when the match ended. Run the match again; a cost paid on every fill wins out.",
        "same": "this time the two ended level: the slow copy's worse fills were matched by luck in "
                "what it held at the end. A cost paid on every fill usually shows; run the match again.",
    },
}


def _measured(summary, key, fast, slow):
    """"ours", "slow" or "same": whose `key` came out higher in the match's summary."""
    if not isinstance(summary, dict) or not all(isinstance(summary.get(n), dict) for n in (fast, slow)):
        raise Wrong(f"the match's summary has no rows for {fast!r} and {slow!r}: run the match "
                    "cell above first, then this one.")
    field, near = ("mean_slippage", SAME_SLIPPAGE) if key == "slippage" else ("pnl", SAME_PNL)
    a, b = summary[fast].get(field), summary[slow].get(field)
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
        raise Wrong(f"the match gave no {field} for both strategies (a strategy with no fill has "
                    "none): run the match cell again.")
    if abs(a - b) < near:
        return "same"
    return "ours" if a > b else "slow"


def check_match(prediction, summary, fast: str = "ours", slow: str = "slow") -> Verdict:
    """prediction: {"slippage": ..., "pnl": ...}, each "ours", "slow" or "same" (whose is
    higher), or a function that returns it; judged against `summary`, the match's figures
    for the strategies named `fast` and `slow`."""

    def judge(_, key):
        got = prediction
        if callable(got):
            got = bounded(got, seconds=3.0, what="your prediction",
                          hint="return the dict at once; nothing needs to run.")
        if got is None or (isinstance(got, dict) and got.get(key) is None):
            raise NotImplementedError
        if not isinstance(got, dict):
            raise Wrong(f"the prediction is {got!r}: write a dict with the keys "
                        f"{', '.join(repr(k) for k in MATCH_KEYS)}.")
        if got[key] not in MATCH_CHOICES:
            choices = " or ".join(repr(c) for c in MATCH_CHOICES)
            raise Wrong(f"its {key!r} is {got[key]!r}; choose {choices}.")
        truth = _measured(summary, key, fast, slow)
        if got[key] != truth:
            higher = "the two were the same" if truth == "same" else f"{truth!r} came out higher"
            raise Wrong(f"you predicted that {got[key]!r} has the higher {key}; in the match, {higher}.\n"
                        f"  Hint: {_HINTS[key][truth]}")

    return run_cases("prediction", None, list(MATCH_KEYS), judge)
