"""The strategy's cases: the harness owns the book (writes its prices), serves the news
feed and plays the order manager; a price feed that disagrees with the book catches a
strategy that reads prices from the socket.

Config: one symbol (AAPL), short window 2, long window 4, bullish 60, bearish 40, qty 10,
strategy id "conform-s1". The harness writes at most one price every 100 ms and repeats the
news every 100 ms.
"""

from __future__ import annotations

import threading
import time

from hftlab import book, protocol
from hftlab.conform.harness import CaseFailed, case
from hftlab.conform.peers import read_lines

__all__ = ["ROLE", "CFG", "TICK", "HINT_DIAL", "CASES", "Desk", "World"]

ROLE = "strategy"
CFG = dict(symbols=("AAPL",), short_window=2, long_window=4, bullish=60, bearish=40,
           order_qty=10, heartbeat_interval=0.5, news_interval=0.1, strategy_id="conform-s1")
TICK = 0.1
HINT_DIAL = ("dial --host:--news-port and --host:--order-port (HFTLAB_NEWS_PORT, HFTLAB_ORDER_PORT) by the "
             "time you print the ready line, or at once after it")


def shown(msg) -> str:
    """A message as its line, for a report."""
    if isinstance(msg, protocol.ProtocolError):
        return f"a bad line ({msg.reason})"
    return repr(protocol.encode(msg).decode().strip())


class Desk:
    """A scripted order manager: answers POSQUERY with `positions` (0 by default) and ACKs
    each ORDER (the same number again for a re-sent id) unless `policy` says otherwise.
    Keeps what each connection sent, in order (`connections`)."""

    def __init__(self, ctx, positions=None):
        self.orders = []          # every ORDER received, re-sends included
        self.queries = []
        self.booked = {}          # order_id -> order_no
        self.positions = dict(positions or {})
        self.policy = None        # policy(order) -> "ack", "reject" or "hang up"
        self.fills = False        # send a FILL after each ACK (at the order's price; case 11)
        self.lock = threading.Lock()
        self._connections = []    # per connection, the messages it sent
        self.server = ctx.server(self._serve)

    def _serve(self, conn):
        sent = []
        with self.lock:
            self._connections.append(sent)
        read_lines(conn, lambda conn, msg: self.on_message(conn, msg, sent))

    def on_message(self, conn, msg, sent):
        with self.lock:
            sent.append(msg)
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
                reply = protocol.encode(protocol.Ack(msg.order_id, number))
                if self.fills:
                    reply += protocol.encode(protocol.Fill(msg.order_id, number, msg.side, msg.qty, msg.symbol,
                                                           msg.price, 0.02, 1))
                conn.sendall(reply)

    def connections(self) -> list:
        """What each connection sent so far, in the order the connections came."""
        with self.lock:
            return [list(sent) for sent in self._connections]

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
        self.book = ctx.make_book(ctx.config.symbols)
        self.written = []
        self.sentiment = 50
        self.news = ctx.server(self._news)
        self.prices = ctx.server(self._prices)
        self.desk = Desk(ctx, positions)
        ctx.configure(news_port=self.news.port, price_port=self.prices.port, order_port=self.desk.server.port)
        self.news_seq = 0
        ctx.start()
        if not ctx.wait_until(lambda: self.news.live() and self.desk.server.live(), 5.0):
            raise CaseFailed(f"within 5 s of its ready line it had not connected to "
                             f"{'the news feed' if not self.news.live() else 'the order manager'}",
                             hint=HINT_DIAL, log=ctx.log_end())
        self.book.set_feed_state(book.FEED_UP, "conform")

    def _news(self, conn):
        conn.sendall(protocol.encode(protocol.Hello("NEWS", "conform")))
        while not self.ctx.closed.is_set():
            self.news_seq += 1
            conn.sendall(protocol.encode(protocol.News(self.news_seq, time.time_ns(), self.sentiment)))
            self.ctx.closed.wait(0.1)

    def _prices(self, conn):
        """The price feed, always falling from 500: a strategy reading it would SELL at those prices."""
        conn.sendall(protocol.encode(protocol.Hello("PRICE", "conform")))
        seq, price = 0, 500.0
        while not self.ctx.closed.is_set():
            seq += 1
            price = max(1.0, price - 1.0)
            conn.sendall(protocol.encode(protocol.Price(seq, time.time_ns(), "AAPL", price)))
            self.ctx.closed.wait(0.05)

    def set_news(self, sentiment: int) -> None:
        self.sentiment = sentiment
        self.ctx.sleep(0.3)  # a few NEWS lines go out before the next price (news repeats every 0.1 s)

    def walk(self, start: float, step: float, n: int, until=None):
        """Write n prices to the book, TICK apart; stop early when `until()` is true."""
        price = start
        for _ in range(n):
            self.book.update("AAPL", round(price, 2))
            self.written.append(round(price, 2))
            price += step
            self.ctx.sleep(TICK)
            if until is not None and until():
                return
        self.ctx.sleep(0.3)  # the last price's order, if any, has time to arrive

    def orders(self):
        return self.desk.distinct()


def expect_order(w, side, qty=None):
    orders = w.orders()
    if not orders:
        raise CaseFailed(f"no order; the book had {w.written[-8:]}, news {w.sentiment}", log=w.ctx.log_end())
    o = orders[-1]
    if o.side != side or (qty is not None and o.qty != qty):
        raise CaseFailed(f"expected {side}{f' {qty}' if qty else ''}, got {shown(o)}")
    return o


@case(ROLE, 1, "it connects to the news feed and the order manager", HINT_DIAL, **CFG)
def connects(ctx):
    World(ctx)


@case(ROLE, 2, "it trades on prices from shared memory, not from the price feed",
      "read prices from the book (SharedPriceBook.attach(--shm-name)), never from the price port",
      **CFG)
def prices_from_book(ctx):
    w = World(ctx)
    w.set_news(80)
    w.walk(100.0, 1.0, 12, until=lambda: w.orders())
    if not w.orders():
        raise CaseFailed(f"no order while the book rose {w.written[0]}..{w.written[-1]} with news 80 "
                         f"(the price feed, which it must not use, was falling from 500)", log=ctx.log_end())
    o = expect_order(w, "BUY")
    if o.price not in w.written:
        raise CaseFailed(f"it ordered at {o.price}, a price not in the book ({w.written}): "
                         "read from the price feed?")


@case(ROLE, 3, "the long window: no order while it holds 3 of 4 prices, then one on the price that fills it",
      "keep the last long_window prices per symbol; no price signal until there are that many, a signal "
      "on the price that makes them that many", **CFG)
def window(ctx):
    w = World(ctx)
    w.set_news(80)
    w.walk(100.0, 1.0, 3)   # long_window - 1 prices, rising
    ctx.sleep(0.5)
    if w.orders():
        raise CaseFailed(f"too early: an order after only 3 prices with long_window 4: {shown(w.orders()[0])}")
    w.walk(103.0, 1.0, 1)
    if not ctx.wait_until(w.orders, 2.0):
        raise CaseFailed("too late: no order within 2 s of the 4th price, which filled the long window "
                         f"(the book rose {w.written[0]}..{w.written[-1]}, news 80)", log=ctx.log_end())
    o = expect_order(w, "BUY", 10)
    if o.price != w.written[-1]:
        raise CaseFailed(f"its order was at {o.price}, not {w.written[-1]}, the price that filled the window: "
                         "it decided on a price that came before the window was full")


def only_when_both_agree(ctx, side: str, start: float, step: float, against: int, agrees: int) -> None:
    """Prices move `side`'s way while the news is neutral, then `against` it: no order.
    Then the news `agrees` too: one order of `side`, 10, at a price of that time (the last
    one before the news agreed, or a later one): a strategy slow to send an order it decided
    earlier shows by its price."""
    w = World(ctx)
    w.set_news(50)
    w.walk(start, step, 8)
    w.set_news(against)
    w.walk(start + 8 * step, step, 4)
    mood, market = ("bearish", "rising") if side == "BUY" else ("bullish", "falling")
    if w.orders():
        raise CaseFailed(f"an order while the news was neutral or {mood} in a {market} market: "
                         f"{shown(w.orders()[0])}")
    agreed = len(w.written) - 1
    w.set_news(agrees)
    w.walk(start + 12 * step, step, 6, until=lambda: w.orders())
    o = expect_order(w, side, 10)
    if o.price not in w.written[agreed:]:
        raise CaseFailed(f"its {side} was at {o.price}, a price from while the news was neutral or {mood} "
                         f"(the book: {w.written}): it decided before both signals agreed")


@case(ROLE, 4, "BUY only when both signals say BUY",
      "price signal: short MA > long MA; news signal: sentiment > bullish; act only when both agree",
      **CFG)
def buy_needs_both(ctx):
    only_when_both_agree(ctx, "BUY", 100.0, 1.0, against=20, agrees=80)


@case(ROLE, 5, "SELL only when both signals say SELL",
      "price signal: short MA < long MA; news signal: sentiment < bearish; act only when both agree",
      **CFG)
def sell_needs_both(ctx):
    only_when_both_agree(ctx, "SELL", 200.0, -1.0, against=80, agrees=20)


@case(ROLE, 6, "never the same order twice: one BUY 10 while the signal stays, then one SELL 20 to turn short",
      "keep a position per symbol (+qty long, -qty short); order only the change, once it is ACKed",
      **CFG)
def no_duplicates(ctx, fills=False):
    w = World(ctx)
    w.desk.fills = fills
    w.set_news(80)
    w.walk(100.0, 1.0, 14)
    buys = w.orders()
    if [(o.side, o.qty) for o in buys] != [("BUY", 10)]:
        raise CaseFailed(f"in a rising market with bullish news it sent {len(buys)} orders, expected one BUY "
                         f"of 10: {', '.join(shown(o) for o in buys[:3])}")
    w.set_news(20)
    w.walk(114.0, -1.0, 14)
    after = w.orders()[1:]
    if [(o.side, o.qty) for o in after] != [("SELL", 20)]:
        raise CaseFailed(f"then, falling with bearish news, it sent {len(after)} orders, expected one SELL of 20 "
                         f"(long 10 to short 10): {', '.join(shown(o) for o in after[:3])}")


@case(ROLE, 7, "a REJECT leaves the position as it was, and it goes on trading",
      "on REJECT,<order_id>,<reason> forget that order: no position change; try again later", **CFG)
def reject(ctx):
    w = World(ctx)
    w.desk.policy = lambda o: "reject" if len(w.desk.booked) == 0 and len(w.desk.orders) == 1 else "ack"
    w.set_news(80)
    w.walk(100.0, 1.0, 40, until=lambda: len(w.orders()) >= 2)
    ctx.alive("after a REJECT")
    orders = w.orders()
    if not orders:
        raise CaseFailed("no order at all in 4 s of a rising market with bullish news, so nothing to REJECT",
                         log=ctx.log_end())
    if len(orders) < 2:
        raise CaseFailed(f"after the REJECT of {orders[0].order_id} it sent no new order in 4 s of a rising "
                         "market with bullish news")
    if (orders[1].side, orders[1].qty) != ("BUY", 10):
        raise CaseFailed(f"after the REJECT of {orders[0].order_id} it sent {shown(orders[1])}, expected BUY 10 "
                         "again")


def hang_up_and_come_back(ctx, w, walk_from: float, step: float):
    """The desk hung up on the first order, unanswered: come back after 0.3 s, and walk the
    book on until the re-sent order is booked; CaseFailed if it is not, or not the same id."""
    first = w.desk.orders[0]
    ctx.sleep(0.3)
    w.desk.server.reopen()
    w.walk(walk_from, step, 40, until=lambda: w.desk.booked)
    if not w.desk.booked:
        raise CaseFailed(f"order {first.order_id} went unanswered (the order manager hung up), and "
                         f"nothing was re-sent within 4 s of its coming back; got {len(w.desk.orders)} orders")
    later = w.desk.orders[1]
    if later.order_id != first.order_id:
        raise CaseFailed(f"after the reconnect it sent {later.order_id}, "
                         f"not the unanswered {first.order_id} again")


@case(ROLE, 8, "a restarted order manager: the unanswered order is re-sent with the same id, booked once",
      "keep each order until its ACK/REJECT; reconnect with back-off and re-send the same line", **CFG)
def resend(ctx):
    w = World(ctx)
    w.desk.policy = lambda o: "hang up" if len(w.desk.orders) == 1 else "ack"
    w.set_news(80)
    w.walk(100.0, 1.0, 8, until=lambda: w.desk.orders)
    if not w.desk.orders:
        raise CaseFailed("no order in a rising market with bullish news")
    hang_up_and_come_back(ctx, w, 108.0, 1.0)
    w.walk(112.0, 1.0, 6)
    if len(w.orders()) != 1:
        raise CaseFailed(f"after the re-sent order was ACKed it sent more: {[shown(o) for o in w.orders()[1:]]}")


def names_itself_first(w, me: str) -> None:
    """CaseFailed unless the first line of every connection to the desk is a POSQUERY naming
    `me`: the order manager journals a connection's orders under the strategy its first
    POSQUERY named."""
    for k, sent in enumerate(w.desk.connections(), 1):
        if not sent:
            continue
        first = sent[0]
        if not isinstance(first, protocol.PositionQuery) or first.strategy != me:
            when = " (after a hang-up with an order in flight)" if k > 1 else ""
            raise CaseFailed(f"the first line on its connection {k} to the order manager{when} was "
                             f"{shown(first)}, not POSQUERY,{me},<symbol>: the orders that follow are not "
                             "booked under its name")


@case(ROLE, 9, "POSQUERY: it asks for its positions on every connection, first, even with an order in "
      "flight, and trades from the answers",
      "optional for running in the lab: on each connection to the order manager, first send "
      "POSQUERY,<strategy_id>,<symbol> for every symbol (also those with an order in flight), then "
      "re-send; take POSITION's qty as the position of a symbol with nothing in flight (docs/protocol.md)",
      **CFG)
def positions(ctx):
    w = World(ctx, positions={"AAPL": 10})
    w.desk.policy = lambda o: "hang up" if len(w.desk.orders) == 1 else "ack"
    w.set_news(80)
    w.walk(100.0, 1.0, 10)
    if not w.desk.queries:
        raise CaseFailed("no POSQUERY on connect")
    if w.orders():
        raise CaseFailed(f"POSITION said long 10 AAPL, yet in a rising market it sent {shown(w.orders()[0])}")
    w.set_news(20)
    w.walk(110.0, -1.0, 12, until=lambda: w.orders())
    expect_order(w, "SELL", 20)
    hang_up_and_come_back(ctx, w, 98.0, -1.0)  # still long 10 by the journal: the SELL was not booked
    names_itself_first(w, ctx.config.strategy_id)
    expect_order(w, "SELL", 20)


@case(ROLE, 10, "SIGTERM: a clean exit (status 0) within 5 s", "handle SIGTERM like Ctrl-C: exit 0", **CFG)
def sigterm(ctx):
    World(ctx)
    ctx.sigterm()


@case(ROLE, 11, "FILL after each ACK: it goes on trading as in case 6, its position what its fills made",
      "a FILL,<order_id>,<order_no>,<side>,<qty>,<symbol>,<price>,<fee>,<book_seq> line follows each ACK "
      "(docs/protocol.md, Fills): decode it (or skip a line you do not know) and go on; the fill is the "
      "whole order, so the position is the same as the ACK made it", **CFG)
def fills(ctx):
    no_duplicates.run(ctx, fills=True)
    ctx.alive("after the FILLs")


CASES = [connects, prices_from_book, window, buy_needs_both, sell_needs_both, no_duplicates,
         reject, resend, positions, sigterm, fills]
