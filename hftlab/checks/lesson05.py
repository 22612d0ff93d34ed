"""Lesson 05's check: which signal turned to make a trade, on cases and on the seeded market's own trades."""

from __future__ import annotations

from hftlab import rules
from hftlab.checks.common import Verdict, bounded, expect, run_cases
from hftlab.config import Config
from hftlab.gateway import NewsWalk, PriceWalk

__all__ = ["check_trigger", "seeded_replay"]


def _bounded(fn, *args, seconds=5.0):
    """`bounded`, with the hint these answers need."""
    return bounded(fn, *args, seconds=seconds,
                   hint="look for a loop that never ends; each answer needs only a few comparisons.")


def seeded_replay(ticks: int = 300, config: Config | None = None):
    """The seeded market of lesson 05 through `rules.Trader`, every order confirmed at once.

    Returns (signals, trades): signals[t - 1] is the (price side, news side) on tick t,
    and trades is [(tick, Decision), ...]."""
    config = config or Config(symbols=("AAPL",))
    walk, mood = PriceWalk(config.symbols[:1], config.seed), NewsWalk(config.seed)
    trader = rules.Trader.from_config(config)
    ticks_per_news = round(config.news_interval / config.tick_interval)
    signals, trades = [], []
    for tick in range(1, ticks + 1):
        if tick % ticks_per_news == 0:
            trader.on_news(mood.step())
        (symbol, price), = walk.step()
        decision = trader.on_price(symbol, price)
        history = trader.history[symbol]
        signals.append((rules.price_signal(history, config.short_window, config.long_window),
                        rules.news_signal(trader.sentiment, config.bullish, config.bearish)))
        if decision is not None:
            trader.sent(f"o{tick}", decision)
            trader.on_ack(f"o{tick}")
            trades.append((tick, decision))
    return signals, trades


def _turned(before, now):
    side = now[0]
    price, news = before[0] != side, before[1] != side
    return "both" if price and news else ("price" if price else "news")


def check_trigger(fn) -> Verdict:
    """fn(before, now) -> 'price', 'news' or 'both': which signal turned to make the trade.

    `before` and `now` are (price side, news side) on the tick before a trade and on the
    trade's tick; on the trade's tick both name the trade's side."""
    cases = [
        ((("SELL", "BUY"), ("BUY", "BUY")), "the news already said BUY; the price signal turned from SELL."),
        ((("BUY", "SELL"), ("BUY", "BUY")), "the averages had already crossed up; the news turned to BUY."),
        ((("BUY", None), ("BUY", "BUY")), "no news yet (None) is not agreement: the news turned."),
        (((None, "SELL"), ("SELL", "SELL")), "no price signal yet (too little history) is not "
                                              "agreement: the price signal turned."),
        ((("BUY", "BUY"), ("SELL", "SELL")), "both signals turned on the same tick (a news message "
                                             "and a price at once): 'both'."),
        ((("SELL", None), ("BUY", "BUY")), "neither named BUY on the tick before: 'both'."),
    ]
    signals, trades = seeded_replay()
    for tick, decision in trades:
        cases.append(((signals[tick - 2], signals[tick - 1]),
                      f"the seeded replay's trade on tick {tick} ({decision.side}): compare each signal "
                      "on the tick before with the trade's side."))

    def judge(fn, case):
        (before, now), hint = case
        got = _bounded(fn, before, now)
        expect(got, _turned(before, now), f"trigger({before}, {now})", hint)

    return run_cases("trigger", fn, cases, judge)
