"""The order manager: the broker and the exchange. A TCP server that books and fills orders.

Each order is validated (`check_order`, then the limits), filled at the book's price for
its symbol at the moment it is handled (`fill_at`), appended to the journal with its fill,
and only then ACKed, with a FILL line right after the ACK (docs/protocol.md, "Fills"). The
fill is at the price the order arrives to, not the one the strategy saw: the time between
the two is what a slow path costs. Fees are charged on every fill (``--fee-bps``,
``--fee-per-share``); ``--position-limit`` and ``--rate-limit`` refuse orders past them; each
strategy's position, cash, fees and P&L are kept (`hftlab.accounts`), read back from the
journal after a restart. With ``--events FILE`` every order, fill and reject is also a row
of an event file (`hftlab.events`), which `hftlab match` scores.

The journal is written with one unbuffered ``os.write`` before the reply, so an order
that was ACKed is in the operating system even if this process is killed the next
instant (with ``--fsync``, on the disk even if the power goes). A row that cannot be
written whole (a full disk) is cut off again and the order REJECTed, never ACKed. The
line a person reads ("Received Order N: ...") is logged just after the ACK is written, off
the order's path (`OrderManager.after_reply`): the log is not the record, the journal is. Order
numbers count 1, 2, 3... over booked orders across all clients and continue from the
largest number in the journal after a restart. The journal itself is `hftlab.journal`.

The journal also records which strategy sent each order (named by its ``POSQUERY``), so
that a restarted strategy can ask for the position it holds per symbol before it trades.

Orders are idempotent by ``order_id``: a strategy that lost its connection before the
ACK arrived re-sends the same order with the same id, and gets the same ACK (the same
order number) without the order being booked twice, also across a restart of this
process, because the ids are read back from the journal. (Strategies make their ids
unique across runs: a tag per strategy process, then a counter.)

Each connection is served by a thread of its own, asleep in a blocking ``recv`` until its
client's bytes come (`OrderManager.serve_client`); the main thread only accepts, and takes
Ctrl-C and SIGTERM. A blocking ``recv`` is the cheapest way for a sleeping process to get a
message (``hftlab bench --wakeups``; docs/performance.md). The threads share the numbering, the
journal and the book's reader, so one connection's orders are handled at a time, under
`OrderManager.lock`; replies are sent outside it, so a client that never reads its
replies holds up only its own thread.

A line that is not a valid message gets ``ERROR,<reason>``; a valid order that breaks a
rule gets ``REJECT,<order_id>,<reason>``. Either way the connection stays usable and no
other client notices. A client that sends only garbage is closed after
`MAX_BAD_LINES` bad lines in a row.

Run alone: ``python -m hftlab.order_manager`` (or ``hftlab order-manager``).
"""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import threading
import time
from collections import deque
from typing import NamedTuple

from hftlab import accounts, book, events, net, process, protocol
from hftlab.order_rules import check_limits, check_order, fill_at
from hftlab.journal import (JOURNAL_COLUMNS, OLD_JOURNAL_COLUMNS, Filled, Journal, JournalFull, file_kind,
                            read_all, read_journal, sync_directory, terms)

# The journal's names and the order rules are re-exported (from hftlab.journal and
# hftlab.order_rules): lessons import them from here.
__all__ = ["JOURNAL_COLUMNS", "OLD_JOURNAL_COLUMNS", "MAX_BAD_LINES", "Filled", "JournalFull", "Journal",
           "read_all", "sync_directory", "file_kind", "terms", "read_journal", "check_order",
           "check_limits", "fill_at", "BookWatcher", "Session", "OrderManager", "STOP_SIGNALS", "listen",
           "serve", "run", "main"]

MAX_BAD_LINES = 20
# The signals that stop a process (hftlab.process.main): taken by the main thread only.
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGALRM}


# -- the answer lines of the log ---------------------------------------------------------
# The log is for people, but the dashboard's order blotter reads back the two lines that
# answer an order (the journal holds the booked orders, not the rejected ones). They are
# written and read here, side by side, like `process.ready` and `process.parse_ready`:
# change one, change the other (tests/test_order_manager.py checks the round trip).


def booked_line(order_no: int, order: protocol.Order, filled: Filled | None = None) -> str:
    """The log line of an order booked as number `order_no` (and ACKed), and its fill."""
    line = f"Received Order {order_no}: {order.side} {order.qty} {order.symbol} @ {order.price:.2f}"
    if filled is None:
        return line
    slip = accounts.slippage(order.side, order.price, filled.price)
    return f"{line}, filled @ {filled.price:.2f} (slippage {slip:+.2f}), fee {filled.fee:.2f}"


def rejected_line(order_id: str, client: str, reason: str) -> str:
    """The log line of an order REJECTed for `reason`."""
    return f"Rejected {order_id} from {client}: {reason}"


class Answer(NamedTuple):
    """An order's answer as the log tells it: booked (`order_no` is set) or rejected
    (`reason` is set). A booked line does not name the client's order_id (the journal
    does), and a rejected line names only the order_id."""
    order_no: int | None = None
    order_id: str | None = None
    side: str | None = None
    qty: int | None = None
    symbol: str | None = None
    price: float | None = None
    reason: str | None = None


_BOOKED_LINE = re.compile(r"Received Order (\d+): (BUY|SELL) (-?\d+) (\S+) @ ([^\s,]+)(?:, filled .*)?")
_REJECTED_LINE = re.compile(r"Rejected (\S+) from \S+: (.*)")


def parse_answer(text: str) -> Answer | None:
    """The answer told by a log message that `booked_line` or `rejected_line` wrote (the
    message only: see `hftlab.process.parse_log_line`); None for any other message."""
    m = _BOOKED_LINE.fullmatch(text)
    if m:
        no, side, qty, symbol, price = m.groups()
        return Answer(order_no=int(no), side=side, qty=int(qty), symbol=symbol, price=float(price))
    m = _REJECTED_LINE.fullmatch(text)
    if m:
        return Answer(order_id=m.group(1), reason=m.group(2))
    return None


class BookWatcher:
    """The book's last prices for the price-band check, if a live book is there to read.

    It never makes a connection's thread wait on the book, whose other connections wait for
    the same lock: the read is a bounded seqlock read (``wait=False``: a few microseconds of
    spinning, no sleep). A record that stays in mid-write (the orderbook stopped or stalled in
    an update) raises `hftlab.book.BookBusy`, and the order manager REJECTs that order, since
    its price cannot be checked. With no usable price to compare with (no book, no price for
    the symbol yet, a price that is not a finite number above 0, or a segment under the
    book's name that is not a book we can read) the order is checked without the band, and
    the log says so once per symbol and cause, not on every order, and again when the band
    applies once more."""

    def __init__(self, config, log):
        self.log = log
        self.name = config.shm_name
        self.follower = book.Follower(config.shm_name, interval=1.0)
        self.unchecked = {}  # symbol -> why its orders are booked without the band, as last said

    def quote(self, symbol: str):
        """The book's latest quote of `symbol` (price, seq, ts_ns...), or None."""
        try:
            quote = self.follower.latest(symbol)
        except book.BookBusy:
            raise  # a live writer stuck in mid-write: the price cannot be checked
        except book.BookError as exc:  # another layout or version, a damaged header, another user's
            quote, why = None, str(exc)
        else:
            why = None if quote else self._why_no_price(symbol)
        self._say(symbol, why)
        return quote

    def _why_no_price(self, symbol: str) -> str:
        price_book = self.follower.current
        if price_book is None and self.follower.error is not None:
            return str(self.follower.error)  # a segment it cannot read, until it looks again
        if price_book is None:
            return f"there is no book {self.name!r} (is the orderbook running?)"
        if symbol not in price_book.symbols:
            return f"the book {self.name!r} does not hold {symbol}"
        return (f"the book has no usable price for {symbol} (none yet, or one that is not a finite "
                "number above 0)")

    def _say(self, symbol: str, why: str | None) -> None:
        """Log a change of whether `symbol`'s orders are checked against the band (once)."""
        if why == self.unchecked.get(symbol):
            return
        if why is None:
            del self.unchecked[symbol]
            self.log.info(f"orders for {symbol} are checked against the price band again")
        else:
            self.unchecked[symbol] = why
            self.log.warning(f"orders for {symbol} are booked without the price band: {why}")

    def close(self) -> None:
        self.follower.close()


class Session:
    """What the order manager knows about one connection."""

    def __init__(self, client: str):
        self.client = client    # host:port, for the log and the journal
        self.strategy = ""      # named by its first POSQUERY; "" for orders sent by hand
        self.later = None       # lines to log once this read's replies are sent (OrderManager.after_reply)
        self.bad = 0            # bad lines in a row
        self.recent = deque()   # receive times (ns) of its messages in the last second: --rate-limit
        self.events = None      # event rows to write once this read's replies are sent (--events)


class OrderManager:
    def __init__(self, config, log):
        self.config, self.log = config, log
        self.journal = Journal(config.journal, fsync=config.fsync)
        self.prices = BookWatcher(config, log)
        self.events = None
        if config.events:
            try:
                self.events = events.EventFile(config.events, log)
            except OSError as exc:
                raise process.Fatal(f"cannot write the event file {config.events}: {exc.strerror or exc} "
                                    "(choose another with --events)") from None
        self.clients = 0
        self.connections = {}  # socket -> the thread serving it, for hang_up
        # One connection's orders at a time: the numbering, the journal and the book's reader
        # are shared by every connection's thread.
        self.lock = threading.Lock()
        self.journal_failing = None  # the reason, while the journal cannot be written

    def handle(self, msg, session: Session, recv_ns: int = 0) -> protocol.Message:
        """The reply to one decoded message (or protocol error) from the connection `session`.

        `recv_ns` is when its bytes were read: the journal's receive time, so that the order
        hop's latency does not include the checks made here."""
        if isinstance(msg, protocol.ProtocolError):
            return protocol.Error(msg.reason)
        if isinstance(msg, protocol.PositionQuery):
            return self.position(msg, session)
        if isinstance(msg, protocol.Order):
            return self.order(msg, session, recv_ns or time.time_ns())
        # (The same words as before POSQUERY existed: lesson 02 shows this reply.)
        return protocol.Error(f"the order port takes ORDER lines; got {protocol.wire_type(msg)}")

    def order(self, msg: protocol.Order, session: Session, recv_ns: int) -> protocol.Message:
        """ACK an order once it is booked (or was, under this id, with the same terms), or
        REJECT it, saying why."""
        booked = self.journal.booked.get(msg.order_id)
        if booked is not None:
            return self._again(msg, session, *booked)
        try:
            quote = self.prices.quote(msg.symbol) if msg.symbol in self.config.symbols else None
        except book.BookBusy:
            return self._reject(msg, session, recv_ns, f"cannot check the price: the book's {msg.symbol} "
                                "record is stuck in mid-write (orderbook stalled); retry later")
        reason = (check_order(msg, self.config, quote.price if quote else None)
                  or check_limits(msg, self.config, session.strategy,
                                  self.journal.position(session.strategy, msg.symbol), len(session.recent)))
        if reason:
            self.after_reply(session, self.log.info, rejected_line(msg.order_id, session.client, reason))
            return self._reject(msg, session, recv_ns, reason)
        return self._book(msg, session, recv_ns, fill_at(msg, quote, self.config))

    def _reject(self, msg: protocol.Order, session: Session, recv_ns: int, reason: str) -> protocol.Reject:
        reason = protocol.clean_reason(reason)
        self.record(session, events.Event(recv_ns, session.strategy, events.REJECT, msg.order_id, msg.side,
                                          msg.qty, msg.symbol, msg.price, reason=reason,
                                          tick_ts_ns=msg.tick_ts_ns))
        return protocol.Reject(msg.order_id, reason)

    def _again(self, msg: protocol.Order, session: Session, order_no: int, booked_terms,
               _filled: Filled) -> protocol.Message:
        """An id booked before: the same ACK for the same order (a re-send), else REJECT."""
        if booked_terms != terms(msg):
            return protocol.Reject(msg.order_id, f"duplicate order_id {msg.order_id}: "
                                   f"already used for order {order_no}")
        self.after_reply(session, self.log.info, f"Order {msg.order_id} from {session.client} is order "
                         f"{order_no} again (a re-send): confirmed again, not booked twice")
        return protocol.Ack(msg.order_id, order_no)

    def _book(self, msg: protocol.Order, session: Session, recv_ns: int, filled: Filled) -> protocol.Message:
        """Write the order's row (with its fill) to the journal, then ACK (and FILL, added by
        `answer`); REJECT if it cannot be written whole."""
        try:
            order_no = self.journal.append(msg, session.client, recv_ns, session.strategy, filled)
        except JournalFull as exc:
            if self.journal_failing is None:  # once, not once per order while it lasts
                self.log.error(f"cannot write the journal {self.journal.path}: {exc}; rejecting "
                               "orders until it can be written again (free some disk space)")
            self.journal_failing = str(exc)
            return self._reject(msg, session, recv_ns, str(exc))
        if self.journal_failing is not None:
            self.log.info(f"the journal {self.journal.path} can be written again; booking orders")
            self.journal_failing = None
        self.after_reply(session, self.log.info, booked_line(order_no, msg, filled))
        common = (session.strategy, msg.order_id, msg.side, msg.qty, msg.symbol, msg.price)
        self.record(session, events.Event(recv_ns, common[0], events.ORDER, *common[1:], order_no=order_no,
                                          tick_ts_ns=msg.tick_ts_ns))
        self.record(session, events.Event(recv_ns, common[0], events.FILL, *common[1:], filled.price, filled.fee,
                                          order_no=order_no, tick_ts_ns=msg.tick_ts_ns,
                                          book_seq=filled.book_seq, book_ts_ns=filled.book_ts_ns))
        return protocol.Ack(msg.order_id, order_no)

    def fill_of(self, ack: protocol.Ack) -> protocol.Fill:
        """The FILL line that follows `ack`: the booked order's fill, from the journal (so a
        re-sent order gets the same FILL again)."""
        order_no, (side, qty, symbol, _), filled = self.journal.booked[ack.order_id]
        return protocol.Fill(ack.order_id, order_no, side, qty, symbol, filled.price, filled.fee, filled.book_seq)

    def record(self, session: Session, event: events.Event) -> None:
        """Keep an event row for the event file (--events), written once the replies are sent."""
        if self.events is None:
            return
        if session.events is None:
            self.events.write([event])
        else:
            session.events.append(event)

    def pnl(self, strategy: str) -> dict:
        """`strategy`'s money now: position, cash, realized, unrealized (marked to the book's
        prices; a symbol with no price in the book at its average cost), fees and pnl."""
        account = self.journal.ledger.get(strategy) or accounts.Account()
        marks = {}
        for symbol in account.position:
            with contextlib.suppress(book.BookBusy):
                quote = self.prices.quote(symbol)
                if quote:
                    marks[symbol] = quote.price
        return {"position": {s: q for s, q in account.position.items() if q}, "cash": round(account.cash, 2),
                "realized": round(account.realized, 2), "unrealized": round(account.unrealized(marks), 2),
                "fees": round(account.fees, 2), "pnl": round(account.pnl(marks), 2)}

    def after_reply(self, session: Session, say, line: str) -> None:
        """Log `line` with `say` once the replies to this read are written, not before.

        For the per-order lines (booked, rejected, re-sent): the journal row is written
        before the ACK (an ACK means the order is whole in the journal); the line a person
        reads is not needed for that, and formatting and writing it was half of an order's
        cost. (The journal's failing and recovering are logged at once: once an outage.)
        A connection's thread (`serve_client`) says the lines after it has sent the replies,
        in their order; `handle` called directly (a session without `later`) logs at once."""
        if session.later is None:
            say(line)
        else:
            session.later.append((say, line))

    def position(self, query: protocol.PositionQuery, session: Session) -> protocol.Message:
        """Answer a POSQUERY from the journal; the first one names the connection's strategy."""
        if session.strategy and session.strategy != query.strategy:
            return protocol.Error(f"this connection is strategy {session.strategy}; "
                                  f"ask about {query.strategy} on a connection of its own")
        if not session.strategy:
            session.strategy = query.strategy
            self.log.info(f"client {session.client} trades as {query.strategy!r}")
        return protocol.Position(query.strategy, query.symbol,
                                 self.journal.position(query.strategy, query.symbol))

    def serve_client(self, conn: socket.socket) -> None:
        """Serve one connection until it closes: read, answer, then log. Its own thread.

        The thread sleeps in a blocking ``recv`` until the client's bytes come: the
        cheapest wake-up there is (``hftlab bench --wakeups``). The orders of one read are
        handled under `lock`, the replies are sent without it, so a client that never
        reads its replies blocks only its own thread (TCP's flow control then stops its
        sends), never the others'."""
        # Signals are the main thread's to take (it stops the server): were one delivered
        # here, the main thread would sleep on in accept().
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        session = Session(_peer_address(conn))
        session.later, session.events = [], []
        self._count_client(session, conn, +1)
        decoder = protocol.Decoder()
        try:
            while data := conn.recv(65536):
                recv_ns = time.time_ns()  # before the decoding: the order hop ends at the recv
                replies, closing = self.answer(decoder.feed(data), session, recv_ns)
                conn.sendall(replies)
                later, session.later = session.later, []
                for say, line in later:
                    say(line)
                if session.events:
                    with self.lock:  # one writer at a time: rows stay whole
                        self.events.write(session.events)
                    session.events = []
                if closing:
                    self.log.warning(f"closed {session.client}: {MAX_BAD_LINES} bad lines in a row")
                    break
        except OSError:  # reset by the client, or shut down by hang_up
            pass
        finally:
            self._count_client(session, conn, -1)
            conn.close()

    def answer(self, messages: list, session: Session, recv_ns: int) -> tuple:
        """(the replies to one read's messages, as bytes; whether to close the connection,
        after MAX_BAD_LINES bad lines in a row). Under `lock`: one connection at a time."""
        replies = []
        with self.lock:
            for msg in messages:
                session.recent.append(recv_ns)
                while session.recent[0] <= recv_ns - 1_000_000_000:
                    session.recent.popleft()
                reply = self.handle(msg, session, recv_ns)
                session.bad = session.bad + 1 if isinstance(reply, protocol.Error) else 0
                replies.append(protocol.encode(reply))
                if type(reply) is protocol.Ack:
                    replies.append(protocol.encode(self.fill_of(reply)))
                if session.bad >= MAX_BAD_LINES:
                    replies.append(protocol.encode(protocol.Error(f"{MAX_BAD_LINES} bad lines in a row; closing")))
                    return b"".join(replies), True
        return b"".join(replies), False

    def _count_client(self, session: Session, conn: socket.socket, change: int) -> None:
        with self.lock:
            self.clients += change
            if change > 0:
                self.log.info(f"client {session.client} connected ({self.clients} now)")
            else:
                self.connections.pop(conn, None)
                self.log.info(f"client {session.client} disconnected")

    def start_client(self, conn: socket.socket) -> None:
        """Serve a new connection in a thread of its own."""
        net.no_delay(conn)
        thread = threading.Thread(target=self.serve_client, args=(conn,), daemon=True,
                                  name=f"client-{conn.fileno()}")
        with self.lock:
            self.connections[conn] = thread
        thread.start()

    def hang_up(self, timeout: float = 2.0) -> None:
        """Close every connection and let its thread finish by itself."""
        with self.lock:
            connections = dict(self.connections)
        for conn in connections:
            with contextlib.suppress(OSError):  # closed by its thread meanwhile
                conn.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for thread in connections.values():
            thread.join(max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        with self.lock:  # never under a connection's thread in the middle of an order
            for strategy in sorted(self.journal.ledger):
                self.log.info(f"P&L of {strategy or 'orders sent by hand'!r}: {self.pnl(strategy)}")
            self.journal.close()
            self.prices.close()
            if self.events is not None:
                self.events.close()


def _peer_address(conn: socket.socket) -> str:
    """host:port of a connection's other end ("?" once it is gone)."""
    try:
        return net.address(*conn.getpeername()[:2])
    except OSError:
        return "?"


def listen(config) -> socket.socket:
    """The order port's listening socket, or the one sentence a taken port deserves."""
    try:
        return socket.create_server((config.host, config.order_port))
    except OSError as exc:
        raise net.listen_error(exc, config.host, config.order_port, "--order-port") from None


def serve(config, log) -> None:
    """Accept connections until stopped (Ctrl-C or SIGTERM), each served by its own thread."""
    manager = OrderManager(config, log)
    try:
        listener = listen(config)
        net.warn_if_exposed(log, config.host)
        port = listener.getsockname()[1]
        journal = manager.journal
        if journal.last_no:
            rows = len(journal.booked)
            log.info(f"journal {config.journal} has {rows} orders; numbering continues"
                     + (f" from {journal.last_no + 1}" if rows != journal.last_no else ""))
        process.ready(log, orders=net.address(config.host, port), journal=config.journal,
                      fsync="on" if config.fsync else "off")
        try:
            while True:
                try:
                    conn, _ = listener.accept()  # a stop arrives here, as KeyboardInterrupt
                except OSError as exc:  # out of file descriptors, or a connection reset at once
                    log.warning(f"could not accept a connection: {exc.strerror or exc}; going on")
                    time.sleep(0.1)  # EMFILE would repeat at once: give closing connections a moment
                    continue
                manager.start_client(conn)
        finally:
            listener.close()
            manager.hang_up()
    finally:
        manager.close()


def run(config, log) -> None:
    # A file-size limit (ulimit -f) would kill us with SIGXFSZ on a write past it; ignored,
    # the write fails with EFBIG instead, and that is handled like a full disk.
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    serve(config, log)


def main(argv=None) -> int:
    return process.main("order_manager", "Accept, check, journal and confirm orders.", run, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
