"""Self-checks for the lessons' exercises: run a learner's function against known cases.

Each ``check_*(fn)`` calls ``fn`` on a handful of cases and prints either
``All N cases pass`` or what is wrong with the first failing case and a hint
that points at the idea the case tests (not just "False"). It returns a true or
false `Verdict` so that tests (tests/test_checks.py) can run it against the solutions
(`hftlab.solutions`), the stubs and plausible wrong answers.

A stub that still raises NotImplementedError is "not done yet", not a failure,
so a lesson notebook runs cleanly from top to bottom before any exercise is
done.

Where the package already holds the answer (`hftlab.rules`,
`hftlab.order_manager.check_order`, the book's dtypes), the expected
values come from there, so an exercise can never disagree with the code the
processes run.

One module per lesson (``lesson01`` ... ``lesson12``), and ``common`` for what they
share; a lesson calls them all through this package: ``checks.check_footprint(footprint)``.
"""

from hftlab.checks.common import DidNotReturn, Verdict, bounded
from hftlab.checks.lesson01 import check_make_length_framer
from hftlab.checks.lesson02 import check_fix_quantity
from hftlab.checks.lesson03 import SEQLOCK_LOOPS, check_footprint, check_seqlock_read, seqlock_against_a_writer
from hftlab.checks.lesson04 import check_count_gaps, check_count_gaps_live
from hftlab.checks.lesson05 import check_trigger
from hftlab.checks.lesson06 import check_notional_limit
from hftlab.checks.lesson07 import GATEWAY_KILL_CHOICES, GATEWAY_KILL_TRUTH, check_gateway_kill
from hftlab.checks.lesson08 import check_expected_wait, check_seen_and_missed
from hftlab.checks.lesson09 import check_audit
from hftlab.checks.lesson11 import check_speedup
from hftlab.checks.lesson12 import MATCH_CHOICES, MATCH_KEYS, check_match

__all__ = [
    "check_make_length_framer", "check_fix_quantity", "check_footprint", "check_seqlock_read",
    "check_count_gaps", "check_count_gaps_live", "check_trigger", "check_notional_limit",
    "check_gateway_kill", "check_expected_wait", "check_seen_and_missed", "check_audit",
    "check_speedup", "check_match",
    "Verdict", "bounded", "DidNotReturn", "seqlock_against_a_writer", "SEQLOCK_LOOPS",
    "GATEWAY_KILL_CHOICES", "GATEWAY_KILL_TRUTH", "MATCH_CHOICES", "MATCH_KEYS",
]
