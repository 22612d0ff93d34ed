"""What a server's loop costs a message: one TCP hop into a sleeping process, four ways.

The order hop (strategy -> order manager) and the feed hop (gateway -> orderbook) cost
more in hftlab than in the bare baseline, whose processes do nothing else. Part of it is
the loop that waits: our gateway and order manager run asyncio, the bare roles a blocking
``recv``. This measures exactly that, with nothing else in the way: a client sends one
short line every `gap` seconds (so the server is asleep when it comes, as the order
manager is between orders) to a server process that stamps ``time.time_ns()`` as soon as
its loop hands it the bytes. The same client, the same machine, one run:

- ``blocking``: the main thread asleep in ``recv`` (the bare baseline's sink);
- ``thread``: a connection's own thread asleep in ``recv`` while the main thread waits in
  ``accept`` (our order manager);
- ``timeout``: ``recv`` on a socket with a timeout, which waits in C's ``poll`` (our
  orderbook's feed);
- ``selectors``: ``selectors.DefaultSelector`` (epoll on Linux), then ``recv`` (our
  strategy, which also waits on the book's doorbell);
- ``asyncio-protocol``: an ``asyncio.Protocol``, stamped in ``data_received``;
- ``asyncio-streams``: ``asyncio.start_server`` and ``await reader.read()`` (our order
  manager's loop until it moved to threads).

How long the server has slept matters as much as how it sleeps: an idle CPU (or a
virtual one the host has parked) takes longer to wake. ``--gap`` sets the pause between
messages (10 ms by default, about an order manager's pace); try 0.001 and 0.02.

    hftlab bench --wakeups            # or: python -m hftlab.bench.wakeups

Figures are printed, never asserted: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import selectors
import socket
import subprocess
import sys
import threading
import time

from hftlab import children, net
from hftlab.bench.measure import percentiles

__all__ = ["KINDS", "measure_wakeups", "report_wakeups", "serve", "main"]

KINDS = ("blocking", "thread", "timeout", "selectors", "asyncio-protocol", "asyncio-streams")


def _say_stamps(stamps) -> None:
    print(" ".join(map(str, stamps)), flush=True)


def _accept():
    srv = socket.create_server(("127.0.0.1", 0))
    print(srv.getsockname()[1], flush=True)
    conn, _ = srv.accept()
    srv.close()
    net.no_delay(conn)
    return conn


def _blocking() -> None:
    _serve_blocking(_accept())


def _in_a_thread() -> None:
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    print(port, flush=True)
    conn, _ = srv.accept()
    net.no_delay(conn)

    def serve_then_wake_main():
        _serve_blocking(conn)
        socket.create_connection(("127.0.0.1", port)).close()  # ends the main thread's accept

    served = threading.Thread(target=serve_then_wake_main)
    served.start()
    srv.accept()[0].close()  # the main thread waits here, as the order manager's does
    served.join()
    srv.close()


def _serve_blocking(conn) -> None:
    stamps = []
    while conn.recv(65536):
        stamps.append(time.time_ns())
        conn.sendall(b"ok\n")
    _say_stamps(stamps)


def _timeout() -> None:
    conn, stamps = _accept(), []
    conn.settimeout(30.0)
    while conn.recv(65536):
        stamps.append(time.time_ns())
        conn.sendall(b"ok\n")
    _say_stamps(stamps)


def _selectors() -> None:
    conn, stamps = _accept(), []
    conn.setblocking(False)
    with selectors.DefaultSelector() as sel:
        sel.register(conn, selectors.EVENT_READ)
        while True:
            sel.select()
            data = conn.recv(65536)
            if not data:
                break
            stamps.append(time.time_ns())
            conn.sendall(b"ok\n")
    _say_stamps(stamps)


def _asyncio(streams: bool) -> None:
    stamps = []

    class Stamp(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport
            net.no_delay(transport.get_extra_info("socket"))

        def data_received(self, data):
            stamps.append(time.time_ns())
            self.transport.write(b"ok\n")

        def connection_lost(self, exc):
            done.set()

    async def on_connect(reader, writer):
        net.no_delay(writer.get_extra_info("socket"))
        while await reader.read(65536):
            stamps.append(time.time_ns())
            writer.write(b"ok\n")
            await writer.drain()
        writer.close()
        done.set()

    async def main():
        nonlocal done
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        if streams:
            server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        else:
            server = await loop.create_server(Stamp, "127.0.0.1", 0)
        print(server.sockets[0].getsockname()[1], flush=True)
        await done.wait()
        server.close()

    done = None
    asyncio.run(main())
    _say_stamps(stamps)


def serve(kind: str) -> None:
    """Be the server of `kind`: print the port, stamp each arrival, print the stamps at EOF."""
    if kind == "blocking":
        _blocking()
    elif kind == "thread":
        _in_a_thread()
    elif kind == "timeout":
        _timeout()
    elif kind == "selectors":
        _selectors()
    else:
        _asyncio(streams=kind == "asyncio-streams")


def _one(kind: str, messages: int, gap: float) -> list:
    # -c rather than -m: running a module of a package that imports it warns (runpy).
    server = subprocess.Popen([sys.executable, "-c", "import sys; from hftlab.bench import wakeups; "
                               "sys.exit(wakeups.main(sys.argv[1:]))", "serve", kind],
                              stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())
        sent = []
        with net.dial("127.0.0.1", port) as sock, sock.makefile("rb") as replies:
            sock.settimeout(10.0)
            for _ in range(messages):
                time.sleep(gap)  # the pace of the test: the server falls asleep in between
                sent.append(time.time_ns())
                sock.sendall(b"ORDER,w1,0,BUY,1,AAPL,172.50\n")
                replies.readline()  # one at a time: each line is its own wake-up
        arrived = [int(t) for t in server.stdout.readline().split()]
        server.wait(10)
    finally:
        children.terminate(server, 5.0)
        server.stdout.close()
    return [a - s for s, a in zip(sent, arrived)]  # nanoseconds


def measure_wakeups(messages: int = 400, gap: float = 0.01, rounds: int = 2) -> dict:
    """{kind: percentiles of the one-way hop in microseconds}, the kinds taking turns
    `rounds` times so that a noisy moment does not fall on one kind only."""
    hops = {kind: [] for kind in KINDS}
    for _ in range(rounds):
        for kind in KINDS:
            hops[kind] += _one(kind, messages // rounds, gap)
    return {kind: percentiles(h) for kind, h in hops.items()}


def report_wakeups(results: dict) -> str:
    lines = ["ONE TCP HOP INTO A SLEEPING SERVER, by the loop it waits in (microseconds)",
             f"  {'loop':<18}{'p50':>9}{'p90':>9}{'p99':>9}{'n':>7}"]
    base = results["blocking"]["p50"]
    for kind, p in results.items():
        lines.append(f"  {kind:<18}{p['p50']:>9,.0f}{p['p90']:>9,.0f}{p['p99']:>9,.0f}{p['n']:>7}"
                     f"   {p['p50'] / base:.2f}x blocking")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m hftlab.bench.wakeups", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command")
    one = sub.add_parser("serve", help="be one server (used by the measurement)")
    one.add_argument("kind", choices=KINDS)
    p.add_argument("--messages", type=int, default=400)
    p.add_argument("--gap", type=float, default=0.01, help="seconds between messages (default 0.01)")
    args = p.parse_args(argv)
    if args.command == "serve":
        serve(args.kind)
    else:
        print(report_wakeups(measure_wakeups(args.messages, args.gap)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
