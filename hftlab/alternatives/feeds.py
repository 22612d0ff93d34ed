"""The feed, three ways: TCP lines, ZeroMQ PUB/SUB, a multiprocessing.Queue.

The lab sends prices as text lines over TCP. A learner would reach for ZeroMQ (a
messaging library: no framing to write, fan-out built in) or for
``multiprocessing.Queue`` (send Python objects, no protocol at all). Here a sender
process sends the same ticks over each, a receiver (the calling process) takes them,
and two things are measured:

- **Throughput, and what arrived.** The sender sends `n` ticks as fast as it can; the
  receiver counts the ticks it got and the sequence numbers missing among them. A
  transport that drops instead of slowing the sender down (ZeroMQ PUB/SUB past its
  high-water mark) says so only in these counts: neither side gets an error.
- **One-way latency** of paced ticks (one every `interval` seconds): ``time.time_ns()``
  when the sender sends, and when the receiver has the decoded tick. One clock on one
  machine, as in lesson 08.

The transports (`TRANSPORTS`):

=================  ===============================================================
``tcp``            PRICE lines, large writes (1024 lines each), `protocol.Decoder`
``zmq``            ZeroMQ PUB/SUB, one message per tick, default high-water mark (1000)
``zmq_unlimited``  the same with the high-water mark off (0 = no limit) on both sides
``zmq_batched``    one ZeroMQ message per 1024 lines, default high-water mark
``queue``          ``multiprocessing.Queue``, one pickled tuple per tick
``queue_batched``  the same, one pickled list of 1024 tuples per put
=================  ===============================================================

Pickle is fine for the Queue: it links two of our own processes and never crosses the
lab's network protocol, where it would let a peer run code in ours.
"""

from __future__ import annotations

import contextlib
import socket
import time
from dataclasses import dataclass

from hftlab import net, protocol
from hftlab.alternatives._child import AlternativesError, Child, _CTX, percentiles_us

__all__ = ["TRANSPORTS", "BATCH", "FeedResult", "LatencyResult", "make_ticks",
           "measure_feed", "measure_latency", "feed_table", "latency_table"]

TRANSPORTS = ("tcp", "zmq", "zmq_unlimited", "zmq_batched", "queue", "queue_batched")
BATCH = 1024                 # lines (or tuples) per write, message or put when batching
SYMBOLS = ("AAPL", "MSFT", "GOOGL", "AMZN")
HOST = "127.0.0.1"
START_S = 30.0               # the longest a sender may take to start and connect
QUIET_S = 0.5                # after the sender is done, this long without a tick ends a run
PING = b"PING"               # ZeroMQ warm-up message, not a tick (see _zmq_handshake)

DESCRIPTIONS = {
    "tcp": "TCP lines, large writes",
    "zmq": "ZeroMQ PUB/SUB, 1 msg/tick, default HWM",
    "zmq_unlimited": "ZeroMQ PUB/SUB, 1 msg/tick, no HWM",
    "zmq_batched": f"ZeroMQ PUB/SUB, {BATCH} lines/msg",
    "queue": "multiprocessing.Queue, 1 tuple/tick",
    "queue_batched": f"multiprocessing.Queue, {BATCH} tuples/put",
}

LATENCY_DESCRIPTIONS = {
    "tcp": "TCP, one line per write (TCP_NODELAY)",
    "zmq": "ZeroMQ PUB/SUB, one message per tick",
    "zmq_unlimited": "ZeroMQ PUB/SUB, no HWM, one message",
    "queue": "multiprocessing.Queue, one tuple per put",
}


@dataclass
class FeedResult:
    """What one throughput run delivered, and how fast."""

    transport: str
    sent: int
    delivered: int
    missing: int       # sequence numbers the receiver never saw (counted from the seqs)
    errors: int        # lines the decoder rejected
    seconds: float     # the sender's first send to the receiver's last tick

    @property
    def lost(self) -> int:
        """Ticks sent and never delivered."""
        return self.sent - self.delivered

    @property
    def ticks_per_s(self) -> float:
        """Ticks DELIVERED per second: a dropped tick was not carried."""
        return self.delivered / self.seconds if self.seconds > 0 else 0.0


@dataclass
class LatencyResult:
    """One-way latency of paced ticks, sender's send to receiver's decoded tick."""

    transport: str
    sent: int
    received: int
    p50_us: float | None
    p99_us: float | None


def make_ticks(n: int, ts_ns: int = 0) -> list:
    """n PRICE ticks, seq 1..n, the lab's four symbols in turn, prices with two decimals."""
    return [protocol.Price(seq, ts_ns, SYMBOLS[seq % 4], 100 + seq % 1000 / 100)
            for seq in range(1, n + 1)]


def _check(transport, n, batch=BATCH):
    if transport not in TRANSPORTS:
        raise ValueError(f"unknown transport {transport!r}: choose one of {', '.join(TRANSPORTS)}")
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"the number of ticks must be a positive integer, not {n!r}")
    if not (isinstance(batch, int) and 1 <= batch <= 100_000):
        raise ValueError(f"batch must be an integer from 1 to 100,000, not {batch!r}")


# -- the sender (a child process) --------------------------------------------------------

def _payloads(transport, n, batch):
    """What the sender sends, built before the clock starts: bytes, or tuples."""
    ticks = make_ticks(n, time.time_ns())
    if transport.startswith("queue"):
        items = [tuple(t) for t in ticks]
        if transport == "queue":
            return items
        return [items[i:i + batch] for i in range(0, n, batch)]
    lines = [protocol.encode(t) for t in ticks]
    if transport in ("zmq", "zmq_unlimited"):
        return lines
    return [b"".join(lines[i:i + batch]) for i in range(0, n, batch)]


def _zmq_pub(ctx, address, unlimited):
    import zmq
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    if unlimited:
        pub.setsockopt(zmq.SNDHWM, 0)
    pub.connect(address)
    return pub


def _sender(conn, transport, address, n, batch, interval, queue):
    """Connect, say ready, wait for go, send everything, report, wait to be released."""
    import zmq
    payloads = None if interval is not None else _payloads(transport, n, batch)
    ctx = zmq.Context() if transport.startswith("zmq") else None
    sock = pub = None
    try:
        if transport == "tcp":
            sock = net.dial(*address, timeout=START_S)
            sock.settimeout(None)
            send = sock.sendall
        elif ctx is not None:
            pub = _zmq_pub(ctx, address, transport == "zmq_unlimited")
            send = pub.send
        else:
            send = queue.put
        conn.send(("ready",))
        if not _wait_for_go(conn, pub):
            return
        start_ns, end_ns = _send_ticks(send, n, payloads, interval, queue)
        if sock is not None:
            sock.shutdown(socket.SHUT_WR)     # the receiver reads to EOF
        if queue is not None:
            queue.put(None)                   # a Queue loses nothing: an end marker is safe
        conn.send(("done", n, start_ns, end_ns))
        conn.poll(120.0)                      # until the receiver has finished reading
    finally:
        _close_sender(sock, pub, ctx, queue)


def _wait_for_go(conn, pub) -> bool:
    """Wait for the receiver's go (False: told anything else)."""
    if pub is not None:
        # Slow joiner: a subscription reaches the publisher some time after the
        # connection, and messages published before that are dropped. Publish PINGs
        # until the receiver has seen one (it then says go); only then do ticks start.
        while not conn.poll(0.01):
            pub.send(PING)
    return conn.recv() == ("go",)


def _send_ticks(send, n, payloads, interval, queue) -> tuple:
    """The timed phase: every payload as fast as possible, or (with an `interval`) n ticks
    one at a time, each stamped as it is sent. (start_ns, end_ns)."""
    start_ns = time.time_ns()
    if interval is not None:
        encode = protocol.encode
        for t in make_ticks(n):
            time.sleep(interval)
            tick = t._replace(ts_ns=time.time_ns())
            send(tuple(tick) if queue is not None else encode(tick))
    else:
        for payload in payloads:
            send(payload)
    return start_ns, time.time_ns()


def _close_sender(sock, pub, ctx, queue) -> None:
    """Close what the sender opened (whichever of them it did)."""
    if sock is not None:
        sock.close()
    if pub is not None:
        pub.close(linger=0)
    if ctx is not None:
        ctx.term()
    if queue is not None:
        queue.cancel_join_thread()        # never block exit on a queue nobody reads


# -- the receiver (the calling process) --------------------------------------------------

class _Tally:
    """Counts the ticks a receiver gets and the sequence numbers missing among them."""

    def __init__(self, latency):
        self.delivered = self.missing = self.errors = 0
        self.last_seq = 0
        self.last_ns = 0
        self.latencies = [] if latency else None

    def add(self, ticks):
        now = time.time_ns()
        good = [t for t in ticks if not isinstance(t, protocol.ProtocolError)]
        self.errors += len(ticks) - len(good)
        if not good:
            return
        # The transports keep order: seqs only grow, so a jump is that many lost.
        self.missing += good[-1][0] - self.last_seq - len(good)
        self.last_seq = good[-1][0]
        self.delivered += len(good)
        self.last_ns = now
        if self.latencies is not None:
            self.latencies.extend(now - t[1] for t in good)


def _receive_tcp(listener, child, n, tally, deadline):
    listener.settimeout(0.1)
    start = time.monotonic()
    while True:
        try:
            conn, _ = listener.accept()
            break
        except socket.timeout:
            child.check_alive("connect")
            if time.monotonic() - start > START_S:
                raise AlternativesError(f"the TCP sender did not connect within {START_S:g} s; "
                                        "is the machine overloaded?") from None
    with conn:
        net.no_delay(conn)
        child.recv(START_S, "get ready")
        child.send("go")
        decoder = protocol.Decoder()
        conn.settimeout(max(0.1, deadline - time.monotonic()))
        while True:
            try:
                data = conn.recv(1 << 16)
            except TimeoutError:
                raise AlternativesError("the TCP stream did not end before the run's timeout; "
                                        "is the machine overloaded?") from None
            if not data:
                return
            tally.add(decoder.feed(data))


def _receive_zmq(sub, child, n, tally, deadline):
    import zmq
    while True:                       # the handshake: one PING seen means subscribed
        if time.monotonic() > deadline:
            raise AlternativesError("no ZeroMQ PING reached the subscriber in time")
        child.check_alive("publish")
        if sub.poll(100) and sub.recv() == PING:
            break
    child.recv(START_S, "get ready")
    child.send("go")
    decoder = protocol.Decoder()
    recv, done = sub.recv, None
    while tally.delivered < n:
        try:
            msg = recv(zmq.NOBLOCK)
        except zmq.Again:
            # Nothing waiting. Once the sender is done, a quiet spell means the rest
            # was dropped on the way: nobody will ever say so otherwise.
            if done is None and child.poll():
                done = child.recv(1.0, "report")
            elif done is None:
                child.check_alive("send every tick")
            if done is not None and not sub.poll(int(QUIET_S * 1000)):
                return done
            if time.monotonic() > deadline:
                return done
            sub.poll(10)
            continue
        if msg != PING:
            tally.add(decoder.feed(msg))
    return done


def _receive_queue(queue, child, n, tally, deadline):
    import queue as queue_module
    child.recv(START_S, "get ready")
    child.send("go")
    get, price = queue.get, protocol.Price
    while time.monotonic() < deadline:
        try:
            item = get(timeout=1.0)
        except queue_module.Empty:
            child.check_alive("send every tick")
            continue
        if item is None:
            return
        # Rebuilt as Price tuples so that every receiver hands on the same objects.
        tally.add([price(*t) for t in item] if isinstance(item, list) else [price(*item)])


def _run(transport, n, batch, interval, timeout):
    """One sender process, one receiver here; returns (tally, sender's done message)."""
    deadline = time.monotonic() + timeout
    tally = _Tally(latency=interval is not None)
    with _receiving_end(transport) as (address, listener, sub, queue), \
            Child(f"{transport} sender", _sender, transport, address, n, batch, interval, queue) as child:
        done = None
        if listener is not None:
            _receive_tcp(listener, child, n, tally, deadline)
        elif sub is not None:
            done = _receive_zmq(sub, child, n, tally, deadline)
        else:
            _receive_queue(queue, child, n, tally, deadline)
        if done is None:
            done = child.recv(max(1.0, deadline - time.monotonic()), "finish sending")
        child.send("bye")
    tally.missing += n - tally.last_seq          # the tail nobody received
    return tally, done


@contextlib.contextmanager
def _receiving_end(transport):
    """Open what the sender sends to: a TCP listener, a ZeroMQ SUB socket or a Queue.
    Yields (the address the sender reaches it at, listener, sub, queue: the one opened,
    the others None); closes them at the end."""
    listener = sub = ctx = queue = None
    try:
        if transport == "tcp":
            listener = socket.create_server((HOST, 0))
            address = (HOST, listener.getsockname()[1])
        elif transport.startswith("zmq"):
            import zmq
            ctx = zmq.Context()
            sub = ctx.socket(zmq.SUB)
            sub.setsockopt(zmq.LINGER, 0)
            if transport == "zmq_unlimited":
                sub.setsockopt(zmq.RCVHWM, 0)
            sub.setsockopt(zmq.SUBSCRIBE, b"")
            port = sub.bind_to_random_port(f"tcp://{HOST}")
            address = f"tcp://{HOST}:{port}"
        else:
            queue = _CTX.Queue()
            address = None
        yield address, listener, sub, queue
    finally:
        if listener is not None:
            listener.close()
        if sub is not None:
            sub.close(linger=0)
        if ctx is not None:
            ctx.term()
        if queue is not None:
            queue.close()
            queue.join_thread()


def measure_feed(transport: str, n: int = 200_000, batch: int = BATCH,
                 timeout: float = 60.0) -> FeedResult:
    """Send n ticks as fast as possible over `transport`; count what arrived, and how fast.

    The clock runs from the sender's first send to the receiver's last tick. The run
    ends when every tick has arrived, when the sender is done and no tick came for
    QUIET_S seconds (the rest was dropped), or after `timeout` seconds.
    """
    _check(transport, n, batch)
    tally, (_, sent, start_ns, _) = _run(transport, n, batch, None, timeout)
    return FeedResult(transport, sent, tally.delivered, tally.missing, tally.errors,
                      max(tally.last_ns - start_ns, 1) / 1e9)


def measure_latency(transport: str, n: int = 1000, interval: float = 0.0005,
                    timeout: float = 60.0) -> LatencyResult:
    """One-way latency of n ticks sent one at a time, one every `interval` seconds."""
    _check(transport, n)
    if not 0 < interval <= 1:
        raise ValueError(f"interval must be between 0 and 1 s, not {interval!r}")
    # Batching means nothing for single paced ticks: the batched variants are the plain ones.
    tally, _ = _run(transport.replace("_batched", ""), n, 1, interval, timeout)
    p = percentiles_us(tally.latencies)
    return LatencyResult(transport.replace("_batched", ""), n, tally.delivered, p["p50"], p["p99"])


# -- reports -------------------------------------------------------------------------------

def feed_table(results) -> str:
    """A plain-text table of FeedResults, each rate also as a ratio to the first row's."""
    base = results[0].ticks_per_s if results else 0
    rows = [f"{'transport':<44}{'sent':>10}{'delivered':>11}{'lost':>9}{'ticks/s':>12}{'x first':>9}"]
    for r in results:
        ratio = r.ticks_per_s / base if base else 0.0
        rows.append(f"{DESCRIPTIONS[r.transport]:<44}{r.sent:>10,}{r.delivered:>11,}{r.lost:>9,}"
                    f"{r.ticks_per_s:>12,.0f}{ratio:>9.2f}")
    return "\n".join(rows)


def latency_table(results) -> str:
    """A plain-text table of LatencyResults."""
    rows = [f"{'transport':<44}{'received':>14}{'p50 us':>9}{'p99 us':>9}"]
    for r in results:
        p50 = "-" if r.p50_us is None else f"{r.p50_us:,.0f}"
        p99 = "-" if r.p99_us is None else f"{r.p99_us:,.0f}"
        rows.append(f"{LATENCY_DESCRIPTIONS[r.transport]:<44}{f'{r.received:,}/{r.sent:,}':>14}"
                    f"{p50:>9}{p99:>9}")
    return "\n".join(rows)
