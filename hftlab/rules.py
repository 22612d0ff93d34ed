"""The strategy's trading rules, with no I/O: the price and news signals, the agreement
rule, positions and the orders in flight.

(A *signal* here is a trading signal, BUY or SELL; the POSIX signals of this course,
SIGTERM and friends, live in `hftlab.process`.) Pure functions and one small state
machine (`Trader`), so a notebook can replay a seeded price series through exactly the
logic the strategy process runs.

- Price signal: the short moving average strictly above the long one is BUY, strictly
  below is SELL, equal (or not enough history yet) is nothing.
- News signal: sentiment strictly above the bullish threshold is BUY, strictly below
  the bearish threshold is SELL, otherwise nothing.
- Act only when both agree.
- A position per symbol (flat, long or short). A BUY wants to be long ``qty``, a SELL
  short ``qty``; an order is sent only to change the position, so a signal that stays
  on never sends the same order twice, and a symbol with an order in flight sends no
  other until the reply comes. The position changes only when the order is ACKed.
- A symbol whose position is not known (a restarted strategy that has not yet heard
  from the order manager, see `Trader.forget`) sends no order until `Trader.learn`.
- News in its place among the prices, by *event time*, not by arrival: a price is decided
  with the news the gateway sent before it (``ts_ns`` of the NEWS line not after the
  price's), however the two arrived. Prices reach the strategy through the orderbook and the
  book, one hop more than news, so a NEWS line sent just after a price often arrives before
  it; applied at once, it would decide that price, and the same feed would give other orders
  on another run. A news line stamped after the price waits in `Trader.news` for a later one.
"""

from __future__ import annotations

import bisect
from collections import deque
from typing import NamedTuple

__all__ = ["BUY", "SELL", "moving_average", "price_signal", "news_signal", "combine", "order_for",
           "position_name", "Decision", "Trader"]

BUY, SELL = "BUY", "SELL"


def moving_average(values, n: int) -> float:
    """Mean of the last n values."""
    tail = list(values)[-n:]
    return sum(tail) / len(tail)


def price_signal(history, short: int, long: int) -> str | None:
    if len(history) < long:
        return None
    fast, slow = moving_average(history, short), moving_average(history, long)
    if fast > slow:
        return BUY
    if fast < slow:
        return SELL
    return None


def news_signal(sentiment: int | None, bullish: int, bearish: int) -> str | None:
    if sentiment is None:
        return None
    if sentiment > bullish:
        return BUY
    if sentiment < bearish:
        return SELL
    return None


def combine(price_side: str | None, news_side: str | None) -> str | None:
    """The agreement rule: a side only when both signals name the same one."""
    return price_side if price_side is not None and price_side == news_side else None


def order_for(position: int, side: str | None, qty: int):
    """The (side, quantity) that moves `position` to where `side` wants it, or None."""
    if side is None:
        return None
    target = qty if side == BUY else -qty
    change = target - position
    if change == 0:
        return None
    return (BUY, change) if change > 0 else (SELL, -change)


def position_name(position: int) -> str:
    return "flat" if position == 0 else ("long" if position > 0 else "short")


class Decision(NamedTuple):
    """An order to send, and why: the moving averages and the sentiment that agreed."""
    symbol: str
    side: str
    qty: int
    price: float
    short_ma: float
    long_ma: float
    sentiment: int
    tick_ts_ns: int = 0  # when the tick that decided it was made (the order carries it)


class Trader:
    """Per-symbol history, positions and orders in flight; fed prices, news and replies."""

    def __init__(self, symbols, short: int = 5, long: int = 20, bullish: int = 60,
                 bearish: int = 40, qty: int = 10):
        self.short, self.long, self.bullish, self.bearish, self.qty = short, long, bullish, bearish, qty
        self.history = {s: deque(maxlen=long) for s in symbols}
        self.position = {s: 0 for s in symbols}
        # The orders in flight: order_id -> Decision, at most one per symbol, from `sent`
        # until its ACK or REJECT. The only record of them: the strategy re-sends these.
        self.pending = {}
        self.unknown = set()  # symbols whose position is not known yet: no orders for them
        self.sentiment = None
        self.news = []  # [(ts_ns, sentiment)] received but stamped after the prices seen so far

    @classmethod
    def from_config(cls, config) -> "Trader":
        return cls(config.symbols, config.short_window, config.long_window,
                   config.bullish, config.bearish, config.order_qty)

    def on_news(self, sentiment: int, ts_ns: int = 0) -> None:
        """News sent at `ts_ns`: it counts for the prices stamped at or after that time (with
        no time, 0, at once)."""
        if ts_ns == 0:
            self.sentiment = sentiment
        else:
            bisect.insort(self.news, (ts_ns, sentiment))

    def on_price(self, symbol: str, price: float, ts_ns: int = 0) -> Decision | None:
        """Record a price (of a tick made at `ts_ns`); return the order to send now, if any.
        The news sent before the tick counts first (with no time, 0: all news received)."""
        news = self.news
        if news and (ts_ns == 0 or news[0][0] <= ts_ns):
            cut = len(news) if ts_ns == 0 else bisect.bisect_right(news, (ts_ns, 101))
            self.sentiment = news[cut - 1][1]
            del news[:cut]
        history = self.history[symbol]
        history.append(price)
        side = combine(price_signal(history, self.short, self.long),
                       news_signal(self.sentiment, self.bullish, self.bearish))
        if side is None or symbol in self.unknown or any(d.symbol == symbol for d in self.pending.values()):
            return None
        order = order_for(self.position[symbol], side, self.qty)
        if order is None:
            return None
        return Decision(symbol, order[0], order[1], price, moving_average(history, self.short),
                        moving_average(history, self.long), self.sentiment, ts_ns)

    def forget(self, symbols) -> None:
        """Stop trading `symbols` until their positions are learnt (`learn`)."""
        self.unknown.update(s for s in symbols if s in self.position)

    def learn(self, symbol: str, position: int) -> bool:
        """Take `position` (from the order manager's journal) for a symbol we had forgotten.

        False, and nothing changes, if the symbol's position was known already."""
        if symbol not in self.unknown:
            return False
        self.unknown.discard(symbol)
        self.position[symbol] = position
        return True

    def sent(self, order_id: str, decision: Decision) -> None:
        self.pending[order_id] = decision

    def on_ack(self, order_id: str) -> Decision | None:
        decision = self.pending.pop(order_id, None)
        if decision is not None:
            sign = 1 if decision.side == BUY else -1
            self.position[decision.symbol] += sign * decision.qty
        return decision

    def on_reject(self, order_id: str) -> Decision | None:
        return self.pending.pop(order_id, None)
