"""The order manager's cases: the harness is its strategies (clients on the order port)
and reads its journal (--journal). No book exists under --shm-name, so no price band applies."""

from __future__ import annotations

import threading
import time

from hftlab import protocol
from hftlab.conform.harness import CaseFailed, LineClient, case


def order(order_id, side="BUY", qty=10, symbol="AAPL", price=172.53) -> bytes:
    return protocol.encode(protocol.Order(order_id, time.time_ns(), side, qty, symbol, price))


def client(ctx) -> LineClient:
    c = LineClient(ctx.config.host, ctx.config.order_port)
    ctx.on_cleanup(c.close)
    return c


def ask(c, sent: bytes, kind):
    """Send one line and read its answer, which must be a `kind`."""
    c.send(sent)
    msg = c.next(3.0)
    if not isinstance(msg, kind):
        raise CaseFailed(f"{sent.strip()!r} was answered with {msg!r}, expected {kind.__name__}")
    return msg


@case(1, "a valid ORDER gets ACK,<order_id>,<order_no>",
      "decode the line, book it, answer encode(Ack(order_id, order_no)), numbers from 1")
def ack(ctx):
    ctx.start()
    c = client(ctx)
    line = order("c1")
    a = ask(c, line, protocol.Ack)
    if a.order_id != "c1" or a.order_no < 1:
        raise CaseFailed(f"got {a}")


@case(2, "a well-formed order that breaks a rule gets REJECT,<order_id>,<reason>",
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


@case(3, "a line that is not a valid message gets ERROR,<reason>, and the connection goes on",
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


@case(4, "the journal has the order before the ACK is sent",
      "append the row to --journal (HFTLAB_JOURNAL) with one os.write, then send the ACK")
def journal_first(ctx):
    ctx.start()
    c = client(ctx)
    for i in range(20):
        line = order(f"j{i}")
        ask(c, line, protocol.Ack)
        try:
            with open(ctx.config.journal) as f:
                text = f.read()
        except OSError as exc:
            raise CaseFailed(f"after the ACK the journal {ctx.config.journal} cannot be read: {exc.strerror}")
        if f",j{i}," not in text:
            raise CaseFailed(f"order j{i} was ACKed but is not in the journal yet")


@case(5, "a duplicate order_id is idempotent: the same order gets the same ACK; another is REJECTed",
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
    with open(ctx.config.journal) as f:
        rows = [r for r in f if ",d1," in r]
    if len(rows) != 1:
        raise CaseFailed(f"the journal has {len(rows)} rows for d1")


@case(6, "many clients at once: every order ACKed, each with its own number",
      "serve each connection on its own (asyncio, threads or select); one counter for all")
def many_clients(ctx):
    ctx.start()
    clients = [client(ctx) for _ in range(20)]
    acks, problems = [], []

    def one(k, c):
        c.send(b"".join(order(f"m{k}-{i}") for i in range(5)))
        for _ in range(5):
            msg = c.next(5.0)
            (acks if isinstance(msg, protocol.Ack) else problems).append(msg)

    threads = [threading.Thread(target=one, args=(k, c), daemon=True) for k, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10.0)
    if problems or len(acks) != 100:
        raise CaseFailed(f"{len(acks)} ACKs of 100 orders from 20 clients; also got {problems[:3]}")
    numbers = [a.order_no for a in acks]
    if len(set(numbers)) != 100:
        raise CaseFailed(f"order numbers repeat: {len(set(numbers))} distinct of 100")


@case(7, "order numbers continue after a restart, and a re-sent id gets its old number",
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


@case(8, "POSQUERY,<strategy>,<symbol> gets POSITION with the net quantity booked for it",
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


@case(9, "SIGTERM: a clean exit (status 0) within 5 s, with a client connected",
      "handle SIGTERM like Ctrl-C: close the clients, exit 0")
def sigterm(ctx):
    ctx.start()
    client(ctx)
    ctx.sigterm()


CASES = [ack, reject, garbage, journal_first, duplicate, many_clients, restart, positions, sigterm]
