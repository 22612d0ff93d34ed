"""The order manager: the broker. A TCP server that books orders from strategies.

Each order is validated (`check_order`), appended to the journal, and only then ACKed:
the journal is written with one unbuffered ``os.write`` before the reply, so an order
that was ACKed is on disk even if this process is killed the next instant. Order numbers
count 1, 2, 3... across all clients and continue from the journal after a restart.

Orders are idempotent by ``order_id``: a strategy that lost its connection before the
ACK arrived re-sends the same order with the same id, and gets the same ACK (the same
order number) without the order being booked twice, also across a restart of this
process, because the ids are read back from the journal. (Strategies make their ids
unique: a random tag per strategy process, then a counter.)

A line that is not a valid message gets ``ERROR,<reason>``; a valid order that breaks a
rule gets ``REJECT,<order_id>,<reason>``. Either way the connection stays usable and no
other client notices. A client that sends only garbage is closed after
`MAX_BAD_LINES` bad lines in a row.

Run alone: ``python -m hftlab.order_manager`` (or ``hftlab order-manager``).
"""

from __future__ import annotations

import asyncio
import math
import os
import time

from hftlab import book as _book
from hftlab import process, protocol

JOURNAL_COLUMNS = "order_no,recv_ns,client,order_id,tick_ts_ns,side,qty,symbol,price"
MAX_BAD_LINES = 20


class Journal:
    """Append-only CSV of booked orders, readable and writable by the user only."""

    def __init__(self, path: str):
        self.path = path
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            rows = read_journal(path)
            with open(path, "rb") as f:
                data = f.read()
            if data and not data.endswith(b"\n"):
                # A row cut short by a crash mid-write: never ACKed (the ACK follows the
                # write), so the strategy will re-send it. Drop it, or the next row would
                # be glued onto it.
                os.truncate(path, data.rfind(b"\n") + 1)
        except OSError as exc:
            raise process.Fatal(f"cannot use the journal {path}: {exc.strerror or exc} "
                                "(choose another with --journal)") from None
        self.last_no = len(rows)
        # order_id -> (order_no, what was ordered): the memory that makes re-sends harmless
        self.booked = {}
        for line_no, r in enumerate(rows, start=2):
            try:
                self.booked[r["order_id"]] = (int(r["order_no"]), (r["side"], int(r["qty"]), r["symbol"],
                                                                   f"{float(r['price']):.2f}"))
            except (KeyError, TypeError, ValueError):
                raise process.Fatal(f"line {line_no} of the journal {path} is damaged; move the file "
                                    "away (its orders stay readable) or pass another --journal") from None
        if os.fstat(self.fd).st_size == 0:
            os.write(self.fd, (JOURNAL_COLUMNS + "\n").encode())

    def append(self, order: protocol.Order, client: str, recv_ns: int) -> int:
        self.last_no += 1
        o = order
        row = (f"{self.last_no},{recv_ns},{client},{o.order_id},{o.tick_ts_ns},{o.side},"
               f"{o.qty},{o.symbol},{o.price:.2f}\n")
        os.write(self.fd, row.encode())  # one unbuffered write: in the OS before the ACK
        self.booked[o.order_id] = (self.last_no, terms(o))
        return self.last_no

    def close(self) -> None:
        os.close(self.fd)


def terms(order: protocol.Order) -> tuple:
    """What an order asks for, as compared when its id comes again."""
    return (order.side, order.qty, order.symbol, f"{order.price:.2f}")


def read_journal(path: str) -> list:
    """The journal's rows as dicts (empty if there is no journal yet)."""
    try:
        with open(path) as f:
            lines = f.read().split("\n")
    except FileNotFoundError:
        return []
    # What follows the last newline is a row still being written (or nothing).
    names = JOURNAL_COLUMNS.split(",")
    return [dict(zip(names, line.split(","))) for line in lines[1:-1] if line]


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
    if last_price and abs(order.price / last_price - 1) > config.price_band:
        return (f"price {order.price:.2f} is more than {config.price_band:.0%} away "
                f"from the book's {last_price:.2f}")
    return None


class BookWatcher:
    """The book's last prices for the price-band check, if a live book is there to read.

    It never blocks the event loop, which serves every client: the read is a bounded
    seqlock read (``wait=False``: a few microseconds of spinning, no sleep). A record that
    stays in mid-write (the orderbook stopped or stalled in an update) raises
    `hftlab.book.BookBusy`, and the order manager REJECTs that order, since its price
    cannot be checked. No book, a symbol without a usable price yet, or a segment under
    the book's name that is not a book we can read: the order is checked without the band,
    and the last case is logged once (one sentence), not on every order."""

    def __init__(self, config, log):
        self.log = log
        self.follower = _book.Follower(config.shm_name, interval=1.0)
        self.said = None  # the last complaint about the segment, so it is logged once

    def last_price(self, symbol: str) -> float | None:
        try:
            book = self.follower.book()
        except _book.BookError as exc:  # another layout or version, a damaged header
            if str(exc) != self.said:
                self.said = str(exc)
                self.log.warning(f"orders are checked without the price band: {exc}")
            return None
        if book is None or symbol not in book.symbols:
            return None
        self.said = None
        try:
            quote = book.read(symbol, wait=False)
        except _book.BookBusy as exc:
            if not exc.writer_alive:
                self.follower.lost()  # a restarted orderbook will make a new book
            raise
        return quote.price if quote else None

    def close(self) -> None:
        self.follower.close()


class OrderManager:
    def __init__(self, config, log):
        self.config, self.log = config, log
        self.journal = Journal(config.journal)
        self.prices = BookWatcher(config, log)
        self.clients = 0
        self.connections = process.Connections()

    def handle(self, msg, client: str, recv_ns: int = 0) -> protocol.Message:
        """The reply to one decoded message (or protocol error) from `client`.

        `recv_ns` is when its bytes were read: the journal's receive time, so that the
        order hop's latency does not include the checks made here."""
        if isinstance(msg, protocol.ProtocolError):
            return protocol.Error(msg.reason)
        if not isinstance(msg, protocol.Order):
            return protocol.Error(f"the order port takes ORDER lines; got {protocol.wire_type(msg)}")
        booked = self.journal.booked.get(msg.order_id)
        if booked is not None:
            order_no, booked_terms = booked
            if booked_terms != terms(msg):
                return protocol.Reject(msg.order_id, f"duplicate order_id {msg.order_id}: "
                                       f"already used for order {order_no}")
            self.log.info(f"Order {msg.order_id} from {client} is order {order_no} again "
                          "(a re-send): confirmed again, not booked twice")
            return protocol.Ack(msg.order_id, order_no)
        try:
            last_price = self.prices.last_price(msg.symbol) if msg.symbol in self.config.symbols else None
        except _book.BookBusy:
            return protocol.Reject(msg.order_id, f"cannot check the price: the book's {msg.symbol} "
                                   "record is stuck in mid-write (orderbook stalled); retry later")
        reason = check_order(msg, self.config, last_price)
        if reason:
            self.log.info(f"Rejected {msg.order_id} from {client}: {reason}")
            return protocol.Reject(msg.order_id, protocol.clean_reason(reason))
        order_no = self.journal.append(msg, client, recv_ns or time.time_ns())
        self.log.info(f"Received Order {order_no}: {msg.side} {msg.qty} {msg.symbol} @ {msg.price:.2f}")
        return protocol.Ack(msg.order_id, order_no)

    async def on_connect(self, reader, writer) -> None:
        self.connections.add(writer)
        process.no_delay(writer.get_extra_info("socket"))
        client = process.peer(writer)
        self.clients += 1
        self.log.info(f"client {client} connected ({self.clients} now)")
        decoder, bad = protocol.Decoder(), 0
        try:
            while data := await reader.read(65536):
                recv_ns = time.time_ns()
                replies = []
                for msg in decoder.feed(data):
                    reply = self.handle(msg, client, recv_ns)
                    bad = bad + 1 if isinstance(reply, protocol.Error) else 0
                    replies.append(protocol.encode(reply))
                    if bad >= MAX_BAD_LINES:
                        replies.append(protocol.encode(protocol.Error(
                            f"{MAX_BAD_LINES} bad lines in a row; closing")))
                        break
                writer.write(b"".join(replies))
                await writer.drain()
                if bad >= MAX_BAD_LINES:
                    self.log.warning(f"closed {client}: {MAX_BAD_LINES} bad lines in a row")
                    break
        except (ConnectionError, OSError):
            pass
        finally:
            self.clients -= 1
            self.connections.remove()
            self.log.info(f"client {client} disconnected")
            writer.close()


async def serve(config, log) -> None:
    manager = OrderManager(config, log)
    try:
        server = await asyncio.start_server(manager.on_connect, config.host, config.order_port)
    except OSError as exc:
        raise process.listen_error(exc, config.host, config.order_port, "--order-port") from None
    process.warn_if_exposed(log, config.host)
    port = server.sockets[0].getsockname()[1]
    if manager.journal.last_no:
        log.info(f"journal {config.journal} has {manager.journal.last_no} orders; numbering continues")
    process.ready(log, orders=process.address(config.host, port), journal=config.journal)
    try:
        await process.until_stopped()
    finally:
        server.close()
        await manager.connections.hang_up()
        manager.journal.close()
        manager.prices.close()


def run(config, args, log) -> None:
    asyncio.run(serve(config, log))


def main(argv=None) -> int:
    return process.main("order_manager", "Accept, check, journal and confirm orders.", run, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
