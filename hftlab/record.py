"""``hftlab record``: write what a running lab's price and news feeds send to a CSV.

    hftlab record --duration 10 --out ticks.csv      (with the lab's --price-port etc.)

Subscribes to both feeds like any client, and writes one row per PRICE and NEWS message
in the columns ``time,kind,symbol,value`` (`hftlab.replay.COLUMNS`): ``time`` is the
gateway's ts_ns as exact decimal seconds. Heartbeats and HELLO lines are not data and are
left out. The rows are written in time order when the recording ends (after --duration, or
at Ctrl-C), so ``hftlab gateway --replay ticks.csv`` can send them again at their pace.

Before it records, it makes a temporary file beside --out: a place it cannot write is then
said at once, not after a recording that would be lost. At the end the rows go to that file,
which then replaces --out in one step (so --out is never half written); on any failure it is
removed.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import selectors
import stat
import time

from hftlab import net, process, protocol, replay

__all__ = ["add_arguments", "reserve", "subscribe", "collect", "write", "run", "main"]


def add_arguments(parser) -> None:
    parser.add_argument("--duration", type=float, required=True, metavar="SECONDS",
                        help="record this many seconds (Ctrl-C ends it sooner; what came is kept)")
    parser.add_argument("--out", required=True, metavar="FILE.csv", help="the CSV file to write")


def subscribe(host: str, port: int, feed: str):
    try:
        sock = net.dial(host, port, timeout=2.0)
    except OSError as exc:
        raise process.Fatal(f"cannot reach the {feed} feed at {net.address(host, port)} "
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
                    rows += _read(key, selector, log)
        except KeyboardInterrupt:
            log.info("interrupted; writing what came so far")
    finally:
        for sock in socks:
            sock.close()
        selector.close()
    return rows


def _read(key, selector, log) -> list:
    """The rows in what one feed's socket (a selector key, ready to read) has for us; a feed
    that ended is unregistered, and said so."""
    feed, decoder = key.data
    try:
        data = key.fileobj.recv(65536)
    except BlockingIOError:
        return []
    except OSError as exc:
        data, why = b"", exc.strerror or str(exc)
    else:
        why = "the gateway closed it"
    if not data:
        log.warning(f"the {feed} feed ended ({why}); recording what came")
        selector.unregister(key.fileobj)
        return []
    rows = []
    for msg in decoder.feed(data):
        if type(msg) is protocol.Price:
            rows.append((msg.ts_ns, replay.PRICE, msg.symbol, msg.price))
        elif type(msg) is protocol.News:
            rows.append((msg.ts_ns, replay.NEWS, "", msg.sentiment))
        elif type(msg) is protocol.ProtocolError:
            log.warning(f"{feed} feed: bad line skipped: {msg.reason}")
    return rows


def _cannot_write(path: str, why: str) -> process.Fatal:
    return process.Fatal(f"cannot write {path}: {why}; choose a file in a directory you can write "
                         "(nothing was recorded)")


def reserve(path: str) -> tuple:
    """(the file to write, a new empty temporary file beside it) for a recording to `path`.

    Made before recording, so that a place that cannot be written is a `process.Fatal` at
    once; `run` writes the rows to the temporary file and moves it onto the file."""
    target = os.path.realpath(path)  # through a symlink, as open() would write
    try:
        mode = os.stat(target).st_mode
    except OSError:
        mode = None  # no such file yet; if the path is wrong, making the temporary file says how
    if mode is not None and not stat.S_ISREG(mode):  # replacing /dev/null or a pipe is no recording
        raise _cannot_write(path, f"it is {replay.describe_file(mode)}, not a file")
    if mode is not None and not os.access(target, os.W_OK):  # os.replace would not ask the file
        raise _cannot_write(path, "Permission denied")
    directory = os.path.dirname(target)
    # Not tempfile.mkstemp: its files are private (0600); this one gets the mode open() would give.
    temporary = os.path.join(directory, f".{os.path.basename(target)}.{secrets.token_hex(4)}.tmp")
    try:
        os.makedirs(directory, exist_ok=True)
        os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except (FileExistsError, NotADirectoryError):  # from makedirs: a file where a directory should be
        raise _cannot_write(path, "a part of its path is a file, not a directory") from None
    except OSError as exc:
        raise _cannot_write(path, exc.strerror or str(exc)) from None
    if mode is not None:  # a file written over keeps its permissions, as with open(path, "w")
        with contextlib.suppress(OSError):  # (a file system without them does not stop a recording)
            os.chmod(temporary, stat.S_IMODE(mode))
    return target, temporary


def write(path: str, rows) -> None:
    """Write the rows in time order (two sockets may deliver them slightly interleaved)."""
    rows = sorted(rows, key=lambda r: r[0])  # stable: same-time rows keep their order
    with open(path, "w", newline="") as f:
        f.write(",".join(replay.COLUMNS) + "\n")
        f.writelines(replay.format_row(*row) for row in rows)


def run(config, log, args) -> None:
    if not args.duration > 0:
        raise process.Fatal(f"--duration must be positive; got {args.duration:g}")
    target, temporary = reserve(args.out)
    try:
        rows = collect(config, args.duration, log)
        try:
            write(temporary, rows)
            os.replace(temporary, target)
        except OSError as exc:
            raise process.Fatal(f"cannot write {args.out}: {exc.strerror or exc}; the recording is lost "
                                "(free some space, or choose another place)") from None
    finally:
        with contextlib.suppress(FileNotFoundError):  # gone once it has replaced the target
            os.remove(temporary)
    prices = sum(1 for r in rows if r[1] == replay.PRICE)
    log.info(f"wrote {prices} prices and {len(rows) - prices} news to {args.out}")


def main(argv=None) -> int:
    return process.main("record", "Record a running lab's price and news feeds to a CSV file.",
                        run, add_arguments=add_arguments, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
