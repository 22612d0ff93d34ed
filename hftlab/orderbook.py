"""The orderbook: the feed handler. Reads the price feed, writes the shared-memory book.

It owns the book: it creates the segment at start (taking over one left by a crashed
run), is its only writer, and removes it on a clean exit. Between those it turns the
gateway's byte stream into book updates:

- `FeedHandler` is fed whatever ``recv`` returned (any slice of the stream) and uses
  the protocol's `Decoder` to get whole messages back; a tick in the usual case (`usual`:
  the next seq, a known symbol, a price above 0) goes straight into the book, and a chunk of
  nothing but such PRICE lines (a burst) comes back as columns, is checked a column at a time
  and written in one call, one seqlocked write per tick all the same;
- sequence numbers find gaps: a PRICE whose seq is not last+1, or an HB whose last_seq is
  ahead of ours, means ticks were lost; a HELLO with a new session is a gateway restart,
  not a gap;
- while the gateway is unreachable or silent the book's feed state says DOWN, so readers
  can see the prices are stale; it reconnects with back-off (`hftlab.link.Link`, the one
  reconnecting client);
- a line that is not valid, or valid but not storable (a PRICE whose price is not above 0
  or whose seq is 0: the protocol's syntax allows them, the book does not), is counted in
  ``errors``, logged, and skipped; nothing a gateway sends stops the process.

Run alone: ``python -m hftlab.orderbook`` (or ``hftlab orderbook``).
"""

from __future__ import annotations

import time

from hftlab import book, process, protocol
from hftlab.link import Link

__all__ = ["SUMMARY_EVERY", "BEAT_EVERY", "FIRST_SUMMARY", "FeedHandler", "summary", "follow",
           "run", "main"]

SUMMARY_EVERY = 5.0  # seconds between the book lines in the log
BEAT_EVERY = 0.5  # seconds between the book's heartbeat_ns updates while prices flow
FIRST_SUMMARY = 1.5  # the first one soon after connecting, so a new run shows prices at once


class FeedHandler:
    """Turns price-feed bytes into book updates, counting gaps. No sockets in here."""

    def __init__(self, price_book: book.SharedPriceBook, log):
        self.book, self.log = price_book, log
        self.decoder = protocol.Decoder()
        self.index = {s: price_book.index(s) for s in price_book.symbols}
        self.session = None
        self.last_seq = None
        self.gaps = 0
        self.errors = 0
        self.unknown = set()

    def connected(self) -> None:
        self.decoder = protocol.Decoder()  # a new stream: nothing half-read carries over

    def feed(self, data: bytes) -> None:
        """Write, count or report what a chunk of the feed holds, then ring the doorbell."""
        got = self.decoder.feed_columns(data)
        if got and type(got[0]) is protocol.PriceColumns:  # a run of PRICE lines: a burst
            run = got.pop(0)
            if not self.write_run(*run):
                self.dispatch(run.messages())
        self.dispatch(got)
        # Once per chunk, not per tick, and after the book's header counters are stored
        # (the doorbell's arm-then-look protocol needs that order): one 8-byte load when no
        # reader sleeps on the doorbell, a ring of each bell when one does (hftlab.book.doorbell).
        self.book.ring()

    def usual(self, seq: int, symbol: str, price: float) -> int | None:
        """The book's record of a tick in the usual case: the next seq, a known symbol, a price
        above 0. None if it is not: the careful road (`_price`) then takes it, and says what is
        wrong. (A burst is checked the same way a column at a time, in `usual_run`.)"""
        i = self.index.get(symbol)
        if i is None or self.last_seq is None or seq != self.last_seq + 1 or not price > 0.0:
            return None
        return i

    def usual_run(self, seqs, symbols, prices) -> list | None:
        """`usual` for every tick of a run at once, each check over a whole column (the loops
        run in C): the book's record of each tick, or None if one tick is not usual."""
        last = self.last_seq
        if last is None or seqs != list(range(last + 1, last + 1 + len(seqs))):
            return None
        indexes = list(map(self.index.get, symbols))
        if None in indexes or not min(prices) > 0.0:
            return None
        return indexes

    def write_run(self, seqs, ts_ns, symbols, prices) -> bool:
        """Write a run of ticks (a `PriceColumns`) in one call, one seqlocked write a tick, if
        they are all usual (`usual_run`); False, and nothing written, if not."""
        indexes = self.usual_run(seqs, symbols, prices)
        if indexes is None:
            return False
        self.book.write_ticks(indexes, prices, seqs, ts_ns)
        self.last_seq = seqs[-1]
        return True

    def dispatch(self, messages) -> None:
        """Write, count or report each decoded message in turn."""
        for msg in messages:
            kind = type(msg)
            if kind is protocol.Price:
                seq, ts_ns, symbol, price = msg
                i = self.usual(seq, symbol, price)
                if i is None:
                    self._price(msg)
                else:
                    self.last_seq = seq
                    self.book.update_index(i, price, seq, ts_ns)
            elif kind is protocol.Heartbeat:
                self._check_seq(msg.last_seq + 1)
                self.last_seq = msg.last_seq if self.last_seq is None else max(self.last_seq, msg.last_seq)
                self.book.heartbeat()
            elif kind is protocol.Hello:
                self._hello(msg)
            elif kind is protocol.ProtocolError:
                self.error(msg.reason)

    def error(self, reason: str) -> None:
        """Count and log one line from the gateway that is skipped."""
        self.errors += 1
        self.log.warning(f"bad line from the gateway, skipped: {reason}")

    def _price(self, msg: protocol.Price) -> None:
        if msg.seq == 0:  # the book's "no price yet"; a feed counts from 1
            self.error(f"PRICE {msg.symbol} has seq 0; a feed's seq starts at 1")
            return
        self._check_seq(msg.seq)
        self.last_seq = msg.seq
        if not msg.price > 0.0:
            self.error(f"PRICE {msg.symbol} seq {msg.seq} has price {msg.price}; a price is above 0")
            return
        i = self.index.get(msg.symbol)
        if i is None:
            if msg.symbol not in self.unknown:
                self.unknown.add(msg.symbol)
                self.log.warning(f"ignoring {msg.symbol}: not in this book ({' '.join(self.book.symbols)})")
            return
        self.book.update_index(i, msg.price, msg.seq, msg.ts_ns)

    def _check_seq(self, seq: int) -> None:
        """`seq` is the next number we expect to have been sent; more than last+1 is a gap."""
        if self.last_seq is not None and seq > self.last_seq + 1:
            missing = seq - self.last_seq - 1
            self.gaps += missing
            self.book.add_gaps(missing)
            self.log.warning(f"gap: {missing} price messages lost after seq {self.last_seq}")

    def _hello(self, msg: protocol.Hello) -> None:
        if msg.session != self.session:
            if self.session is not None:
                self.log.info(f"new gateway session {msg.session} (was {self.session}): "
                              "sequence numbers start again, not a gap")
            self.session, self.last_seq = msg.session, None
        self.book.set_feed_state(book.FEED_UP, msg.session)


def summary(price_book: book.SharedPriceBook) -> str:
    quotes = price_book.quotes()
    prices = "  ".join(f"{s} {q.price:.2f}" if q else f"{s} -" for s, q in quotes.items())
    h = price_book.header()
    return f"book: {prices}  (seq {h['last_seq']}, {h['gaps']} gaps)"


def follow(feed: Link, handler: FeedHandler, log) -> None:
    """Read the feed until it closes or falls silent (the link logs which)."""
    next_summary = time.monotonic() + FIRST_SUMMARY
    next_beat = 0.0
    while True:
        data = feed.recv(timeout=None)  # waits for bytes, at most until the feed is silent too long
        if data is None:
            return
        handler.feed(data)
        now = time.monotonic()
        if now >= next_beat:
            # Readers can tell a live writer with a quiet feed from a stuck one.
            handler.book.heartbeat()
            next_beat = now + BEAT_EVERY
        if now >= next_summary:
            next_summary = now + SUMMARY_EVERY
            log.info(summary(handler.book))


def run(config, log) -> None:
    try:
        price_book = book.SharedPriceBook(config.symbols, config.shm_name)
    except book.BookError as exc:
        raise process.Fatal(str(exc)) from None
    feed = Link("price feed", config.host, config.price_port, log, config.heartbeat_interval)
    try:
        if price_book.took_over_from is not None:
            log.warning(f"removed a stale book {config.shm_name!r} left by crashed process "
                        f"{price_book.took_over_from}")
        process.ready(log, book=config.shm_name, symbols=",".join(price_book.symbols),
                      bytes=price_book.nbytes, mapped=price_book.mapped_bytes)
        handler = FeedHandler(price_book, log)
        while True:
            if not feed.keep_up():
                price_book.heartbeat()  # no gateway, but a live writer: readers can tell the two apart
                time.sleep(feed.retry_in())
                continue
            handler.connected()
            follow(feed, handler, log)
            price_book.set_feed_state(book.FEED_DOWN)
    finally:
        feed.close()
        price_book.close()
        price_book.unlink()


def main(argv=None) -> int:
    return process.main("orderbook", "Write the price feed into the shared-memory book.", run, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
