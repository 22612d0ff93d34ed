"""Money: what fills do to a strategy's position, cash and P&L. Pure, no I/O.

The order manager keeps one `Account` per strategy (`Ledger`), fed each fill as it
happens and, after a restart, each fill read back from its journal; the match's
scoreboard (`hftlab.match`) feeds the same class from the match's event file, so the
two can never disagree on what a number means.

- ``position``: net quantity per symbol (BUYs minus SELLs).
- ``cash``: what the fills paid and received, before fees (a BUY of 10 at 172.53
  is -1725.30).
- ``realized``: the P&L of quantity bought and sold again, at the average cost
  of the position it closed (before fees).
- ``unrealized``: the open position marked to a price (the book's, when asked):
  ``position * (mark - average cost)``.
- ``fees``: what the fills cost (`fee`), always counted against P&L:
  ``pnl = realized + unrealized - fees``, which is also ``cash + position * mark - fees``.

Slippage is kept per order: the fill price minus the price the strategy sent, signed
by side, so that a positive slippage is money lost (bought higher or sold lower
than the strategy saw).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["fee", "slippage", "Account", "Ledger"]


def fee(qty: int, price: float, per_share: float, bps: float) -> float:
    """The fee of a fill of `qty` at `price`: `per_share` a share plus `bps` basis points
    (hundredths of a percent) of its value, in whole cents, rounded half up."""
    return round(qty * per_share + qty * price * bps / 10_000 + 1e-9, 2)


def slippage(side: str, order_price: float, fill_price: float) -> float:
    """Per share: how much worse than the order's price the fill was (negative: better)."""
    return round((fill_price - order_price) * (1 if side == "BUY" else -1), 2) + 0.0  # never -0.0


@dataclass
class Account:
    """One strategy's money: fed fills, asked for P&L at marks."""
    position: dict = field(default_factory=dict)    # symbol -> net quantity
    cost: dict = field(default_factory=dict)        # symbol -> average price of the open position
    cash: float = 0.0
    realized: float = 0.0
    fees: float = 0.0
    fills: int = 0

    def fill(self, side: str, qty: int, symbol: str, price: float, fee: float = 0.0) -> None:
        """A fill of `qty` at `price`: moves the position, the cash and realized P&L."""
        signed = qty if side == "BUY" else -qty
        held, cost = self.position.get(symbol, 0), self.cost.get(symbol, 0.0)
        if held and (held > 0) != (signed > 0):          # it closes (some of) the position
            closed = min(abs(signed), abs(held))
            self.realized += closed * (price - cost) * (1 if held > 0 else -1)
        new = held + signed
        if new == 0:
            self.cost.pop(symbol, None)
        elif held == 0 or (held > 0) != (new > 0):       # opened, or turned around: at this price
            self.cost[symbol] = price
        elif (held > 0) == (signed > 0):                 # added to: the average moves
            self.cost[symbol] = (cost * abs(held) + price * qty) / abs(new)
        self.position[symbol] = new
        self.cash -= signed * price
        self.fees += fee
        self.fills += 1

    def unrealized(self, marks: dict) -> float:
        """The open positions marked to `marks` (symbol -> price); a symbol with no mark
        is marked at its average cost (counts 0)."""
        return sum(q * (marks.get(s, self.cost.get(s, 0.0)) - self.cost.get(s, 0.0))
                   for s, q in self.position.items() if q)

    def pnl(self, marks: dict) -> float:
        """realized + unrealized - fees."""
        return self.realized + self.unrealized(marks) - self.fees


class Ledger(dict):
    """strategy -> `Account`, made on first use."""

    def __missing__(self, strategy: str) -> Account:
        account = self[strategy] = Account()
        return account

    def fill(self, strategy: str, side: str, qty: int, symbol: str, price: float, fee: float = 0.0) -> None:
        self[strategy].fill(side, qty, symbol, price, fee)
