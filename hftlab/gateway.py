"""The gateway: the market. Two TCP broadcast feeds, prices and news.

Every subscriber of a feed gets ``HELLO`` first, then every message of that feed; a feed
that has been silent for ``heartbeat_interval`` sends ``HB`` so a subscriber can tell a
quiet market from a dead gateway. Prices are a seeded random walk (`PriceWalk`) and
news a seeded sentiment 0..100 (`NewsWalk`): the same seed gives the same data.

A slow or dead subscriber must not stall the others, so the gateway never waits for a
subscriber: writes go into that subscriber's own buffer and a subscriber whose buffer
passes `SLOW_CONSUMER_BYTES` is disconnected, as real exchanges drop slow consumers.

Benchmark mode (``--bench-ticks N``, used by ``hftlab bench``): each SIGUSR1 makes the
price feed send a burst of N ticks in large writes, as fast as the subscribers take them
(or at ``--bench-rate``), waiting for the slowest instead of dropping it, so a burst
measures how fast the consumers go without losing a tick. The paced feed holds still
during a burst. The burst replays a precomputed cycle of the seeded walk, so that the
gateway spends its time formatting and sending, not drawing random numbers. Between
bursts, the paced ticks come at random (exponential, seeded) intervals of mean
``tick_interval``, as real ticks do: a feed ticking every 1 ms and a strategy polling
every 1 ms keep nearly the same phase for seconds, and a latency measured then would
be that phase, not the system.

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
import re
import secrets
import signal
import time

from hftlab import process, protocol, replay

__all__ = ["SLOW_CONSUMER_BYTES", "START_PRICES", "VOLATILITY", "BENCH_BATCH", "BENCH_CYCLE",
           "BURST_QUIET", "PriceWalk", "NewsWalk", "Feed", "serve_feed", "pace", "play",
           "price_tails", "price_lines", "bench_tails", "burst", "serve", "run", "main"]

SLOW_CONSUMER_BYTES = 1 << 20
START_PRICES = {"AAPL": 172.50, "MSFT": 410.00, "GOOGL": 140.00, "AMZN": 180.00}
VOLATILITY = 0.002  # standard deviation of one tick's relative move
BENCH_BATCH = 4096  # ticks per write in a benchmark burst (about 160 KB)
BENCH_CYCLE = 4096  # walk steps precomputed for bursts
BURST_QUIET = 0.2  # seconds the paced feed stays still after a burst: the book then shows its end


class PriceWalk:
    """A reproducible random walk per symbol, in whole cents."""

    def __init__(self, symbols, seed: int):
        self.rng = random.Random(seed)
        self.prices = {s: START_PRICES.get(s, 100.00) for s in symbols}

    def step(self) -> list:
        """Move every symbol one tick; return [(symbol, price), ...]."""
        for s, p in self.prices.items():
            self.prices[s] = max(0.01, round(p * math.exp(self.rng.gauss(0.0, VOLATILITY)), 2))
        return list(self.prices.items())


class NewsWalk:
    """Reproducible market sentiment: an integer 0..100, 50 neutral."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed + 1)  # its own stream: prices don't depend on news

    def step(self) -> int:
        return self.rng.randint(0, 100)


class Feed:
    """One broadcast stream: its subscribers, sequence numbers and heartbeats."""

    def __init__(self, kind: str, session: str, log):
        self.kind, self.session, self.log = kind, session, log
        self.seq = 0
        self.subscribers = set()
        self.paused = False  # a benchmark burst owns the feed
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
                                 f"{process.peer(writer)} ({SLOW_CONSUMER_BYTES >> 10} KiB unsent)")
                self.subscribers.discard(writer)
                writer.transport.abort()
            else:
                writer.write(data)

    def heartbeat(self) -> None:
        self.publish(protocol.encode(protocol.Heartbeat(self.seq, time.time_ns())))

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq


async def serve_feed(feed: Feed, host: str, port: int, flag: str, connections=None):
    connections = connections if connections is not None else process.Connections()

    async def on_connect(reader, writer):
        connections.add(writer)
        process.no_delay(writer.get_extra_info("socket"))
        feed.subscribe(writer)
        feed.log.info(f"{feed.kind.lower()} feed: subscriber {process.peer(writer)} connected "
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
        raise process.listen_error(exc, host, port, flag) from None


async def pace(feed: Feed, interval: float, heartbeat: float, make, rng=None) -> None:
    """Call make() every `interval` seconds, and heartbeat whenever the feed is silent.

    With `rng` (a random.Random) the intervals are exponential with mean `interval`.

    A timer callback, not a loop around ``asyncio.sleep``: the next wake-up is booked
    before the tick is made and sent, so that after the write the loop goes straight back
    to sleep. The orderbook the write wakes often runs on this CPU (two cores, four
    processes): every microsecond spent here after the send is one it waits."""
    loop = asyncio.get_running_loop()
    stopped = loop.create_future()

    def gap() -> float:
        return interval if rng is None else rng.expovariate(1.0 / interval)

    def due() -> None:
        nonlocal next_at, timer
        try:
            now = loop.time()
            if now >= next_at:
                # Fixed schedule, no drift; if we fell behind, skip rather than burst.
                next_at = max(next_at + gap(), now)
                timer = loop.call_at(min(next_at, now + heartbeat), due)
                if not feed.paused:  # a benchmark burst owns the feed: its ticks are skipped
                    feed.publish(make())
                return
            if time.monotonic() - feed.last_sent >= heartbeat:
                feed.heartbeat()
            timer = loop.call_at(min(next_at, feed.last_sent + heartbeat - time.monotonic() + now), due)
        except Exception as exc:  # raised by the await below: a callback's would only be logged
            stopped.set_exception(exc)

    next_at = loop.time() + gap()
    timer = loop.call_at(min(next_at, loop.time() + heartbeat), due)
    try:
        await stopped
    finally:
        timer.cancel()


async def play(prices: Feed, news: Feed, events: list, speed: float, heartbeat: float,
               source: str, log) -> None:
    """Send a tick file's events at their pace / `speed` (0: as fast as subscribers take them).

    Waits first until every feed the file uses has a subscriber; heartbeats fill any gap.
    Every message gets the next seq of its feed and the time it is sent, as in a live run."""
    loop = asyncio.get_running_loop()
    feeds = {replay.PRICE: prices, replay.NEWS: news}
    used = [feeds[kind] for kind in (replay.PRICE, replay.NEWS) if any(e.kind == kind for e in events)]
    log.info(f"replay: {len(events)} rows of {source} at speed {speed:g}; starting when the "
             f"{' and '.join(f.kind.lower() for f in used)} feed{'s have' if len(used) > 1 else ' has'} "
             "a subscriber")

    async def quiet_until(when: float) -> None:
        """Sleep until loop time `when`, with heartbeats if the price feed falls silent.

        (The news feed's heartbeats come from its own `pace`, as in a live run.)"""
        while True:
            now = loop.time()
            hb_at = prices.last_sent + heartbeat - time.monotonic() + now
            await asyncio.sleep(max(0.0, min(when, hb_at) - now))
            if time.monotonic() - prices.last_sent >= heartbeat:
                prices.heartbeat()
            if loop.time() >= when:
                return

    while not all(feed.subscribers for feed in used):
        await quiet_until(loop.time() + 0.01)  # polling a set: connecting gives no other event
    start, sent = loop.time(), {replay.PRICE: 0, replay.NEWS: 0}
    for batch in replay.batches(events):
        if speed:
            await quiet_until(start + batch[0].at / speed)
        feed, ts = feeds[batch[0].kind], time.time_ns()
        if batch[0].kind == replay.PRICE:
            data = b"".join(protocol.encode(protocol.Price(feed.next_seq(), ts, e.symbol, e.value))
                            for e in batch)
        else:
            data = b"".join(protocol.encode(protocol.News(feed.next_seq(), ts, e.value)) for e in batch)
        feed.publish(data)
        sent[batch[0].kind] += len(batch)
        if not speed:
            # As fast as possible, but never faster than the slowest subscriber takes it:
            # publish() would drop a subscriber that fell 1 MiB behind.
            for writer in list(feed.subscribers):
                try:
                    await writer.drain()
                except (ConnectionError, OSError):
                    feed.subscribers.discard(writer)
    log.info(f"replay: done, {sent[replay.PRICE]} prices and {sent[replay.NEWS]} news sent in "
             f"{loop.time() - start:.1f} s; the feeds stay up (heartbeats only)")
    await pace(prices, float("inf"), heartbeat, bytes)  # heartbeats only, until stopped


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


def bench_tails(symbols, seed: int, steps: int = BENCH_CYCLE) -> list:
    """The seeded walk's first `steps` steps as `price_tails`."""
    walk = PriceWalk(symbols, seed)
    return [tail for _ in range(steps) for tail in price_tails(walk.step())]


BURST_PREFIX = "bench: burst of "


def burst_line(n: int, first: int, last: int, t0_ns: int) -> str:
    """The log line that starts a benchmark burst; `parse_burst_line` reads it back.

    ``hftlab bench`` learns from it which seqs the burst carries and when its first tick
    was made, so the two stay side by side (like `process.ready` / `process.parse_ready`)."""
    return f"{BURST_PREFIX}{n} ticks, seq {first}..{last}, first made at ts_ns {t0_ns}"


def parse_burst_line(line: str) -> tuple | None:
    """(first seq, last seq, ts_ns of the first tick) of a `burst_line`, or None if it is not one."""
    m = _BURST_RE.search(line)
    return None if m is None else (int(m[1]), int(m[2]), int(m[3]))


_BURST_RE = re.compile(re.escape(BURST_PREFIX) + r"\d+ ticks, seq (\d+)\.\.(\d+), first made at ts_ns (\d+)$")


async def burst(feed: Feed, n: int, rate: float, tails: list, log) -> None:
    """Send n PRICE ticks in batches, waiting for every subscriber to take each batch."""
    loop = asyncio.get_running_loop()
    feed.paused = True
    try:
        cycle, ring = len(tails), tails + tails
        per = BENCH_BATCH if not rate else max(1, min(BENCH_BATCH, int(rate * 0.005)))
        first, end, k = feed.seq + 1, feed.seq + n, 0
        ts = t0 = time.time_ns()
        log.info(burst_line(n, first, end, t0))
        start = loop.time()
        while feed.seq < end:
            m = min(per, end - feed.seq)
            # One formatted line per tick, one join and one write per batch.
            feed.publish(price_lines(feed.seq + 1, ts, ring[k:k + m]))
            feed.seq, k = feed.seq + m, (k + m) % cycle
            for writer in list(feed.subscribers):
                try:
                    await writer.drain()
                except (ConnectionError, OSError):
                    feed.subscribers.discard(writer)
            if rate:
                await asyncio.sleep(max(0.0, start + (feed.seq - first + 1) / rate - loop.time()))
            ts = time.time_ns()
        took = max(ts - t0, 1)
        log.info(f"bench: burst sent in {took / 1e9:.3f} s ({n / took * 1e9:,.0f} ticks/s offered "
                 f"and taken by {len(feed.subscribers)} subscriber(s))")
        await asyncio.sleep(BURST_QUIET)
    finally:
        feed.paused = False


async def serve(config, log) -> None:
    events = None
    if config.replay:  # checked before we listen: a bad file is one sentence, not a half replay
        try:
            events = replay.load(config.replay, config.symbols)
        except replay.ReplayError as exc:
            raise process.Fatal(str(exc)) from None
    session = secrets.token_hex(4)
    prices, news = Feed("PRICE", session, log), Feed("NEWS", session, log)
    walk, mood = PriceWalk(config.symbols, config.seed), NewsWalk(config.seed)

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

    connections = process.Connections()
    price_server = await serve_feed(prices, config.host, config.price_port, "--price-port", connections)
    news_server = await serve_feed(news, config.host, config.news_port, "--news-port", connections)
    process.warn_if_exposed(log, config.host)
    price_port = price_server.sockets[0].getsockname()[1]
    news_port = news_server.sockets[0].getsockname()[1]
    if config.bench_ticks:  # before the ready line: a SIGUSR1 must never find no handler
        tails, bursts = bench_tails(config.symbols, config.seed), []

        def on_sigusr1():
            if bursts and not bursts[-1].done():
                log.warning("bench: a burst is still running; SIGUSR1 ignored")
                return
            bursts[:] = [asyncio.ensure_future(
                burst(prices, config.bench_ticks, config.bench_rate, tails, log))]

        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, on_sigusr1)
    process.ready(log, price=process.address(config.host, price_port),
                  news=process.address(config.host, news_port), session=session)
    if events is not None:
        work = [play(prices, news, events, config.speed, config.heartbeat_interval, config.replay, log),
                pace(news, float("inf"), config.heartbeat_interval, bytes)]
    else:
        work = [pace(prices, config.tick_interval, config.heartbeat_interval, make_prices,
                     random.Random(config.seed + 2) if config.bench_ticks else None),
                pace(news, config.news_interval, config.heartbeat_interval, make_news)]
    try:
        await process.until_stopped(*work)
    finally:
        for task in bursts if config.bench_ticks else ():
            task.cancel()
        for server in (price_server, news_server):
            server.close()
        await connections.hang_up()


def run(config, log) -> None:
    asyncio.run(serve(config, log))


def main(argv=None) -> int:
    return process.main("gateway", "Serve the price feed and the news feed.", run, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
