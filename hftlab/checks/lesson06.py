"""Lesson 06's check: a notional limit added to the order manager's rules."""

from __future__ import annotations

from hftlab import protocol
from hftlab.checks.common import Verdict, Wrong, bounded, run_cases
from hftlab.config import Config

__all__ = ["check_notional_limit"]


def check_notional_limit(fn) -> Verdict:
    """fn(order, config, last_price, max_notional) -> None to accept, or a reason (str):
    every rule of `order_manager.check_order`, plus qty x price at most max_notional."""
    config = Config(symbols=("AAPL", "MSFT"), max_qty=1000, price_band=0.10)

    def order(qty=10, symbol="AAPL", price=172.50):
        return protocol.Order("o1", 1, "BUY", qty, symbol, price)

    cases = [
        (order(), 172.40, True, "a small sound order is accepted: return None."),
        (order(qty=600), 172.40, False, "600 x 172.50 = 103,500 is above the limit of 100,000: "
                                        "the notional is the quantity times the price."),
        (order(qty=400, price=250.0), None, True, "400 x 250.00 is exactly 100,000: at the limit is allowed."),
        (order(qty=560, price=180.0), 172.40, False,
         "560 x 180.00 = 100,800 is what the order commits: use the order's own price, not the book's."),
        (order(symbol="TSLA"), None, False, "a rule is ADDED to the others, not used instead of them: "
                                            "an unknown symbol must still be rejected (call check_order first)."),
        (order(price=1725.0), 172.40, False, "the price band still holds: call check_order first."),
        (order(qty=0), None, False, "a quantity of zero is still rejected: call check_order first."),
        (order(qty=5, symbol="MSFT", price=410.0), 409.0, True, "5 x 410.00 is far below the limit."),
    ]

    def judge(fn, case):
        o, last, accept, hint = case
        got = bounded(fn, o, config, last, 100_000, seconds=5.0,
                      hint="look for a loop that never ends; each answer needs only a few comparisons.")
        what = (f"your rule on BUY {o.qty} {o.symbol} @ {o.price:.2f} (book {last}, limit 100,000)")
        if accept and got is not None:
            raise Wrong(f"{what} rejected it ({got!r}) but it should be accepted.\n  Hint: {hint}")
        if not accept and not (isinstance(got, str) and got):
            raise Wrong(f"{what} returned {got!r}, but it must be rejected with a reason.\n  Hint: {hint}")

    return run_cases("notional_limit", fn, cases, judge)
