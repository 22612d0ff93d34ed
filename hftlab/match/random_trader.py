"""A seeded random trader: the baseline every strategy in a match should beat.

    python -m hftlab.match.random_trader [the strategy's flags]     (a match's ``random`` entry)

It is our strategy (`hftlab.strategy.Strategy`: the book, the links, positions, re-sends,
the back-off after a REJECT) with another `decide`: on each new price it trades with
probability `TRADE_PROBABILITY`, to a random side, moving its position to plus or minus
``order_qty`` by the same rule as ours (`hftlab.rules.order_for`), one order in flight
per symbol. Its random numbers come from ``--seed`` and its ``--strategy-id`` together
(crc32 of the id, stable across runs, unlike ``hash()``), so the same match on the same
prices makes the same decisions, and two random entries do not trade alike.
"""

from __future__ import annotations

import random
import zlib

from hftlab import process, rules, strategy

__all__ = ["TRADE_PROBABILITY", "RandomTrader", "seed_of", "run", "main"]

TRADE_PROBABILITY = 0.1  # per new price: often enough to trade in a short match, not every tick


def seed_of(config) -> int:
    """The trader's seed: the config's seed and its strategy id, combined."""
    return (config.seed << 32) ^ zlib.crc32(config.strategy_id.encode())


class RandomTrader(strategy.Strategy):
    """`Strategy` whose decisions are coin flips rather than moving averages and news."""

    def __init__(self, config, log):
        super().__init__(config, log)
        self.rng = random.Random(seed_of(config))

    def trade(self, prices: list) -> None:
        # A tick the book conflated away (`missed`: overwritten before this look) still
        # takes its two draws, so that the draws stay in step with the feed, not with how
        # busy the machine was.
        for _quote, missed in prices:
            for _ in range(missed):
                self.rng.random()
                self.rng.choice((rules.BUY, rules.SELL))
        super().trade(prices)

    def decide(self, quote) -> rules.Decision | None:
        # Draw both numbers on every price, traded or not, so that the sequence of decisions
        # depends on the prices alone and not on when the replies came.
        trade = self.rng.random() < TRADE_PROBABILITY
        side = self.rng.choice((rules.BUY, rules.SELL))
        t = self.trader
        if not trade or quote.symbol in t.unknown or any(d.symbol == quote.symbol for d in t.pending.values()):
            return None
        order = rules.order_for(t.position[quote.symbol], side, self.config.order_qty)
        if order is None:
            return None
        return rules.Decision(quote.symbol, order[0], order[1], quote.price, 0.0, 0.0,
                              t.sentiment if t.sentiment is not None else 0, quote.ts_ns)

    def why(self, order_id: str, d: rules.Decision) -> str:
        return f"{d.side} {d.qty} {d.symbol} @ {d.price:.2f} as {order_id}: a coin flip"


def run(config, log) -> None:
    strategy.run(config, log, kind=RandomTrader)


def main(argv=None) -> int:
    return process.main("random_trader", "Trade at random (seeded) on book prices: a match's baseline.",
                        run, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
