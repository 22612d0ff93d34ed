"""The strategy's rules, case by case: equal averages and thresholds included."""

import pytest
from hypothesis import given, settings, strategies as st

from hftlab.rules import (BUY, SELL, Trader, combine, moving_average, news_signal,
                            order_for, price_signal)


def test_moving_average_uses_the_last_n_values():
    assert moving_average([1, 2, 3, 4, 10], 2) == 7
    assert moving_average([1, 2, 3], 3) == 2


@pytest.mark.parametrize("history, expected", [
    ([1, 1, 1, 2, 3], BUY),      # short (2.5) strictly above long (1.6)
    ([3, 3, 3, 2, 1], SELL),     # short (1.5) strictly below long (2.4)
    ([2, 2, 2, 2, 2], None),     # equal averages: nothing
    ([2, 2, 2], None),           # not enough history for the long window
])
def test_price_signal(history, expected):
    assert price_signal(history, short=2, long=5) == expected


@pytest.mark.parametrize("sentiment, expected", [
    (61, BUY), (60, None), (50, None), (40, None), (39, SELL), (100, BUY), (0, SELL), (None, None),
])
def test_news_signal_thresholds_are_strict(sentiment, expected):
    assert news_signal(sentiment, bullish=60, bearish=40) == expected


@pytest.mark.parametrize("price, news, expected", [
    (BUY, BUY, BUY), (SELL, SELL, SELL), (BUY, SELL, None), (SELL, BUY, None),
    (BUY, None, None), (None, BUY, None), (None, None, None),
])
def test_act_only_when_both_agree(price, news, expected):
    assert combine(price, news) == expected


@pytest.mark.parametrize("position, side, expected", [
    (0, BUY, (BUY, 10)), (0, SELL, (SELL, 10)),
    (10, BUY, None), (-10, SELL, None),                 # already there: no duplicate
    (-10, BUY, (BUY, 20)), (10, SELL, (SELL, 20)),      # reverse the position
    (0, None, None),
])
def test_order_for_moves_the_position_once(position, side, expected):
    assert order_for(position, side, 10) == expected


def rising_then_buy_news(trader, symbol="AAPL"):
    trader.on_news(80)
    decisions = [trader.on_price(symbol, p) for p in (100, 100, 100, 101)]
    return [d for d in decisions if d]


def test_trader_sends_one_order_and_waits_for_the_reply():
    trader = Trader(["AAPL"], short=2, long=4, qty=10)
    decisions = rising_then_buy_news(trader)
    assert [(d.side, d.qty) for d in decisions] == [(BUY, 10)]
    trader.sent("o1", decisions[0])
    # The signal stays on, but an order is in flight: nothing more is sent.
    assert trader.on_price("AAPL", 103) is None
    assert trader.on_ack("o1").side == BUY
    assert trader.position["AAPL"] == 10
    # Long already: the same signal again sends nothing.
    assert trader.on_price("AAPL", 104) is None


def test_position_changes_only_on_ack():
    trader = Trader(["AAPL"], short=2, long=4, qty=10)
    (decision,) = rising_then_buy_news(trader)
    trader.sent("o1", decision)
    assert trader.on_reject("o1") == decision
    assert trader.position["AAPL"] == 0
    # After a REJECT the signal may try again.
    assert trader.on_price("AAPL", 105).side == BUY


def test_a_decision_carries_its_ticks_time_into_the_order_line():
    # The orders in flight live in Trader.pending alone: the strategy re-encodes them for a
    # re-send, so the line must come out the same from the Decision every time.
    from hftlab import protocol, strategy
    trader = Trader(["AAPL"], short=2, long=4, qty=10)
    trader.on_news(80)
    decisions = [trader.on_price("AAPL", p, ts_ns=1000 + i) for i, p in enumerate((100, 100, 100, 101))]
    d = decisions[-1]
    assert d.tick_ts_ns == 1003
    trader.sent("o1", d)
    line = strategy.order_line("o1", trader.pending["o1"])
    assert line == strategy.order_line("o1", d)
    (order,) = protocol.Decoder().feed(line)
    assert (order.order_id, order.tick_ts_ns, order.side, order.qty, order.symbol, order.price) == \
        ("o1", 1003, BUY, 10, "AAPL", 101.0)


@settings(max_examples=200, deadline=None)
@given(order_id=st.from_regex(r"[A-Za-z0-9_-]{1,32}", fullmatch=True), ts_ns=st.integers(0, 2**63 - 1),
       side=st.sampled_from([BUY, SELL]), qty=st.integers(1, 10**9),
       symbol=st.from_regex(r"[A-Z][A-Z0-9.]{0,7}", fullmatch=True),
       price=st.integers(1, 10**9).map(lambda cents: cents / 100))
def test_the_strategys_order_line_is_the_bytes_protocol_encode_gives(order_id, ts_ns, side, qty, symbol, price):
    # order_line formats the line in one step (the checking encoder ran cold, on the order's
    # path); for every valid decision it must be exactly what the protocol encodes.
    from hftlab import protocol, strategy
    from hftlab.rules import Decision
    d = Decision(symbol, side, qty, price, price, price, 50, ts_ns)
    assert strategy.order_line(order_id, d) == protocol.encode(protocol.Order(order_id, ts_ns, side, qty,
                                                                               symbol, price))


def test_order_tags_differ_across_runs_and_sort_by_start_time():
    import time
    from hftlab import protocol
    from hftlab.strategy import order_tag
    tags = []
    for _ in range(50):                           # strategies started at different microseconds
        now = time.time_ns() // 1000
        while time.time_ns() // 1000 == now:
            pass
        tags.append(order_tag())
    assert len(set(tags)) == len(tags) and [t[:-4] for t in tags] == sorted(t[:-4] for t in tags)
    assert all(protocol.decode(f"ACK,{t}-123456,1".encode()).order_id == f"{t}-123456" for t in tags)


def test_news_counts_in_its_place_among_the_prices_by_event_time_not_arrival():
    """A NEWS line stamped after a price, and read before it (news takes one hop less),
    does not decide that price; it decides the next one."""
    early, late = Trader(["AAPL"], short=1, long=2), Trader(["AAPL"], short=1, long=2)
    for t in (early, late):
        t.on_news(80, ts_ns=100)
        t.on_price("AAPL", 10.0, ts_ns=150)
    early.on_news(20, ts_ns=300)              # arrives before the price of 250 it followed
    assert early.on_price("AAPL", 11.0, ts_ns=250).side == "BUY"   # decided with the news of 100
    late.on_price("AAPL", 11.0, ts_ns=250)    # arrived in order: the same decision
    late.on_news(20, ts_ns=300)
    assert early.news == [(300, 20)] and early.sentiment == 80
    later = early.on_price("AAPL", 10.5, ts_ns=350)   # after the news of 300: it decides this one
    assert later.sentiment == 20 and later.side == "SELL" and early.news == []


def test_news_without_a_time_counts_at_once_and_a_price_without_one_takes_all_news():
    t = Trader(["AAPL"])
    t.on_news(70)
    assert t.sentiment == 70
    t.on_news(20, ts_ns=5)
    t.on_news(90, ts_ns=9)
    t.on_price("AAPL", 10.0)
    assert t.sentiment == 90 and t.news == []
