"""What the order manager decides about an order: refused, and why (`check_order`, the
rules every order must meet; `check_limits`, the limits a strategy must stay within), or
filled, and at what price (`fill_at`). Pure functions, so that a lesson can ask them
about any order, and the order manager (`hftlab.order_manager`) applies the very same.

The fill: at the book's price for the symbol when the order is handled, whatever price
the order carried (a market order; its price only has to lie within the price band of
the book's). Not a limit order, which would refuse to fill at a worse price: a strategy
that is late then trades at the worse price, and the loss shows in its P&L and its
slippage, where a limit order would hide it as an order that never filled.
"""

from __future__ import annotations

import math

from hftlab import accounts, protocol
from hftlab.journal import Filled

__all__ = ["check_order", "check_limits", "fill_at"]


def check_order(order: protocol.Order, config, last_price: float | None = None) -> str | None:
    """Why this order must be rejected, or None if it may be booked. Pure."""
    if order.symbol not in config.symbols:
        return f"unknown symbol {order.symbol} (known: {' '.join(config.symbols)})"
    if order.qty <= 0:
        return f"quantity must be positive; got {order.qty}"
    if order.qty > config.max_qty:
        return f"quantity {order.qty} is above the maximum {config.max_qty}"
    if not (math.isfinite(order.price) and order.price > 0):
        return f"price must be a positive number; got {order.price}"
    if float(f"{order.price:.2f}") != order.price:
        # The journal books prices in cents; 0.001 must not become 0.00 there.
        return f"price {order.price!r} has more than two decimals; prices are in cents"
    if last_price and abs(order.price / last_price - 1) > config.price_band:
        return (f"price {order.price:.2f} is more than {config.price_band:.0%} away "
                f"from the book's {last_price:.2f}")
    return None


def check_limits(order: protocol.Order, config, strategy: str, position: int, recent: int) -> str | None:
    """Why this order breaks a limit, or None. `position`: what `strategy` holds in the
    order's symbol now; `recent`: the messages its connection sent in the last second,
    this one included. Pure."""
    if config.rate_limit and recent > config.rate_limit:
        return (f"message rate limit: {recent} messages in the last second on this connection "
                f"(above {config.rate_limit})")
    after = position + (order.qty if order.side == "BUY" else -order.qty)
    if config.position_limit and abs(after) > config.position_limit:
        return (f"position limit: {strategy or 'this client'} would hold {after} {order.symbol} "
                f"(beyond +-{config.position_limit})")
    return None


def fill_at(order: protocol.Order, quote, config) -> Filled:
    """The order's fill: at the book's price (`quote`, read as the order is handled), or at
    the order's own price when the book has none; with its fee."""
    price, seq, ts_ns = (quote.price, quote.seq, quote.ts_ns) if quote else (order.price, 0, 0)
    return Filled(price, accounts.fee(order.qty, price, config.fee_per_share, config.fee_bps), seq, ts_ns)
