"""The gateway: the market. Two TCP broadcast feeds, prices and news.

Every subscriber of a feed gets ``HELLO`` first, then every message of that feed; a feed
that has been silent for ``heartbeat_interval`` sends ``HB`` so a subscriber can tell a
quiet market from a dead gateway. Prices are a seeded random walk (`PriceWalk`) and
news a seeded sentiment 0..100 (`NewsWalk`): the same seed gives the same data.

A slow or dead subscriber must not stall the others, so the gateway never waits for a
subscriber: writes go into that subscriber's own buffer and a subscriber whose buffer
passes `SLOW_CONSUMER_BYTES` is disconnected, as real exchanges drop slow consumers.

Run alone: ``python -m hftlab.gateway`` (or ``hftlab gateway``).
"""

from __future__ import annotations

import asyncio
import math
import random
import secrets
import socket
import time

from hftlab import process, protocol

SLOW_CONSUMER_BYTES = 1 << 20
START_PRICES = {"AAPL": 172.50, "MSFT": 410.00, "GOOGL": 140.00, "AMZN": 180.00}
VOLATILITY = 0.002  # standard deviation of one tick's relative move


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
                                 f"{peer(writer)} ({SLOW_CONSUMER_BYTES >> 10} KiB unsent)")
                self.subscribers.discard(writer)
                writer.transport.abort()
            else:
                writer.write(data)

    def heartbeat(self) -> None:
        self.publish(protocol.encode(protocol.Heartbeat(self.seq, time.time_ns())))

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq


def peer(writer) -> str:
    host, port = writer.get_extra_info("peername")[:2]
    return process.address(host, port)


async def serve_feed(feed: Feed, host: str, port: int, flag: str):
    async def on_connect(reader, writer):
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        feed.subscribe(writer)
        feed.log.info(f"{feed.kind.lower()} feed: subscriber {peer(writer)} connected "
                      f"({len(feed.subscribers)} now)")
        try:
            # Subscribers have nothing to say; reading only tells us when they leave.
            while await reader.read(4096):
                pass
        except (ConnectionError, OSError):
            pass
        finally:
            feed.subscribers.discard(writer)
            writer.close()

    try:
        return await asyncio.start_server(on_connect, host, port)
    except OSError as exc:
        raise process.listen_error(exc, host, port, flag) from None


async def pace(feed: Feed, interval: float, heartbeat: float, make) -> None:
    """Call make() every `interval` seconds, and heartbeat whenever the feed is silent."""
    loop = asyncio.get_running_loop()
    next_at = loop.time() + interval
    while True:
        hb_at = feed.last_sent + heartbeat - time.monotonic() + loop.time()
        await asyncio.sleep(max(0.0, min(next_at, hb_at) - loop.time()))
        if loop.time() >= next_at:
            feed.publish(make())
            # Fixed schedule, no drift; if we fell behind, skip rather than burst.
            next_at = max(next_at + interval, loop.time())
        elif time.monotonic() - feed.last_sent >= heartbeat:
            feed.heartbeat()


async def serve(config, log) -> None:
    session = secrets.token_hex(4)
    prices, news = Feed("PRICE", session, log), Feed("NEWS", session, log)
    walk, mood = PriceWalk(config.symbols, config.seed), NewsWalk(config.seed)

    def make_prices() -> bytes:
        ts = time.time_ns()
        return b"".join(protocol.encode(protocol.Price(prices.next_seq(), ts, s, p))
                        for s, p in walk.step())

    def make_news() -> bytes:
        sentiment = mood.step()
        log.info(f"news: sentiment {sentiment}")
        return protocol.encode(protocol.News(news.next_seq(), time.time_ns(), sentiment))

    price_server = await serve_feed(prices, config.host, config.price_port, "--price-port")
    news_server = await serve_feed(news, config.host, config.news_port, "--news-port")
    process.warn_if_exposed(log, config.host)
    price_port = price_server.sockets[0].getsockname()[1]
    news_port = news_server.sockets[0].getsockname()[1]
    process.ready(log, price=process.address(config.host, price_port),
                  news=process.address(config.host, news_port), session=session)
    async with price_server, news_server:
        await asyncio.gather(
            pace(prices, config.tick_interval, config.heartbeat_interval, make_prices),
            pace(news, config.news_interval, config.heartbeat_interval, make_news))


def run(config, args, log) -> None:
    asyncio.run(serve(config, log))


def main(argv=None) -> int:
    return process.main("gateway", "Serve the price feed and the news feed.", run, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
