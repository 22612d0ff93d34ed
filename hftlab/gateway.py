"""The gateway: the market. Two TCP broadcast feeds, prices and news.

Every subscriber of a feed gets ``HELLO`` first, then every message of that feed; a feed
that has been silent for ``heartbeat_interval`` sends ``HB`` so a subscriber can tell a
quiet market from a dead gateway. Prices are a seeded random walk (`PriceWalk`) and
news a seeded sentiment 0..100 (`NewsWalk`): the same seed gives the same data.

A slow or dead subscriber must not stall the others, so the gateway never waits for a
subscriber: writes go into that subscriber's own buffer and a subscriber whose buffer
passes `SLOW_CONSUMER_BYTES` is disconnected, as real exchanges drop slow consumers.

``hftlab bench`` runs this gateway with bursts on demand (`hftlab.bench.burst`): the
gateway itself only lets something else own a feed for a while (`Feed.paused`).

Replay mode (``--replay FILE [--speed X]``): instead of the walks, the gateway sends the
prices and news of a tick file (`hftlab.replay`: what ``hftlab record`` wrote, or a
learner's own ``time,symbol,price`` CSV) at the file's pace times X (0: as fast as the
subscribers take them), with its own fresh session and sequence numbers like any other
run. The file is checked before the gateway listens. The replay starts once every feed the
file uses has a subscriber (in ``hftlab run`` the orderbook and the strategy), so nobody
misses its beginning and the same file always gives the same ticks; when it ends, the feeds
stay up and send heartbeats.

Run alone: ``python -m hftlab.gateway`` (or ``hftlab gateway``).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import secrets
import signal
import time

from hftlab import net, process, protocol, replay

__all__ = ["SLOW_CONSUMER_BYTES", "START_PRICES", "VOLATILITY", "REPLAY_WAIT", "PriceWalk", "NewsWalk", "Feed",
           "Connections", "serve_feed", "pace", "play", "price_tails", "price_lines", "until_stopped",
           "serve", "run", "main"]

SLOW_CONSUMER_BYTES = 1 << 20
START_PRICES = {"AAPL": 172.50, "MSFT": 410.00, "GOOGL": 140.00, "AMZN": 180.00}
VOLATILITY = 0.002  # standard deviation of one tick's relative move
REPLAY_WAIT = 30.0  # a replay waits this long at most for its news subscribers (config.news_subscribers)


class PriceWalk:
    """A reproducible random walk per symbol, in whole cents.

    With `momentum` m, each tick's relative move is m times the last one plus a fresh
    random one: prices trend, so a signal that follows them is worth something, and a
    strategy that acts late buys higher and sells lower (`hftlab match` uses 0.3). With
    m = 0 it is a pure random walk, tick for tick the one it always was for a seed."""

    def __init__(self, symbols, seed: int, momentum: float = 0.0):
        self.rng = random.Random(seed)
        self.momentum = momentum
        self.prices = {s: START_PRICES.get(s, 100.00) for s in symbols}
        self.moves = dict.fromkeys(symbols, 0.0)  # each symbol's last relative move (log return)

    def step(self) -> list:
        """Move every symbol one tick; return [(symbol, price), ...]."""
        for s, p in self.prices.items():
            move = self.rng.gauss(0.0, VOLATILITY) + self.momentum * self.moves[s]
            self.moves[s] = move
            self.prices[s] = max(0.01, round(p * math.exp(move), 2))
        return list(self.prices.items())


class NewsWalk:
    """Reproducible market sentiment: an integer 0..100, 50 neutral."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed + 1)  # its own stream: prices don't depend on news

    def step(self) -> int:
        return self.rng.randint(0, 100)


class Feed:
    """One broadcast stream: its subscribers, sequence numbers and heartbeats.

    Its times (`last_sent`) are of one clock, time.monotonic(), as `pace` and `play` keep theirs."""

    def __init__(self, kind: str, session: str, log):
        self.kind, self.session, self.log = kind, session, log
        self.seq = 0
        self.subscribers = set()
        self.paused = False  # something else owns the feed for now (a benchmark burst): pace() holds still
        self.last_sent = time.monotonic()

    def subscribe(self, writer: asyncio.StreamWriter) -> None:
        writer.write(protocol.encode(protocol.Hello(self.kind, self.session)))
        self.subscribers.add(writer)

    def publish(self, data: bytes) -> None:
        self.last_sent = time.monotonic()
        for writer in list(self.subscribers):
            if writer.is_closing():
                self.subscribers.discard(writer)
            elif writer.transport.get_write_buffer_size() > SLOW_CONSUMER_BYTES:
                self.log.warning(f"{self.kind.lower()} feed: dropping slow subscriber "
                                 f"{net.peer(writer)} ({SLOW_CONSUMER_BYTES >> 10} KiB unsent)")
                self.subscribers.discard(writer)
                writer.transport.abort()
            else:
                writer.write(data)

    def heartbeat(self) -> None:
        self.publish(protocol.encode(protocol.Heartbeat(self.seq, time.time_ns())))

    async def drain(self) -> None:
        """Wait until every subscriber has taken what was published (one that went is dropped):
        for sending as fast as the slowest takes it, never faster, since publish() drops a
        subscriber that falls SLOW_CONSUMER_BYTES behind."""
        for writer in list(self.subscribers):
            try:
                await writer.drain()
            except (ConnectionError, OSError):
                self.subscribers.discard(writer)

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq


class Connections:
    """The open connections of an asyncio server, so that it can close them at shutdown."""

    def __init__(self):
        self.tasks = {}  # the task serving a connection -> its StreamWriter

    def add(self, writer) -> None:
        self.tasks[asyncio.current_task()] = writer

    def remove(self) -> None:
        self.tasks.pop(asyncio.current_task(), None)

    async def hang_up(self, timeout: float = 2.0) -> None:
        """Close every connection and let its task finish by itself."""
        for writer in self.tasks.values():
            writer.close()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=timeout)


async def serve_feed(feed: Feed, host: str, port: int, flag: str, connections=None):
    connections = connections if connections is not None else Connections()

    async def on_connect(reader, writer):
        connections.add(writer)
        net.no_delay(writer.get_extra_info("socket"))
        feed.subscribe(writer)
        feed.log.info(f"{feed.kind.lower()} feed: subscriber {net.peer(writer)} connected "
                      f"({len(feed.subscribers)} now)")
        try:
            # Subscribers have nothing to say; reading only tells us when they leave.
            while await reader.read(4096):
                pass
        except (ConnectionError, OSError):
            pass
        finally:
            feed.subscribers.discard(writer)
            connections.remove()
            writer.close()

    try:
        return await asyncio.start_server(on_connect, host, port)
    except OSError as exc:
        raise net.listen_error(exc, host, port, flag) from None


async def pace(feed: Feed, interval: float, heartbeat: float, make, gaps=None) -> None:
    """Publish make() every `interval` s (exponential intervals of that mean with `gaps`, a
    random.Random), and a heartbeat whenever the feed is silent for `heartbeat` s; until
    cancelled. One clock, time.monotonic(). A timer callback (`wake`) that books the next
    wake-up before it makes and sends the tick, so that the loop sleeps at once after the
    write: the orderbook it wakes often waits for this CPU (docs/performance.md, round 4)."""
    loop = asyncio.get_running_loop()
    stopped = loop.create_future()   # done only by a failure of make(): raised below, not lost
    timer = None

    def gap() -> float:
        return interval if gaps is None else gaps.expovariate(1.0 / interval)

    def sleep_until(when: float) -> None:
        nonlocal timer
        timer = loop.call_later(max(0.0, when - time.monotonic()), wake)

    def wake() -> None:
        nonlocal tick_at
        try:
            now = time.monotonic()
            if now >= tick_at:
                tick_at = max(tick_at + gap(), now)  # a fixed schedule: no drift; behind, skip, never burst
                sleep_until(min(tick_at, now + heartbeat))
                if not feed.paused:
                    feed.publish(make())
                return
            if now - feed.last_sent >= heartbeat:
                feed.heartbeat()
            sleep_until(min(tick_at, feed.last_sent + heartbeat))
        except Exception as exc:
            stopped.set_exception(exc)

    tick_at = time.monotonic() + gap()
    sleep_until(min(tick_at, time.monotonic() + heartbeat))
    try:
        await stopped
    finally:
        timer.cancel()


async def play(prices: Feed, news: Feed, events: list, speed: float, heartbeat: float,
               source: str, log, news_subscribers: int = 1) -> None:
    """Send a tick file's events at their pace / `speed` (0: as fast as subscribers take them).

    Waits first until every feed the file uses has a subscriber, the news feed
    `news_subscribers` of them (every strategy of a match must see the file from its first
    line, or the match is not the same match twice), for REPLAY_WAIT s at most; heartbeats
    fill any gap. Every message gets the next seq of its feed and the time it is sent, as
    in a live run."""
    feeds = {replay.PRICE: prices, replay.NEWS: news}
    used = [feeds[kind] for kind in (replay.PRICE, replay.NEWS) if any(e.kind == kind for e in events)]
    wanted = {feed: news_subscribers if feed is news else 1 for feed in used}
    log.info(f"replay: {len(events)} rows of {source} at speed {speed:g}; starting when the "
             + " and ".join(f"{f.kind.lower()} feed has {'a subscriber' if n == 1 else f'{n} subscribers'}"
                            for f, n in wanted.items()))
    give_up = time.monotonic() + REPLAY_WAIT
    while not all(len(feed.subscribers) >= n for feed, n in wanted.items()):
        if time.monotonic() > give_up and all(feed.subscribers for feed in used):
            log.warning(f"replay: starting after {REPLAY_WAIT:g} s with "
                        + ", ".join(f"{len(f.subscribers)} of {n} {f.kind.lower()} subscribers"
                                    for f, n in wanted.items()))
            break
        await _quiet_until(prices, heartbeat, time.monotonic() + 0.01)  # connecting gives no other event
    start, sent = time.monotonic(), {replay.PRICE: 0, replay.NEWS: 0}
    for batch in replay.batches(events):
        if speed:
            await _quiet_until(prices, heartbeat, start + batch[0].at / speed)
        feed, kind = feeds[batch[0].kind], batch[0].kind
        feed.publish(_replayed(feed, batch, time.time_ns()))
        sent[kind] += len(batch)
        if not speed:
            await feed.drain()
    log.info(f"replay: done, {sent[replay.PRICE]} prices and {sent[replay.NEWS]} news sent in "
             f"{time.monotonic() - start:.1f} s; the feeds stay up (heartbeats only)")
    await pace(prices, float("inf"), heartbeat, bytes)  # heartbeats only, until stopped


def _replayed(feed: Feed, batch: list, ts_ns: int) -> bytes:
    """The lines of a batch of a tick file's events, each with the next seq of `feed`."""
    if batch[0].kind == replay.PRICE:
        return b"".join(protocol.encode(protocol.Price(feed.next_seq(), ts_ns, e.symbol, e.value)) for e in batch)
    return b"".join(protocol.encode(protocol.News(feed.next_seq(), ts_ns, e.value)) for e in batch)


async def _quiet_until(feed: Feed, heartbeat: float, when: float) -> None:
    """Sleep until time.monotonic() `when`, with heartbeats if `feed` falls silent meanwhile.
    (In a replay the news feed's heartbeats come from its own `pace`, as in a live run.)"""
    while True:
        now = time.monotonic()
        await asyncio.sleep(max(0.0, min(when, feed.last_sent + heartbeat) - now))
        if time.monotonic() - feed.last_sent >= heartbeat:
            feed.heartbeat()
        if time.monotonic() >= when:
            return


def price_tails(moves) -> list:
    """[(symbol, price), ...] (a walk's step) as the ``,SYMBOL,PRICE\\n`` ends of their PRICE
    lines: everything but the seq and the time, which `price_lines` puts in front."""
    return [f",{s},{p:.2f}\n".encode("ascii") for s, p in moves]


def price_lines(first_seq: int, ts_ns: int, tails) -> bytes:
    """The PRICE lines of `tails` (`price_tails`), seqs from `first_seq` on, all made at
    `ts_ns`: the bytes `protocol.encode` gives, formatted in one step, so that a tick is
    stamped as late as possible, just before it is sent (a property test in
    tests/test_protocol.py holds the two equal)."""
    stamp = b",%d" % ts_ns
    return b"".join([b"PRICE,%d%s%s" % (q, stamp, tail) for q, tail in zip(itertools.count(first_seq), tails)])


async def until_stopped(*work) -> None:
    """Run the `work` coroutines until Ctrl-C or SIGTERM (or until one of them fails).

    The server waits here rather than being interrupted by KeyboardInterrupt, so that it can
    hang up on its clients itself: connection tasks cancelled under it are reported by
    asyncio with a traceback in the log.
    """
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopped.set)
    tasks = [asyncio.ensure_future(stopped.wait()), *map(asyncio.ensure_future, work)]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()  # a failure of the work is raised here, not lost
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def market(config, prices: Feed, news: Feed, log, events=None, gaps=None) -> list:
    """The work that makes the two feeds' messages: the seeded walks, paced (`gaps`: see
    `pace`), or the `events` of a tick file (``--replay``) played."""
    if events is not None:
        return [play(prices, news, events, config.speed, config.heartbeat_interval, config.replay, log,
                     config.news_subscribers),
                pace(news, float("inf"), config.heartbeat_interval, bytes)]
    walk, mood = PriceWalk(config.symbols, config.seed, config.momentum), NewsWalk(config.seed)

    def make_prices() -> bytes:
        # The market moves first, then the tick is stamped and sent at once: its ts_ns is
        # when it left the exchange, not when the simulation began to draw it.
        tails = price_tails(walk.step())
        first, prices.seq = prices.seq + 1, prices.seq + len(tails)
        return price_lines(first, time.time_ns(), tails)

    def make_news() -> bytes:
        sentiment = mood.step()
        log.info(f"news: sentiment {sentiment}")
        return protocol.encode(protocol.News(news.next_seq(), time.time_ns(), sentiment))

    return [pace(prices, config.tick_interval, config.heartbeat_interval, make_prices, gaps),
            pace(news, config.news_interval, config.heartbeat_interval, make_news)]


async def serve(config, log, gaps=None, setup=None) -> None:
    """Serve both feeds until stopped. `setup(prices)`, if given, runs before the ready line
    and returns a function to run at the end (``hftlab bench``'s bursts); `gaps` as in `pace`."""
    try:  # before we listen: a bad file is one sentence, not a half replay
        events = replay.load(config.replay, config.symbols) if config.replay else None
    except replay.ReplayError as exc:
        raise process.Fatal(str(exc)) from None
    session = secrets.token_hex(4)
    prices, news = Feed("PRICE", session, log), Feed("NEWS", session, log)
    connections = Connections()
    servers = [await serve_feed(prices, config.host, config.price_port, "--price-port", connections),
               await serve_feed(news, config.host, config.news_port, "--news-port", connections)]
    net.warn_if_exposed(log, config.host)
    done = setup(prices) if setup else None
    price_port, news_port = (server.sockets[0].getsockname()[1] for server in servers)
    process.ready(log, price=net.address(config.host, price_port),
                  news=net.address(config.host, news_port), session=session)
    try:
        await until_stopped(*market(config, prices, news, log, events, gaps))
    finally:
        if done:
            done()
        for server in servers:
            server.close()
        await connections.hang_up()


def run(config, log) -> None:
    if config.bench_ticks:
        raise process.Fatal("--bench-ticks is for the benchmark's gateway: python -m hftlab.bench.burst "
                            "(hftlab bench, and a Launcher given bench_ticks, start that one)")
    asyncio.run(serve(config, log))


def main(argv=None) -> int:
    return process.main("gateway", "Serve the price feed and the news feed.", run, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
