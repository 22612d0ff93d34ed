"""The strategy: the trader. Reads prices from shared memory, news from a socket, sends orders.

Prices come ONLY from the shared-memory book: the strategy looks at the book whenever the
orderbook rings its doorbell after a write (`hftlab.book.doorbell`), and follows each symbol
by its record's update counter, so it knows when a price is new and how many it never saw
(the book keeps only the latest price: that is conflation). News and order replies come
over TCP, each through the one reconnecting client (`hftlab.link.Link`); one `select` waits
on both sockets and the doorbell's socket, so one thread does everything and sleeps, at no
CPU, until there is something to do. Before it sleeps it arms the doorbell and looks at the
book's update count once more, so a write that lands between its last look and its sleep
is never missed; ``wake_timeout`` (0.25 s) bounds every sleep as a safety net. With
``--no-doorbell`` it looks every ``poll_interval`` (1 ms) instead, as it did before.

The decisions themselves are pure (`hftlab.rules.Trader`). Every order carries the
gateway timestamp of the tick that led to it, so tick-to-trade latency can be measured
at the order manager with the same clock (``hftlab bench`` runs `hftlab.bench.timed`, this
strategy with every hop timed). Its log lines are written in batches
(`hftlab.batched_log`), off the orders' path.

Every booked order is filled at once, in full, at the book's price when the order manager
handles it: its ACK moves the position, and the FILL line that follows says at what price
and fee, which the strategy logs with its slippage (the fill's price against the price it
decided on) and its running P&L (`hftlab.accounts`). ``--send-delay`` makes the path slow on
purpose, to see what that costs (`hftlab match`'s ``slow:MS``).

Orders are sent at least once: an order whose reply has not come is kept, and re-sent with
the same ``order_id`` when the order manager is back. Ids are a tag per strategy process
(its start time and a random part, `order_tag`) plus a counter, so they are unique across
strategies and runs, and the order manager confirms a re-sent id again instead of booking
it twice.

Positions survive a restart: the strategy has a stable name (``--strategy-id``, by default
"strategy"), and each time it connects to the order manager it asks, per symbol, for the
position the journal holds under that name (``POSQUERY`` / ``POSITION``) and sends no
order for a symbol before the answer came. A REJECT silences the symbol for a while
(0.5 s, doubling up to 30 s, reset by an ACK) instead of repeating the order every tick.

Run alone: ``python -m hftlab.strategy`` (or ``hftlab strategy``).
"""

from __future__ import annotations

import secrets
import selectors
import time

from hftlab import accounts, book, net, process, protocol, rules
from hftlab.batched_log import BatchedLog
from hftlab.link import Link

__all__ = ["REJECT_BACKOFF", "REJECT_BACKOFF_CAP", "HOLD_LINES", "BookReader", "Strategy", "order_tag",
           "order_line", "sent_line", "MAX_UNFILLED", "run", "main"]

# After a REJECT, no order for that symbol for this long, doubling with each further
# REJECT up to the cap; an ACK resets it. The same order again at once would only be
# rejected again (a full journal, a limit), every tick.
REJECT_BACKOFF = 0.5
REJECT_BACKOFF_CAP = 30.0
# The strategy writes its log lines in batches, this many seconds apart at most (`BatchedLog`).
HOLD_LINES = 0.1
# ACKed orders whose FILL has not come yet are kept for their slippage; an order manager
# that sends no FILL (an older one, or a learner's) must not make them pile up.
MAX_UNFILLED = 256


class BookReader:
    """Reads new prices through the book's `hftlab.book.Follower` and says in the log when
    the book comes, goes, or stays unreadable.

    It never waits on the book: a record in mid-write (a writer stopped or stalled there,
    or one that died there) makes a look come back empty at once, and the next look tries
    again, so the sockets keep being served. A book that stays busy for `BUSY_SAY`
    seconds is logged once, and logged again when it reads again."""

    BUSY_SAY = 1.0

    def __init__(self, name: str, symbols, log, doorbell: bool = False):
        self.name, self.log = name, log
        self.follower = book.Follower(name, symbols, interval=1.0)
        # The bell is the book's name's, so it outlives an orderbook restart.
        self.bell = None
        if doorbell:
            try:
                self.bell = book.Doorbell(name)
            except book.UnsafeFolder as exc:  # another user's folder: never used, polling works
                log.warning(f"{exc}; looking at the book every --poll-interval instead of sleeping on "
                            "the doorbell")
        self.looked_updates = -1  # the book header's update count at the last look
        self.attached = None  # the book the log last said it attached to (None: none)
        self.said_waiting = False
        self.busy_since = None
        self.said_busy = False
        self.seen_ns = 0  # when the last look that found a book was taken

    @property
    def current(self):
        """The book attached now, or None."""
        return self.follower.current

    def attach_if_needed(self) -> None:
        """Look for the book (the follower looks at most once a second) and log a change:
        against the book this said it was attached to, since a look at the prices may
        have dropped a dead writer's book in between."""
        try:
            price_book = self.follower.look()
        except book.BookError as exc:  # a segment of that name that is not a book we can read
            raise process.Fatal(str(exc)) from None
        if self.attached is not None and price_book is not self.attached:
            self.log.warning(f"the book's writer is gone; waiting for a new book {self.name!r}")
        if price_book is None:
            if not self.said_waiting:
                self.log.info(f"waiting for the book {self.name!r} (is the orderbook running?)")
                self.said_waiting = True
        elif price_book is not self.attached:
            self.said_waiting = False
            self.log.info(f"attached to the book {self.name!r} ({price_book.nbytes} bytes)")
        self.attached = price_book

    def new_prices(self) -> list:
        """[(quote, missed), ...] for each symbol updated since the last look
        (`hftlab.book.Follower.new_quotes`); [] while the book is unreadable."""
        try:
            quotes = self.follower.new_quotes()
        except book.BookBusy as exc:
            self._busy(exc)
            return []
        self.seen_ns = time.time_ns()
        price_book = self.follower.current
        if price_book is not None:
            self.looked_updates = price_book.updates()
        if self.said_busy and self.follower.current is not None:
            self.log.info(f"the book {self.name!r} reads again; carrying on")
        self.busy_since, self.said_busy = None, False
        return quotes

    def _busy(self, exc: book.BookBusy) -> None:
        """A look found a record in mid-write: wait it out (the follower notices a dead writer)."""
        now = time.monotonic()
        if self.busy_since is None:
            self.busy_since = now
        elif not self.said_busy and now - self.busy_since >= self.BUSY_SAY:
            self.said_busy = True
            self.log.warning(f"waiting: the book has been unreadable for {self.BUSY_SAY:.0f} s ({exc})")

    def arm(self) -> bool:
        """Before sleeping on the bell: say so in the book, then look again.

        True if the book changed since the last look (do not sleep). The order, arm then
        look, is what loses no wake-up (`hftlab.book.doorbell`)."""
        price_book = self.follower.current
        if price_book is None or self.bell is None:
            return False
        try:
            self.bell.arm(price_book)
            return price_book.updates() != self.looked_updates
        except book.BookError:  # closed under us by the follower: look now
            return True

    def close(self) -> None:
        self.follower.close()
        if self.bell is not None:
            self.bell.close()


def order_tag() -> str:
    """The first part of this strategy process's order ids: unique across every run that
    writes to one journal, since the order manager refuses an id it has booked before for
    another order. So: the start time (microseconds, base 36) and a random part, for two
    strategies started in the same microsecond. (A random 16-bit tag alone came back often
    enough, over many runs of one journal, that a run had every order refused.)"""
    micros, digits = time.time_ns() // 1000, ""
    while micros:
        micros, d = divmod(micros, 36)
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"[d] + digits
    return f"{digits}{secrets.token_hex(2)}"


def order_line(order_id: str, d: rules.Decision) -> bytes:
    """The ORDER line of a decision: the same bytes when it is sent and when it is re-sent.

    Formatted in one step rather than through `protocol.encode`, which checks every field:
    here each one is valid by construction (our own id, a symbol and a price read from the
    book, the trader's side and quantity), and the checking code, run only for the rare tick
    that makes an order, runs cold (docs/performance.md, "the strategy sends"). A property
    test in tests/test_rules.py holds the bytes equal to what `protocol.encode` gives."""
    return b"ORDER,%s,%d,%s,%d,%s,%.2f\n" % (order_id.encode(), d.tick_ts_ns, d.side.encode(), d.qty,
                                             d.symbol.encode(), d.price)


def sent_line(order_id: str, d: rules.Decision) -> str:
    """The line a person reads about a sent order: why it was sent."""
    why = ">" if d.side == rules.BUY else "<"
    return (f"{d.side} {d.qty} {d.symbol} @ {d.price:.2f} as {order_id}: short MA "
            f"{d.short_ma:.2f} {why} long {d.long_ma:.2f}, news {d.sentiment}")


class Strategy:
    """The trader's loop: wait, read the book, decide, send; and read the replies and news."""

    def __init__(self, config, log):
        self.config, self.log = config, log
        self.trader = rules.Trader.from_config(config)
        self.selector = selectors.DefaultSelector()
        self.news = Link("news feed", config.host, config.news_port, log, config.heartbeat_interval,
                         selector=self.selector)
        self.orders = Link("order manager", config.host, config.order_port, log, selector=self.selector)
        self.reader = BookReader(config.shm_name, config.symbols, log, doorbell=config.doorbell)
        if self.reader.bell is not None:
            self.selector.register(self.reader.bell, selectors.EVENT_READ, None)
        self.said = BatchedLog(log, HOLD_LINES)  # the log, written off the orders' path
        self.tag = order_tag()
        self.quiet = {}  # symbol -> (no orders before this monotonic time, its Backoff)
        self.next_id = 1
        self.unfilled = {}  # order_id -> Decision: ACKed, its FILL not yet read
        self.account = accounts.Account()  # this run's fills: what the log says we made

    def step(self) -> None:
        """One turn of the loop: wait for sockets or the doorbell, look at the book and trade,
        then read the sockets.

        The book comes first after a wake-up: a new price is what the strategy is waiting
        for, and the replies and news that came with it can wait the few microseconds a
        look and its orders take. Then the messages; the links' reconnecting and the book's
        attaching last; and, every `HOLD_LINES`, the log lines said since."""
        ready = self.selector.select(self.said.timeout(self.wait_time()))
        self.trade(self.reader.new_prices())
        for key, _ in ready:
            link = key.data
            if link is None:            # the doorbell rang
                self.reader.bell.drain()
                continue
            msgs = link.messages()
            if msgs is None:
                if link is self.orders and self.trader.pending:
                    self.said.warning(f"orders {' '.join(self.trader.pending)} are unconfirmed: the order "
                                      "manager went away before answering; they will be re-sent")
                continue
            for msg in msgs:
                self.on_message(msg)
        self.news.keep_up()
        if self.orders.keep_up():
            self.on_orders_connected()
        self.reader.attach_if_needed()
        self.said.write_if_due()

    def wait_time(self) -> float:
        """How long the next wait may last: with the doorbell, until the orderbook rings after
        a write, or wake_timeout at most (none if the book changed as it was armed); without
        it, or before the book is found, a short while (poll_interval)."""
        if self.reader.bell is None:
            return self.config.poll_interval
        if self.reader.current is None:   # no book yet: look for it again soon
            return min(self.config.wake_timeout, 0.05)
        return 0.0 if self.reader.arm() else self.config.wake_timeout

    def trade(self, prices: list) -> None:
        """Decide on each new price of one look at the book, then send all its orders in one
        write.

        One write, not one per order: each write wakes the order manager, which may take
        this process's CPU for a while (two cores, four processes), and the next symbol's
        order would wait behind it."""
        orders = []
        if len(prices) > 1:  # in the order they were made, so news counts in its place (hftlab.rules)
            prices = sorted(prices, key=lambda p: p[0].ts_ns)
        for quote, _missed in prices:
            decision = self.decide(quote)
            if decision is not None:
                order_id = self.next_order_id(decision)
                if order_id:
                    orders.append((order_id, decision))
        if orders:
            self.send(orders)

    def decide(self, quote) -> rules.Decision | None:
        """The order a new price makes, by the trading rules (`hftlab.rules`), or None."""
        return self.trader.on_price(quote.symbol, quote.price, quote.ts_ns)

    def on_orders_connected(self) -> None:
        """Name ourselves and ask for our positions, then re-send what was not confirmed, in
        that order.

        The first POSQUERY on a connection names it: every order after it is journalled under
        our name, which is what a restarted strategy will ask for. So every connection asks
        about every symbol before anything else, even when every symbol has an order in
        flight. Such a symbol keeps the position we hold, and its answer is not taken
        (`rules.Trader.learn`): the journal's may or may not include that order yet, and its
        ACK (a re-send is confirmed again) will count it. Every other symbol trades again
        only once the journal's answer came."""
        busy = {d.symbol for d in self.trader.pending.values()}
        self.trader.forget([s for s in self.config.symbols if s not in busy])
        lines = [protocol.encode(protocol.PositionQuery(self.config.strategy_id, s)) for s in self.config.symbols]
        if self.trader.pending:
            self.said.info(f"re-sending unconfirmed orders {' '.join(self.trader.pending)}")
        lines += [order_line(order_id, d) for order_id, d in self.trader.pending.items()]
        self.orders.send(b"".join(lines))

    def on_message(self, msg) -> None:
        kind = type(msg)
        if kind is protocol.News:
            self.trader.on_news(msg.sentiment, msg.ts_ns)
        elif kind is protocol.Ack:
            d = self.trader.on_ack(msg.order_id)
            if d is not None:
                self.quiet.pop(d.symbol, None)
                self.unfilled[msg.order_id] = d
                if len(self.unfilled) > MAX_UNFILLED:
                    del self.unfilled[next(iter(self.unfilled))]
                pos = self.trader.position[d.symbol]
                self.said.info(f"ACK {msg.order_id} is order {msg.order_no}: now "
                               f"{rules.position_name(pos)} {abs(pos)} {d.symbol}")
        elif kind is protocol.Fill:
            self.on_fill(msg)
        elif kind is protocol.Reject:
            d = self.trader.on_reject(msg.order_id)
            if d is None:
                self.said.warning(f"REJECT {msg.order_id}: {msg.reason}")
                return
            _, backoff = self.quiet.get(d.symbol) or (0.0, net.Backoff(REJECT_BACKOFF, REJECT_BACKOFF_CAP))
            delay = backoff.next()
            self.quiet[d.symbol] = (time.monotonic() + delay, backoff)
            self.said.warning(f"REJECT {msg.order_id}: {msg.reason}; no {d.symbol} orders for {delay:g} s")
        elif kind is protocol.Position:
            if msg.strategy == self.config.strategy_id and self.trader.learn(msg.symbol, msg.qty):
                held = f"{rules.position_name(msg.qty)} {abs(msg.qty)}" if msg.qty else "flat"
                self.said.info(f"the journal holds {msg.symbol} {held} for {msg.strategy!r}; trading {msg.symbol}")
        elif kind is protocol.Error:
            self.said.warning(f"the order manager says ERROR: {msg.reason}")
        elif kind is protocol.ProtocolError:
            self.said.warning(f"bad line received: {msg.reason}")

    def on_fill(self, fill: protocol.Fill) -> None:
        """Log the fill of an ACKed order: its price against the one we decided on (slippage:
        positive is money lost), and what this run has made so far."""
        d = self.unfilled.pop(fill.order_id, None)
        if d is None:
            return  # a re-sent order's FILL again, or one we never knew
        self.account.fill(fill.side, fill.qty, fill.symbol, fill.price, fill.fee)
        slip = accounts.slippage(fill.side, d.price, fill.price)
        self.said.info(f"FILL {fill.order_id}: {fill.side} {fill.qty} {fill.symbol} @ {fill.price:.2f} "
                       f"(decided at {d.price:.2f}: slippage {slip:+.2f}), fee {fill.fee:.2f}; "
                       f"realized {self.account.realized:.2f}, fees {self.account.fees:.2f}")

    def next_order_id(self, d: rules.Decision) -> str:
        """A new order id for `d`, or "" if it cannot be sent now (no order manager, or
        backing off after a REJECT of its symbol)."""
        if not self.orders.up:
            self.said.info(f"would {d.side} {d.qty} {d.symbol}, but the order manager is not connected")
            return ""
        if time.monotonic() < self.quiet.get(d.symbol, (0.0,))[0]:
            return ""  # backing off after a REJECT
        order_id = f"{self.tag}-{self.next_id}"
        self.next_id += 1
        return order_id

    def send(self, orders: list) -> int:
        """Send [(order_id, decision), ...] in one write; then they are in flight until their
        ACK or REJECT. The time.time_ns() just before the write, or 0 if they could not be
        sent (the link is dropped).

        Their lines (`why`) are written a moment later, with the others (`said`),
        always before their ACKs' lines."""
        lines = b"".join([order_line(order_id, d) for order_id, d in orders])
        if self.config.send_delay:
            time.sleep(self.config.send_delay)  # a slow path on purpose: the price moves meanwhile
        sent_ns = time.time_ns()
        if not self.orders.send(lines):
            return 0
        for order_id, d in orders:
            self.trader.sent(order_id, d)
            self.said.info(self.why(order_id, d), at_ns=sent_ns)  # stamped when it was sent
        return sent_ns

    def why(self, order_id: str, d: rules.Decision) -> str:
        """The line a person reads about a sent order (`sent_line`: the signals that agreed)."""
        return sent_line(order_id, d)

    def close(self) -> None:
        self.said.write()
        for thing in (self.news, self.orders, self.reader):
            thing.close()
        self.selector.close()


def run(config, log, kind=Strategy) -> None:
    """Wait for the book, connect, say ready, then trade until stopped. `kind`: the Strategy
    class to run (the bench's `hftlab.bench.timed` runs a timed one)."""
    if config.latency_log and kind is Strategy:
        raise process.Fatal("--latency-log is for the timed strategy: python -m hftlab.bench.timed "
                            "(hftlab bench, and a Launcher given latency_log, start that one)")
    strategy = kind(config, log)
    try:
        while strategy.reader.current is None:
            strategy.reader.attach_if_needed()
            if strategy.reader.current is None:
                time.sleep(0.1)  # waiting for the orderbook to create the book
        strategy.news.keep_up()
        if strategy.orders.keep_up():
            strategy.on_orders_connected()
        process.ready(log, book=config.shm_name,
                      news=net.address(config.host, config.news_port),
                      orders=net.address(config.host, config.order_port))
        while True:
            strategy.step()
    finally:
        strategy.close()


def main(argv=None) -> int:
    return process.main("strategy", "Trade on book prices and news; send orders.", run, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
