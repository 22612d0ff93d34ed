"""The order manager's cases: the harness is its strategies (clients on the order port)
and reads its journal (--journal). No book exists under --shm-name, so no price band
applies, except in cases 10, 12 and 13, where the harness makes the book before the order
manager starts (and, in 12, moves its price)."""

from __future__ import annotations

import time

from hftlab import accounts, protocol
from hftlab.conform.harness import CaseFailed, background, case, only_loopback
from hftlab.conform.peers import LineClient

__all__ = ["ROLE", "CASES", "BOOK_PRICE", "BOOK_SEQ"]

ROLE = "order_manager"
BOOK_PRICE = 172.53  # AAPL's price in the book of cases 10, 12 and 13
BOOK_SEQ = 7001      # the seq of the tick that set it


def order(order_id, side="BUY", qty=10, symbol="AAPL", price=172.53) -> bytes:
    return protocol.encode(protocol.Order(order_id, time.time_ns(), side, qty, symbol, price))


def client(ctx) -> LineClient:
    return ctx.client(ctx.config.order_port, "order port")


def journal_rows(ctx) -> list:
    """The lines of the journal; CaseFailed if it cannot be read."""
    try:
        with open(ctx.config.journal) as f:
            return f.readlines()
    except OSError as exc:
        raise CaseFailed(f"the journal {ctx.config.journal} cannot be read: {exc.strerror}",
                         hint="append each booked order to --journal (HFTLAB_JOURNAL), a CSV file with a "
                              "header line") from None


def ask(c, sent: bytes, kind):
    """Send one line and read its answer, which must be a `kind`."""
    c.send(sent)
    msg = c.next(3.0)
    if not isinstance(msg, kind):
        raise CaseFailed(f"{sent.strip()!r} was answered with {msg!r}, expected {kind.__name__}")
    return msg


@case(ROLE, 1, "a valid ORDER gets ACK,<order_id>,<order_no>",
      "decode the line, book it, answer encode(Ack(order_id, order_no)), numbers from 1")
def ack(ctx):
    ctx.start()
    c = client(ctx)
    line = order("c1")
    a = ask(c, line, protocol.Ack)
    if a.order_id != "c1" or a.order_no < 1:
        raise CaseFailed(f"got {a}")


@case(ROLE, 2, "a well-formed order that breaks a rule gets REJECT,<order_id>,<reason>",
      "qty must be 1..max_qty: check_order-like rules, answered with Reject(order_id, reason)")
def reject(ctx):
    ctx.start()
    c = client(ctx)
    for line in (order("r1", qty=0), order("r2", qty=ctx.config.max_qty + 1), order("r3", qty=-5)):
        r = ask(c, line, protocol.Reject)
        if r.order_id != protocol.decode(line.strip()).order_id:
            raise CaseFailed(f"REJECT names {r.order_id}, not the order's id")
    line = order("r4")
    ask(c, line, protocol.Ack)


@case(ROLE, 3, "a line that is not a valid message gets ERROR,<reason>, and the connection goes on",
      "answer a ProtocolError from the Decoder with encode(Error(reason)); never close or crash")
def garbage(ctx):
    ctx.start()
    c = client(ctx)
    for line in (b"HELLO WORLD\n", b"ORDER,x\n", b"FOO,1\n", b"\xff\xfe\n",
                 b"ORDER,g1,1,HOLD,10,AAPL,1.00\n", b"x" * 2000 + b"\n"):
        ask(c, line, protocol.Error)
    line = order("g2")
    ask(c, line, protocol.Ack)
    ctx.alive()


@case(ROLE, 4, "the journal has the order before the ACK is sent",
      "append the row to --journal (HFTLAB_JOURNAL) with one os.write, then send the ACK")
def journal_first(ctx):
    ctx.start()
    c = client(ctx)
    for i in range(20):
        line = order(f"j{i}")
        ask(c, line, protocol.Ack)
        if not any(f",j{i}," in row for row in journal_rows(ctx)):
            raise CaseFailed(f"order j{i} was ACKed but is not in the journal yet")


@case(ROLE, 5, "a duplicate order_id is idempotent: the same order gets the same ACK; another is REJECTed",
      "remember booked ids (also from the journal after a restart); same id and terms: same order_no")
def duplicate(ctx):
    ctx.start()
    c = client(ctx)
    line = order("d1")
    first = ask(c, line, protocol.Ack)
    again = ask(c, line, protocol.Ack)
    if again.order_no != first.order_no:
        raise CaseFailed(f"the same order sent twice got order numbers {first.order_no} and {again.order_no}")
    other = order("d1", side="SELL")
    ask(c, other, protocol.Reject)
    rows = [r for r in journal_rows(ctx) if ",d1," in r]
    if len(rows) != 1:
        raise CaseFailed(f"the journal has {len(rows)} rows for d1")


def five_answers(c, k: int) -> list:
    """Send client k's five orders in one write; the answers that came within 10 s."""
    c.send(b"".join(order(f"m{k}-{i}") for i in range(5)))
    deadline = time.monotonic() + 10.0
    answers = []
    while len(answers) < 5 and (msg := c.next(deadline - time.monotonic())) is not None:
        answers.append(msg)
    return answers


@case(ROLE, 6, "many clients at once: every order ACKed, each with its own number",
      "serve each connection on its own (asyncio, threads or select); one counter for all")
def many_clients(ctx):
    ctx.start()
    clients = [client(ctx) for _ in range(20)]
    pending = [background(five_answers, c, k, name=f"conform order_manager 6 client {k}")
               for k, c in enumerate(clients)]
    answers = [msg for p in pending for msg in p.result(20.0)]
    acks = [a for a in answers if isinstance(a, protocol.Ack)]
    problems = [a for a in answers if not isinstance(a, protocol.Ack)]
    if problems or len(acks) != 100:
        raise CaseFailed(f"{len(acks)} ACKs of 100 orders from 20 clients; also got {problems[:3]}")
    numbers = [a.order_no for a in acks]
    if len(set(numbers)) != 100:
        raise CaseFailed(f"order numbers repeat: {len(set(numbers))} distinct of 100")
    rows = {tuple(row.split(",")[:4:3]) for row in journal_rows(ctx)}  # (order_no, order_id)
    wrong = [a for a in acks if (str(a.order_no), a.order_id) not in rows]
    if wrong:
        raise CaseFailed(f"{len(wrong)} ACKs name an order number the journal gives another order, e.g. "
                         f"{wrong[0].order_id} ACKed as {wrong[0].order_no}")


@case(ROLE, 7, "order numbers continue after a restart, and a re-sent id gets its old number",
      "at start read the journal back: the largest order_no, and every booked order_id")
def restart(ctx):
    ctx.start()
    c = client(ctx)
    numbers = []
    for i in range(3):
        line = order(f"n{i}")
        numbers.append(ask(c, line, protocol.Ack).order_no)
    c.close()
    ctx.sigterm()
    ctx.start()
    c = client(ctx)
    line = order("n9")
    a = ask(c, line, protocol.Ack)
    if a.order_no != max(numbers) + 1:
        raise CaseFailed(f"before the restart orders {numbers}; after it the next is {a.order_no}")
    line = order("n0")
    again = ask(c, line, protocol.Ack)
    if again.order_no != numbers[0]:
        raise CaseFailed(f"n0 re-sent after the restart got {again.order_no}, not its {numbers[0]}")


@case(ROLE, 8, "POSQUERY,<strategy>,<symbol> gets POSITION with the net quantity booked for it",
      "the first POSQUERY names the connection; orders on it count for that strategy (docs/protocol.md)")
def positions(ctx):
    ctx.start()
    c = client(ctx)
    q = protocol.encode(protocol.PositionQuery("s1", "AAPL"))
    p = ask(c, q, protocol.Position)
    if (p.strategy, p.symbol, p.qty) != ("s1", "AAPL", 0):
        raise CaseFailed(f"a new strategy's position: {p}")
    line = order("p1", qty=10)
    ask(c, line, protocol.Ack)
    p = ask(c, q, protocol.Position)
    if p.qty != 10:
        raise CaseFailed(f"after BUY 10 AAPL the position is {p.qty}")


@case(ROLE, 9, "SIGTERM: a clean exit (status 0) within 5 s, with a client connected",
      "handle SIGTERM like Ctrl-C: close the clients, exit 0")
def sigterm(ctx):
    ctx.start()
    client(ctx)
    ctx.sigterm()


def with_book(ctx):
    """The book under --shm-name, made by the harness before the order manager starts, with a
    price for AAPL only."""
    b = ctx.make_book(ctx.config.symbols)
    b.update("AAPL", BOOK_PRICE, seq=BOOK_SEQ)
    return b


@case(ROLE, 10, "the price band: an order more than --price-band from the book's price gets REJECT, one "
      "within it ACK; an unknown symbol gets REJECT",
      "read the book (SharedPriceBook.attach(--shm-name)): REJECT when abs(price / book's price - 1) > "
      "price_band, naming the band; REJECT a symbol not in --symbols; book the order without the band when "
      "the book has no price for it")
def price_band(ctx):
    with_book(ctx)
    ctx.start()
    c = client(ctx)
    band = ctx.config.price_band
    for order_id, price in (("b1", 200.00), ("b2", 150.00), ("b3", 191.00)):
        line = order(order_id, price=price)
        c.send(line)
        answer = c.next(3.0)
        if not isinstance(answer, protocol.Reject):
            raise CaseFailed(f"BUY 10 AAPL at {price:.2f}, {abs(price / BOOK_PRICE - 1):.1%} away from the "
                             f"book's {BOOK_PRICE} (--price-band {band:g}), was answered with {answer!r}, "
                             "expected REJECT")
        if not any(word in answer.reason.lower() for word in ("band", f"{band:.0%}")):
            raise CaseFailed(f"the REJECT of an order at {price:.2f} gives the reason {answer.reason!r}, which "
                             f"does not name the band ('band' or '{band:.0%}')")
    for order_id, symbol, price in (("b4", "AAPL", 189.00), ("b5", "AAPL", 160.00), ("b6", "MSFT", 500.00)):
        a = ask(c, order(order_id, symbol=symbol, price=price), protocol.Ack)
        if a.order_id != order_id:
            raise CaseFailed(f"the ACK of {order_id} names {a.order_id}")
    ask(c, order("b7", symbol="ZZZ", price=10.00), protocol.Reject)


@case(ROLE, 11, "it listens on HOST (127.0.0.1) only, never on every address",
      "bind HOST only (--host, HFTLAB_HOST: 127.0.0.1), never 0.0.0.0 or '': the order port has no "
      "authentication")
def loopback_only(ctx):
    ctx.start()
    only_loopback(ctx, {"order port": ctx.config.order_port})


def expect_fill(c, order_id: str, qty: int, price: float, seq: int, config) -> protocol.Fill:
    """The FILL after the ACK of `order_id`: CaseFailed unless it is at `price` (the book's),
    from the tick `seq`, with the fee the config's fees make."""
    fill = c.next_fill(3.0)
    if fill is None:
        raise CaseFailed(f"no FILL line followed the ACK of {order_id}")
    fee = accounts.fee(qty, price, config.fee_per_share, config.fee_bps)
    want = protocol.Fill(order_id, fill.order_no, "BUY", qty, "AAPL", price, fee, seq)
    if fill != want:
        raise CaseFailed(f"the FILL of {order_id} was {protocol.encode(fill).decode().strip()!r}, expected "
                         f"{protocol.encode(want).decode().strip()!r} (the book's price {price:.2f} of tick {seq} "
                         f"when the order came; fee {config.fee_per_share:g} a share + {config.fee_bps:g} bp)")
    return fill


@case(ROLE, 12, "fills: each ACK is followed by FILL at the book's price when the order is handled, "
      "with its fee, and the journal row carries the fill",
      "after the ACK send Fill(order_id, order_no, side, qty, symbol, the book's price now, fee, the record's "
      "seq); fee = qty x --fee-per-share + qty x price x --fee-bps / 10000, to the cent; journal columns "
      "fill_price,fee,book_seq,book_ts_ns (docs/protocol.md, Fills)", fee_bps=2.0, fee_per_share=0.02)
def fills(ctx):
    b = with_book(ctx)
    ctx.start()
    c = client(ctx)
    ask(c, order("x1", price=172.90), protocol.Ack)          # it saw 172.90; the book says 172.53
    expect_fill(c, "x1", 10, BOOK_PRICE, BOOK_SEQ, ctx.config)
    b.update("AAPL", 174.10, seq=BOOK_SEQ + 5)               # the market moves: a later order meets it
    ask(c, order("x2", qty=30, price=172.90), protocol.Ack)
    expect_fill(c, "x2", 30, 174.10, BOOK_SEQ + 5, ctx.config)
    rows = [line.rstrip("\n").split(",") for line in journal_rows(ctx)]
    header = rows[0]
    if "fill_price" not in header:
        raise CaseFailed(f"the journal's header {','.join(header)!r} has no fill_price column")
    at = header.index("order_id"), header.index("fill_price")
    filled = {r[at[0]]: r[at[1]] for r in rows[1:] if len(r) == len(header)}
    if filled.get("x2") != "174.10":
        raise CaseFailed(f"the journal's fill_price of x2 is {filled.get('x2')!r}, expected '174.10'")


@case(ROLE, 13, "limits: past --position-limit or --rate-limit an order gets REJECT naming the limit",
      "keep each strategy's position (named by POSQUERY); REJECT an order that takes it beyond "
      "+-position_limit ('position limit: ...'); count each connection's lines over the last second and "
      "REJECT orders past rate_limit ('message rate limit: ...')", position_limit=20, rate_limit=10)
def limits(ctx):
    with_book(ctx)
    ctx.start()
    c = client(ctx)
    ask(c, protocol.encode(protocol.PositionQuery("conform-om", "AAPL")), protocol.Position)
    ask(c, order("l1", qty=20), protocol.Ack)
    over = ask(c, order("l2", qty=1), protocol.Reject)
    if "position limit" not in over.reason:
        raise CaseFailed(f"BUY 1 more than --position-limit 20 was refused with {over.reason!r}, which does not "
                         "say 'position limit'")
    flood = client(ctx)
    flood.send(b"".join(order(f"r{i}", side="SELL", qty=1) for i in range(12)))   # one write: one second
    answers = [flood.next(3.0) for _ in range(12)]
    kinds = [type(a).__name__ if a is not None else "nothing" for a in answers]
    if kinds != ["Ack"] * 10 + ["Reject"] * 2:
        raise CaseFailed(f"12 orders in one second with --rate-limit 10 were answered {kinds}, expected 10 ACKs "
                         "then 2 REJECTs")
    if "rate limit" not in answers[-1].reason:
        raise CaseFailed(f"the order past --rate-limit was refused with {answers[-1].reason!r}, which does not "
                         "say 'rate limit'")


CASES = [ack, reject, garbage, journal_first, duplicate, many_clients, restart, positions, sigterm,
         price_band, loopback_only, fills, limits]
