"""Lesson 09's check: an audit of the journal against the ACKs a strategy received."""

from __future__ import annotations

from hftlab.checks.common import Verdict, Wrong, call, run_cases

__all__ = ["check_audit"]


def check_audit(fn) -> Verdict:
    """fn(journal_rows, acks) -> {"missing": [...], "twice": [...], "holes": [...]}."""

    def rows(*pairs):
        return [{"order_no": str(no), "order_id": oid, "side": "BUY", "qty": "10",
                 "symbol": "AAPL", "price": "172.50"} for no, oid in pairs]

    clean = rows((1, "a-1"), (2, "a-2"), (3, "b-1"))
    cases = [
        (clean, [("a-1", 1), ("a-2", 2), ("b-1", 3)], {"missing": [], "twice": [], "holes": []},
         "a clean journal: every ACK in it, each id once, numbers 1..3."),
        (clean, [("a-1", 1)], {"missing": [], "twice": [], "holes": []},
         "orders in the journal that the strategy has not heard ACKed yet are fine: in flight."),
        (clean, [("a-1", 1), ("a-9", 4)], {"missing": [4], "twice": [], "holes": []},
         "an ACK whose number is not in the journal is a trade the broker forgot: report its number."),
        (clean, [("a-2", 1)], {"missing": [1], "twice": [], "holes": []},
         "an ACK is only confirmed if the journal has that number under that same order_id."),
        (rows((1, "a-1"), (2, "a-1"), (3, "a-1")), [], {"missing": [], "twice": ["a-1"], "holes": []},
         "an id booked more than once is listed once in 'twice'."),
        (rows((1, "a-1"), (3, "a-3"), (6, "a-6")), [], {"missing": [], "twice": [], "holes": [2, 4, 5]},
         "holes are the numbers from 1 to the largest order_no that no row has; journal values are strings."),
        ([], [], {"missing": [], "twice": [], "holes": []}, "an empty journal has no problems."),
    ]

    def judge(fn, case):
        journal, acks, want, hint = case
        got = call(fn, journal, acks)
        if not isinstance(got, dict) or {k: sorted(got.get(k, [])) for k in want} != want or \
                any(list(got[k]) != sorted(got[k]) for k in want):
            raise Wrong(f"audit of {len(journal)} journal rows and ACKs {acks} gave {got!r}; "
                         f"expected {want!r} (lists sorted).\n  Hint: {hint}")

    return run_cases("audit", fn, cases, judge)
