"""Lesson 02's check: fix a rejected order's quantity, judged by the order manager's own rules."""

from __future__ import annotations

from hftlab import order_manager, protocol
from hftlab.checks.common import Verdict, Wrong, call, expect, run_cases
from hftlab.config import Config

__all__ = ["check_fix_quantity"]


def check_fix_quantity(fn) -> Verdict:
    """fn(order, reject, max_qty) -> the same order with the largest quantity that is booked,
    or None when no quantity would get it booked."""
    O, R = protocol.Order, protocol.Reject
    ts = 1764087000123456789
    cases = [
        (O("ex-1", ts, "SELL", 5000, "MSFT", 407.58), 1000, 407.60,
         "only the quantity was wrong: send the same order (same id, side, symbol, price) "
         "with the largest quantity the order manager books, max_qty."),
        (O("b7", ts, "BUY", 1001, "AAPL", 172.53), 1000, 172.50,
         "one too many is still too many: the largest booked quantity is max_qty."),
        (O("c3", ts, "BUY", 80, "AMZN", 179.88), 50, 179.90,
         "use the max_qty you are given: this order manager books at most 50."),
        (O("d4", ts, "SELL", 0, "AAPL", 172.53), 1000, 172.50,
         "an order for 0 (or fewer) says nothing about how much to trade: no quantity can "
         "stand for it, so return None and send nothing."),
        (O("e5", ts, "BUY", 10, "AAPL", 250.00), 1000, 172.50,
         "read the reason: the price is out of the band, and no quantity changes that. "
         "Return None."),
        (O("f6", ts, "BUY", 2000, "TSLA", 250.00), 1000, 250.00,
         "read the reason: the symbol is unknown, and a smaller quantity would be rejected "
         "again. Return None."),
    ]

    def judge(fn, case):
        order, max_qty, last_price, hint = case
        config = Config(max_qty=max_qty)
        reason = order_manager.check_order(order, config, last_price)
        reject = R(order.order_id, reason)
        candidate = order._replace(qty=min(order.qty, max_qty))
        want = candidate if order_manager.check_order(candidate, config, last_price) is None else None
        got = call(fn, order, reject, max_qty)
        what = f"fix_quantity({order.side} {order.qty} {order.symbol} @ {order.price:.2f}, " \
               f"REJECT '{reason}', max_qty={max_qty})"
        if got is not None and not isinstance(got, O):
            raise Wrong(f"{what} returned {got!r}: return a protocol.Order, or None.")
        if want is not None and isinstance(got, O) and got._replace(qty=want.qty) != want:
            changed = [f for f in O._fields if f != "qty" and getattr(got, f) != getattr(want, f)]
            raise Wrong(f"{what} changed {', '.join(changed)}.\n  Hint: change only the "
                         "quantity: order._replace(qty=...).")
        if want is not None and isinstance(got, O) and 0 < got.qty < want.qty:
            hint = (f"qty {got.qty} would be booked, but it gives away part of the order: "
                    f"the largest quantity booked is {want.qty}.")
        expect(got, want, what, hint)

    return run_cases("fix_quantity", fn, cases, judge)
