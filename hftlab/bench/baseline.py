"""The bare baseline: small Python processes that do what hftlab does, minus hftlab.

``hftlab bench`` compares every figure with one of these, measured in the same run, because
a number alone says little about IPC in Python. Each *role* is its own process, started as

    python -m hftlab.bench.baseline ROLE [options]      (ROLE --help lists its options)

prints one JSON line when it is ready (and some print one more when done), does its one
job and exits by itself. The bench starts and reads them through
`hftlab.bench.bare.Role` (and never imports this module: it runs as ``__main__``).

The latency path, four processes in a row, like gateway -> orderbook -> strategy -> order
manager with no trading logic:

- ``source``: a TCP server; after SIGUSR1 it sends, at the gateway's random intervals,
  one timestamped line ``seq,ts_ns`` per record;
- ``relay``: reads them and writes each into its record of a shared-memory segment under
  a seqlock, exactly as the book writes (`hftlab.book`): the version word goes odd, the
  data is copied in, the version goes even, each version store one aligned 8-byte store;
  after each chunk it rings the sleeping poller if its "sleepers" word says one sleeps,
  as the orderbook does (`hftlab.book.doorbell`);
- ``poller``: looks at the records the way the strategy looks at the book (a ``select()``
  with the poll interval as timeout, or with ``--doorbell`` asleep on the book's doorbell
  until the relay rings, as the strategy sleeps; then a snapshot taken as the book takes
  one) and sends one line per new record over TCP, all the lines of one look in one
  write, as the strategy sends the orders of one look;
- ``sink``: stamps each line with its arrival time and writes them all to a CSV.

The throughput baselines are one process each:

- ``reader``: receives a gateway's price stream and only splits it into lines, the
  ceiling any reader of that stream can reach (the JSON's ``stream_ceiling_ticks_per_s``);
- ``fair_reader``: the same stream, doing per tick the work the orderbook must do, bare:
  split, convert the four fields, one seqlocked write (``fair_baseline_throughput_ticks_per_s``).
"""

from __future__ import annotations

import argparse
import json
import random
import selectors
import signal
import socket
import struct
import sys
import time
from multiprocessing.shared_memory import SharedMemory

from hftlab import book, net

__all__ = ["ROLES", "HEAD", "RECORD", "WAKE_TIMEOUT", "parser", "main", "source", "relay", "poller", "sink",
           "reader",
           "fair_reader"]

# The relay's segment: one 8-byte "done" word, one 8-byte "sleepers" word (the doorbell's,
# as in the book's header), then n records of
# [version u64][seq i64][ts_ns i64][written_ns i64], every field 8-byte aligned so that
# each store and load of a version is one machine instruction (see hftlab.book).
HEAD = 16
_SLEEPERS = 1  # index of the sleepers word
WAKE_TIMEOUT = 0.25  # the poller's longest sleep on the doorbell, as the strategy's
_DATA = struct.Struct("<qqq")  # seq, ts_ns, written_ns
RECORD = 8 + _DATA.size


def say(**facts) -> None:
    """Tell the bench something: one JSON line on stdout."""
    print(json.dumps(facts), flush=True)


# -- the roles ---------------------------------------------------------------------------

def source(args) -> None:
    """Send n timestamped lines every interval over TCP, for duration, after SIGUSR1."""
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
    srv = socket.create_server(("127.0.0.1", 0))
    say(port=srv.getsockname()[1])
    conn, _ = srv.accept()
    net.no_delay(conn)
    signal.sigwait([signal.SIGUSR1])
    seq, n, interval = 0, args.n, args.interval
    # Sleep the way the gateway's asyncio loop sleeps: in select(), whose epoll timeout
    # is rounded up to whole milliseconds on Linux (time.sleep would be finer).
    # And at the same random intervals (see hftlab.gateway: a periodic feed phase-locks
    # with a periodic poller).
    timer, rng = selectors.DefaultSelector(), random.Random(args.seed)
    next_at = time.monotonic()
    end = next_at + args.duration
    while next_at < end:
        delay = next_at - time.monotonic()
        if delay > 0:
            timer.select(delay)
        ts = time.time_ns()
        conn.sendall(b"".join(b"%d,%d\n" % (seq + j, ts) for j in range(1, n + 1)))
        seq += n
        next_at = max(next_at + rng.expovariate(1.0 / interval), time.monotonic())  # skip, not burst
    conn.close()


def relay(args) -> None:
    """Read lines from the source; write each into its shared-memory record under a seqlock."""
    n = args.n
    shm, u64, vword, data = _create_records(args.shm, n, RECORD)
    bell_sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    bell_sender.setblocking(False)
    try:
        sock = net.dial("127.0.0.1", args.port)
        sock.settimeout(None)
        say(shm=args.shm)
        versions = [0] * n
        tail = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            lines = (tail + chunk).split(b"\n")
            tail = lines.pop()
            for line in lines:
                seq, ts = line.split(b",")
                seq = int(seq)
                i = seq % n
                packed = _DATA.pack(seq, int(ts), time.time_ns())
                v = versions[i] + 1
                u64[vword[i]] = v          # odd: write in progress
                data[i][:] = packed
                u64[vword[i]] = v + 1      # even: done
                versions[i] = v + 1
            if u64[_SLEEPERS]:             # as SharedPriceBook.ring: once per chunk
                u64[_SLEEPERS] = 0
                book.ring_bells(args.shm, bell_sender)
        u64[0] = 1  # done: the poller stops
        book.ring_bells(args.shm, bell_sender)
    finally:
        bell_sender.close()
        _remove(shm, u64, *data)


def poller(args) -> None:
    """Poll the records as the strategy polls the book; send every new one on over TCP."""
    n = args.n
    shm, u64, version_words, block = _attach_records(args.shm, n)
    versions, start, end = version_words.tolist, HEAD, HEAD + n * RECORD
    sock, sel, bell = _poller_wakers(args)
    last, looked = [0] * n, None  # the seq last sent of each record; the versions at the last look
    try:
        say(polling=args.poll_interval, doorbell=bool(args.doorbell))
        while not u64[0]:
            if bell is None:
                sel.select(args.poll_interval)  # the sink never writes: a timed wait, as in the strategy
            else:
                # As the strategy: arm, look again, and sleep only if nothing changed.
                u64[_SLEEPERS] = 1
                if versions() == looked:
                    sel.select(WAKE_TIMEOUT)
                    bell.drain()
            # A snapshot as the book takes one: versions, copy, versions again; retried
            # until no record was being written and none changed in between.
            while True:
                before = versions()
                raw = bytes(shm.buf[start:end])
                if versions() == before and not any(v & 1 for v in before):
                    break
            looked = before
            seen = time.time_ns()
            values = block.unpack(raw)
            orders = []
            for i in range(n):
                seq, ts, written = values[3 * i:3 * i + 3]
                if seq != last[i]:
                    # Record i holds the seqs i, i + n, i + 2n...: the ones skipped were conflated.
                    missed = (seq - last[i]) // n - 1 if last[i] else 0
                    orders.append(b"%d,%d,%d,%d,%d\n" % (seq, ts, written, seen, missed))
                    last[i] = seq
            if orders:  # one write per look, as the strategy sends a look's orders
                sock.sendall(b"".join(orders))
    finally:
        _close_poller(sock, bell, shm, version_words, u64)


def _attach_records(name: str, n: int) -> tuple:
    """The poller's view of the relay's segment: (the segment, its words as u64, the n
    version words, the struct that unpacks a copy of the n records' data)."""
    shm = book.open_untracked(name)
    u64 = shm.buf.cast("Q")
    version_words = u64[HEAD // 8:(HEAD + n * RECORD) // 8:RECORD // 8]
    return shm, u64, version_words, struct.Struct("<" + "8xqqq" * n)


def _poller_wakers(args) -> tuple:
    """Dial the sink; a selector on that socket and, with --doorbell, on the segment's
    doorbell. (socket, selector, doorbell or None)."""
    sock = net.dial("127.0.0.1", args.port)
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)
    bell = book.Doorbell(args.shm) if args.doorbell else None
    if bell is not None:
        sel.register(bell, selectors.EVENT_READ)
    return sock, sel, bell


def _close_poller(sock, bell, shm, *views) -> None:
    """The poller's last act: hang up, close the doorbell, let go of the segment (the relay
    removes it)."""
    sock.close()
    if bell is not None:
        bell.close()
    for view in views:
        view.release()
    shm.close()


def sink(args) -> None:
    """Receive the poller's lines, stamp each with the time it arrived, write a CSV at EOF."""
    srv = socket.create_server(("127.0.0.1", 0))
    say(port=srv.getsockname()[1])
    conn, _ = srv.accept()
    net.no_delay(conn)
    rows, tail = [], b""
    while True:
        chunk = conn.recv(65536)
        now = time.time_ns()
        if not chunk:
            break
        lines = (tail + chunk).split(b"\n")
        tail = lines.pop()
        rows += [b"%s,%d" % (line, now) for line in lines]
    with open(args.out, "wb") as f:
        f.write(b"seq,ts_ns,written_ns,seen_ns,missed,recv_ns\n" + b"\n".join(rows) + b"\n")


def _subscribe(port: int):
    """Dial the gateway's price feed and read up to its HELLO line (counted as line 1):
    once this says so, the gateway has this reader among its subscribers."""
    sock = net.dial("127.0.0.1", port)
    sock.settimeout(None)
    say(connected=True)
    data = b""
    while b"\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise SystemExit("the gateway closed the price feed before its HELLO")
        data += chunk
    say(subscribed=True)  # the gateway sends HELLO as it adds a subscriber to its feed
    return sock, data


def reader(args) -> None:
    """Receive a gateway's price stream and only split it into lines; report when n arrived.

    The stream's ceiling: what any reader of it could reach doing nothing with the ticks."""
    sock, tail = _subscribe(args.port)
    count = 0
    while True:
        lines = tail.split(b"\n")
        tail = lines.pop()
        count += len(lines)
        if count >= args.n:
            break
        chunk = sock.recv(65536)
        if not chunk:
            break                           # the runner sees fewer lines than n
        tail += chunk
    say(lines=count, end_ns=time.time_ns())
    sock.close()


_TICK = struct.Struct("<dqqq")  # price, seq, ts_ns, written_ns: the book record's fields


def fair_reader(args) -> None:
    """Receive a gateway's price stream and do the book's work per tick, bare: split the
    line, convert its four fields, one seqlocked write into that symbol's record (the
    book's way, `hftlab.book`); report when n lines arrived. The fair throughput baseline."""
    shm, u64, vword, data = _create_records(args.shm, 64, 8 + _TICK.size)
    versions, index = [0] * 64, {}
    try:
        sock, tail = _subscribe(args.port)
        count = 0
        while True:
            lines = tail.split(b"\n")
            tail = lines.pop()
            count += len(lines)
            for line in lines:
                if line[:6] != b"PRICE,":
                    continue                # the HELLO
                _, seq, ts, symbol, price = line.split(b",")
                i = index.get(symbol)
                if i is None:
                    i = index[symbol] = len(index) % 64
                packed = _TICK.pack(float(price), int(seq), int(ts), time.time_ns())
                # The relay's seqlocked write, inlined as there: a call per tick would be
                # measured as part of the baseline.
                v = versions[i] + 1
                u64[vword[i]] = v           # odd: write in progress
                data[i][:] = packed
                u64[vword[i]] = v + 1       # even: done
                versions[i] = v + 1
            if count >= args.n:
                break
            chunk = sock.recv(65536)
            if not chunk:
                break
            tail += chunk
        say(lines=count, end_ns=time.time_ns())
        sock.close()
    finally:
        _remove(shm, u64, *data)


def _create_records(name: str, n: int, size: int) -> tuple:
    """Create a segment of HEAD bytes then n records of `size` bytes, each a version word
    and its data: (the segment, its words as u64, each record's version word index, each
    record's data view). As in the book: versions through a view cast to "Q" (one 8-byte
    store each; never struct.pack_into, which zero-fills its target first), the data
    copied in whole."""
    shm = SharedMemory(name, create=True, size=HEAD + n * size)
    u64 = shm.buf.cast("Q")
    vword = [(HEAD + i * size) // 8 for i in range(n)]
    data = [shm.buf[HEAD + i * size + 8:HEAD + (i + 1) * size] for i in range(n)]
    return shm, u64, vword, data


def _remove(shm, *views) -> None:
    """Release the views of our own segment, close it and remove it (a role's last act)."""
    for view in views:
        view.release()
    shm.close()
    try:
        shm.unlink()
    except FileNotFoundError:
        pass


ROLES = {"source": source, "relay": relay, "poller": poller, "sink": sink, "reader": reader,
         "fair_reader": fair_reader}


# -- the command line --------------------------------------------------------------------

def _positive(kind, zero_ok=False):
    def check(text):
        value = kind(text)
        if value < 0 or (value == 0 and not zero_ok):
            raise argparse.ArgumentTypeError(f"must be {'0 or more' if zero_ok else 'positive'}; got {text}")
        return value
    return check


def parser() -> argparse.ArgumentParser:
    """One sub-command per role, each with the options it reads."""
    p = argparse.ArgumentParser(prog="python -m hftlab.bench.baseline", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="role", metavar="ROLE", required=True)
    port = dict(type=int, required=True, help="the TCP port on 127.0.0.1 to connect to")
    records = dict(type=_positive(int), required=True, help="number of records (one per symbol)")
    shm = dict(required=True, help="name of the relay's shared-memory segment")

    r = sub.add_parser("source", help=source.__doc__)
    r.add_argument("--n", **records)
    r.add_argument("--interval", type=_positive(float), required=True,
                   help="mean seconds between two sends of n lines (random intervals, as the gateway's)")
    r.add_argument("--duration", type=_positive(float), required=True, help="seconds to send for")
    r.add_argument("--seed", type=int, default=0, help="seed of the random intervals")
    r = sub.add_parser("relay", help=relay.__doc__)
    r.add_argument("--port", **port)
    r.add_argument("--n", **records)
    r.add_argument("--shm", **shm)
    r = sub.add_parser("poller", help=poller.__doc__)
    r.add_argument("--port", **port)
    r.add_argument("--n", **records)
    r.add_argument("--shm", **shm)
    r.add_argument("--poll-interval", type=_positive(float, zero_ok=True), required=True,
                   help="seconds of each select() between looks at the records (0: never sleep, spin)")
    r.add_argument("--doorbell", action="store_true",
                   help="sleep until the relay rings instead (at most %g s), as the strategy does" % WAKE_TIMEOUT)
    r = sub.add_parser("sink", help=sink.__doc__)
    r.add_argument("--out", required=True, help="the CSV file to write at the end")
    r = sub.add_parser("reader", help=reader.__doc__)
    r.add_argument("--port", **port)
    r.add_argument("--n", type=_positive(int), required=True, help="lines to receive before reporting")
    r = sub.add_parser("fair_reader", help=fair_reader.__doc__)
    r.add_argument("--port", **port)
    r.add_argument("--n", type=_positive(int), required=True, help="lines to receive before reporting")
    r.add_argument("--shm", **shm)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    # SIGTERM (the bench stopping a role early) takes the same clean path as Ctrl-C.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        ROLES[args.role](args)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
