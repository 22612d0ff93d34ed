"""``hftlab record``: write what a running lab's price and news feeds send to a CSV.

    hftlab record --duration 10 --out ticks.csv      (with the lab's --price-port etc.)

Subscribes to both feeds like any client, and writes one row per PRICE and NEWS message
in the columns ``time,kind,symbol,value`` (`hftlab.replay.COLUMNS`): ``time`` is the
gateway's ts_ns as exact decimal seconds. Heartbeats and HELLO lines are not data and are
left out. The rows are written in time order when the recording ends (after --duration, or
at Ctrl-C), so ``hftlab gateway --replay ticks.csv`` can send them again at their pace.
"""

from __future__ import annotations

import os
import selectors
import time

from hftlab import process, protocol, replay

__all__ = ["add_arguments", "subscribe", "collect", "write", "run", "main"]


def add_arguments(parser) -> None:
    parser.add_argument("--duration", type=float, required=True, metavar="SECONDS",
                        help="record this many seconds (Ctrl-C ends it sooner; what came is kept)")
    parser.add_argument("--out", required=True, metavar="FILE.csv", help="the CSV file to write")


def subscribe(host: str, port: int, feed: str):
    try:
        sock = process.dial(host, port, timeout=2.0)
    except OSError as exc:
        raise process.Fatal(f"cannot reach the {feed} feed at {process.address(host, port)} "
                            f"({exc.strerror or exc}); is a lab running there? (hftlab run, or "
                            "pass its --price-port and --news-port)") from None
    sock.setblocking(False)
    return sock


def collect(config, duration: float, log) -> list:
    """(ts_ns, kind, symbol, value) of every PRICE and NEWS received within `duration` s."""
    rows, selector = [], selectors.DefaultSelector()
    socks = []
    try:
        for feed, port in (("price", config.price_port), ("news", config.news_port)):
            sock = subscribe(config.host, port, feed)
            socks.append(sock)
            selector.register(sock, selectors.EVENT_READ, (feed, protocol.Decoder()))
        log.info(f"recording the price and news feeds at {config.host} for {duration:g} s")
        end = time.monotonic() + duration
        try:
            while selector.get_map() and (left := end - time.monotonic()) > 0:
                for key, _ in selector.select(min(left, 0.5)):
                    feed, decoder = key.data
                    try:
                        data = key.fileobj.recv(65536)
                    except BlockingIOError:
                        continue
                    except OSError as exc:
                        data, why = b"", exc.strerror or str(exc)
                    else:
                        why = "the gateway closed it"
                    if not data:
                        log.warning(f"the {feed} feed ended ({why}); recording what came")
                        selector.unregister(key.fileobj)
                        continue
                    for msg in decoder.feed(data):
                        if type(msg) is protocol.Price:
                            rows.append((msg.ts_ns, replay.PRICE, msg.symbol, msg.price))
                        elif type(msg) is protocol.News:
                            rows.append((msg.ts_ns, replay.NEWS, "", msg.sentiment))
                        elif type(msg) is protocol.ProtocolError:
                            log.warning(f"{feed} feed: bad line skipped: {msg.reason}")
        except KeyboardInterrupt:
            log.info("interrupted; writing what came so far")
    finally:
        for sock in socks:
            sock.close()
        selector.close()
    return rows


def write(path: str, rows) -> None:
    """Write the rows in time order (two sockets may deliver them slightly interleaved)."""
    rows = sorted(rows, key=lambda r: r[0])  # stable: same-time rows keep their order
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    with open(path, "w", newline="") as f:
        f.write(",".join(replay.COLUMNS) + "\n")
        f.writelines(replay.format_row(*row) for row in rows)


def run(config, log, args) -> None:
    if not args.duration > 0:
        raise process.Fatal(f"--duration must be positive; got {args.duration:g}")
    rows = collect(config, args.duration, log)
    write(args.out, rows)
    prices = sum(1 for r in rows if r[1] == replay.PRICE)
    log.info(f"wrote {prices} prices and {len(rows) - prices} news to {args.out}")


def main(argv=None) -> int:
    return process.main("record", "Record a running lab's price and news feeds to a CSV file.",
                        run, add_arguments=add_arguments, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
