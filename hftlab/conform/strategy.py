"""The strategy's cases: the harness owns the book (writes its prices), serves the news
feed and plays the order manager; a price feed that disagrees with the book catches a
strategy that reads prices from the socket.

Config: one symbol (AAPL), short window 2, long window 4, bullish 60, bearish 40, qty 10.
The harness writes at most one price every 100 ms and repeats the news every 100 ms.
"""

from __future__ import annotations

import time

from hftlab import book, protocol
from hftlab.conform.harness import CaseFailed, Server, case, read_lines, wait_until

CFG = dict(symbols=("AAPL",), short_window=2, long_window=4, bullish=60, bearish=40,
           order_qty=10, heartbeat_interval=0.5, news_interval=0.1)
TICK = 0.1


class Desk:
    """A scripted order manager: answers POSQUERY with `positions` (0 by default) and ACKs
    each ORDER (the same number again for a re-sent id) unless `policy` says otherwise."""

    def __init__(self, positions=None):
        self.orders = []          # every ORDER received, re-sends included
        self.queries = []
        self.booked = {}          # order_id -> order_no
        self.positions = dict(positions or {})
        self.policy = None        # policy(order) -> "ack", "reject" or "hang up"
        self.server = Server(lambda conn: read_lines(conn, self.on_message))

    def on_message(self, conn, msg):
        if isinstance(msg, protocol.PositionQuery):
            self.queries.append(msg)
            qty = self.positions.get(msg.symbol, 0)
            conn.sendall(protocol.encode(protocol.Position(msg.strategy, msg.symbol, qty)))
        elif isinstance(msg, protocol.Order):
            self.orders.append(msg)
            what = self.policy(msg) if self.policy else "ack"
            if what == "reject":
                conn.sendall(protocol.encode(protocol.Reject(msg.order_id, "rejected by the harness")))
            elif what == "hang up":
                self.server.stop()
            else:
                number = self.booked.setdefault(msg.order_id, len(self.booked) + 1)
                conn.sendall(protocol.encode(protocol.Ack(msg.order_id, number)))

    def distinct(self):
        """Orders by distinct id, first sending of each."""
        seen, out = set(), []
        for o in self.orders:
            if o.order_id not in seen:
                seen.add(o.order_id)
                out.append(o)
        return out


class World:
    """The book, the news feed, the disagreeing price feed and the desk, around one strategy."""

    def __init__(self, ctx, positions=None):
        self.ctx = ctx
        self.book = book.SharedPriceBook(ctx.config.symbols, ctx.config.shm_name)
        ctx.on_cleanup(self.book.unlink)
        ctx.on_cleanup(self.book.close)
        self.written = []
        self.sentiment = 50
        self.news = Server(self._news)
        self.prices = Server(self._prices)
        self.desk = Desk(positions)
        for server in (self.news, self.prices, self.desk.server):
            ctx.on_cleanup(server.stop)
        ctx.config = ctx.config.replace(news_port=self.news.port, price_port=self.prices.port,
                                        order_port=self.desk.server.port)
        ctx.launcher.config = ctx.config
        self.news_seq = 0
        ctx.start()
        if not wait_until(lambda: self.news.live() and self.desk.server.live(), 5.0):
            raise CaseFailed(f"within 5 s of its ready line it had not connected to "
                             f"{'the news feed' if not self.news.live() else 'the order manager'}; "
                             f"log: {ctx.log_tail()}")
        self.book.set_feed_state(book.FEED_UP, "conform")

    def _news(self, conn):
        conn.sendall(protocol.encode(protocol.Hello("NEWS", "conform")))
        while True:
            self.news_seq += 1
            conn.sendall(protocol.encode(protocol.News(self.news_seq, time.time_ns(), self.sentiment)))
            time.sleep(0.1)

    def _prices(self, conn):
        """The price feed, always falling from 500: a strategy reading it would SELL at those prices."""
        conn.sendall(protocol.encode(protocol.Hello("PRICE", "conform")))
        seq, price = 0, 500.0
        while True:
            seq += 1
            price = max(1.0, price - 1.0)
            conn.sendall(protocol.encode(protocol.Price(seq, time.time_ns(), "AAPL", price)))
            time.sleep(0.05)

    def set_news(self, sentiment: int) -> None:
        self.sentiment = sentiment
        time.sleep(0.3)  # a few NEWS lines go out before the next price (news repeats every 0.1 s)

    def walk(self, start: float, step: float, n: int, until=None):
        """Write n prices to the book, TICK apart; stop early when `until()` is true."""
        price = start
        for _ in range(n):
            self.book.update("AAPL", round(price, 2))
            self.written.append(round(price, 2))
            price += step
            time.sleep(TICK)
            if until is not None and until():
                return
        time.sleep(0.3)  # the last price's order, if any, has time to arrive

    def orders(self):
        return self.desk.distinct()


def expect_order(world, side, qty=None):
    orders = world.orders()
    if not orders:
        raise CaseFailed(f"no order; the book had {world.written[-8:]}, news {world.sentiment}; "
                         f"log: {world.ctx.log_tail()}")
    o = orders[-1]
    if o.side != side or (qty is not None and o.qty != qty):
        raise CaseFailed(f"expected {side}{f' {qty}' if qty else ''}, got {protocol.encode(o)!r}")
    return o


@case(1, "it connects to the news feed and the order manager",
      "dial --host:--news-port and --host:--order-port (HFTLAB_NEWS_PORT, HFTLAB_ORDER_PORT)", **CFG)
def connects(ctx):
    World(ctx)


@case(2, "it trades on prices from shared memory, not from the price feed",
      "read prices from the book (SharedPriceBook.attach(--shm-name)), never from the price port",
      **CFG)
def prices_from_book(ctx):
    w = World(ctx)
    w.set_news(80)
    w.walk(100.0, 1.0, 12, until=lambda: w.orders())
    if not w.orders():
        raise CaseFailed(f"no order while the book rose {w.written[0]}..{w.written[-1]} with news 80 "
                         f"(the price feed, which it must not use, was falling from 500); "
                         f"log: {ctx.log_tail()}")
    o = expect_order(w, "BUY")
    if o.price not in w.written:
        raise CaseFailed(f"it ordered at {o.price}, a price not in the book ({w.written}): "
                         "read from the price feed?")


@case(3, "no order before the long window fills",
      "keep the last long_window prices per symbol; no price signal until there are that many", **CFG)
def window(ctx):
    w = World(ctx)
    w.set_news(80)
    w.walk(100.0, 1.0, 3)   # long_window - 1 prices, rising
    time.sleep(0.5)
    if w.orders():
        raise CaseFailed(f"an order after only 3 prices with long_window 4: {protocol.encode(w.orders()[0])!r}")
    w.walk(103.0, 1.0, 1)
    expect_order(w, "BUY", 10)


def only_when_both_agree(ctx, side: str, start: float, step: float, against: int, agrees: int) -> None:
    """Prices move `side`'s way while the news is neutral, then `against` it: no order.
    Then the news `agrees` too: one order of `side`, 10."""
    w = World(ctx)
    w.set_news(50)
    w.walk(start, step, 8)
    w.set_news(against)
    w.walk(start + 8 * step, step, 4)
    if w.orders():
        mood, market = ("bearish", "rising") if side == "BUY" else ("bullish", "falling")
        raise CaseFailed(f"an order while the news was neutral or {mood} in a {market} market: "
                         f"{protocol.encode(w.orders()[0])!r}")
    w.set_news(agrees)
    w.walk(start + 12 * step, step, 6, until=lambda: w.orders())
    expect_order(w, side, 10)


@case(4, "BUY only when both signals say BUY",
      "price signal: short MA > long MA; news signal: sentiment > bullish; act only when both agree",
      **CFG)
def buy_needs_both(ctx):
    only_when_both_agree(ctx, "BUY", 100.0, 1.0, against=20, agrees=80)


@case(5, "SELL only when both signals say SELL",
      "price signal: short MA < long MA; news signal: sentiment < bearish; act only when both agree",
      **CFG)
def sell_needs_both(ctx):
    only_when_both_agree(ctx, "SELL", 200.0, -1.0, against=80, agrees=20)


@case(6, "never the same order twice: one BUY 10 while the signal stays, then one SELL 20 to turn short",
      "keep a position per symbol (+qty long, -qty short); order only the change, once it is ACKed",
      **CFG)
def no_duplicates(ctx):
    w = World(ctx)
    w.set_news(80)
    w.walk(100.0, 1.0, 14)
    buys = w.orders()
    if [(o.side, o.qty) for o in buys] != [("BUY", 10)]:
        raise CaseFailed(f"in a rising market with bullish news it sent {[protocol.encode(o) for o in buys]}, "
                         "expected one BUY of 10")
    w.set_news(20)
    w.walk(114.0, -1.0, 14)
    after = w.orders()[1:]
    if [(o.side, o.qty) for o in after] != [("SELL", 20)]:
        raise CaseFailed(f"then, falling with bearish news, it sent {[protocol.encode(o) for o in after]}, "
                         "expected one SELL of 20 (long 10 to short 10)")


@case(7, "a REJECT leaves the position as it was, and it goes on trading",
      "on REJECT,<order_id>,<reason> forget that order: no position change; try again later", **CFG)
def reject(ctx):
    w = World(ctx)
    w.desk.policy = lambda o: "reject" if len(w.desk.booked) == 0 and len(w.desk.orders) == 1 else "ack"
    w.set_news(80)
    w.walk(100.0, 1.0, 40, until=lambda: len(w.orders()) >= 2)
    ctx.alive("after a REJECT")
    orders = w.orders()
    if len(orders) < 2:
        raise CaseFailed(f"after the REJECT of {orders[0].order_id if orders else '?'} it sent no new order "
                         "in 4 s of a rising market with bullish news")
    if (orders[1].side, orders[1].qty) != ("BUY", 10):
        raise CaseFailed(f"after the REJECT it sent {protocol.encode(orders[1])!r}, expected BUY 10 again")


@case(8, "a restarted order manager: the unanswered order is re-sent with the same id, booked once",
      "keep each order until its ACK/REJECT; reconnect with back-off and re-send the same line", **CFG)
def resend(ctx):
    w = World(ctx)
    w.desk.policy = lambda o: "hang up" if len(w.desk.orders) == 1 else "ack"
    w.set_news(80)
    w.walk(100.0, 1.0, 8, until=lambda: w.desk.orders)
    if not w.desk.orders:
        raise CaseFailed("no order in a rising market with bullish news")
    first = w.desk.orders[0]
    time.sleep(0.3)
    w.desk.server.reopen()
    w.walk(108.0, 1.0, 40, until=lambda: w.desk.booked)
    if not w.desk.booked:
        raise CaseFailed(f"order {first.order_id} went unanswered (the order manager hung up), and "
                         f"nothing was re-sent within 4 s of its coming back; got {len(w.desk.orders)} orders")
    later = w.desk.orders[1]
    if later.order_id != first.order_id:
        raise CaseFailed(f"after the reconnect it sent {later.order_id}, "
                         f"not the unanswered {first.order_id} again")
    w.walk(112.0, 1.0, 6)
    if len(w.orders()) != 1:
        raise CaseFailed(f"after the re-sent order was ACKed it sent more: "
                         f"{[protocol.encode(o) for o in w.orders()[1:]]}")


@case(9, "it asks POSQUERY for its positions on connect and trades from the answer",
      "optional for running in the lab: send POSQUERY,<strategy_id>,<symbol> per symbol when "
      "connected, and take POSITION's qty as the position (docs/protocol.md)", **CFG)
def positions(ctx):
    w = World(ctx, positions={"AAPL": 10})
    w.set_news(80)
    w.walk(100.0, 1.0, 10)
    if not w.desk.queries:
        raise CaseFailed("no POSQUERY on connect")
    if w.orders():
        raise CaseFailed(f"POSITION said long 10 AAPL, yet in a rising market it sent "
                         f"{protocol.encode(w.orders()[0])!r}")
    w.set_news(20)
    w.walk(110.0, -1.0, 12, until=lambda: w.orders())
    expect_order(w, "SELL", 20)


@case(10, "SIGTERM: a clean exit (status 0) within 5 s", "handle SIGTERM like Ctrl-C: exit 0", **CFG)
def sigterm(ctx):
    World(ctx)
    ctx.sigterm()


CASES = [connects, prices_from_book, window, buy_needs_both, sell_needs_both, no_duplicates,
         reject, resend, positions, sigterm]
