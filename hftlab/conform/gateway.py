"""The gateway's cases: the harness subscribes to its two feeds and checks what arrives.

Run with a fast cadence (a tick every 50 ms, news every 100 ms, heartbeats after 0.3 s of
silence) so that every case takes a few seconds.
"""

from __future__ import annotations

import time

from hftlab import protocol
from hftlab.conform.harness import CaseFailed, LineClient, case

FAST = dict(tick_interval=0.05, news_interval=0.1, heartbeat_interval=0.3)


def subscribe(ctx, port: int, feed: str) -> tuple:
    """Connect; the HELLO line and the client. CaseFailed if the first line is not HELLO."""
    client = LineClient(ctx.config.host, port)
    ctx.on_cleanup(client.close)
    first = client.next(3.0)
    if not isinstance(first, protocol.Hello) or first.feed != feed:
        raise CaseFailed(f"the first line on the {feed} port was {first!r}, not HELLO,{feed},<session>")
    return first, client


def both_feeds(ctx):
    """Start the gateway and subscribe to its two feeds: ((hello, client) of PRICE, of NEWS)."""
    ctx.start()
    return subscribe(ctx, ctx.config.price_port, "PRICE"), subscribe(ctx, ctx.config.news_port, "NEWS")


def data(msgs, kind):
    return [m for m in msgs if isinstance(m, kind)]


@case(1, "HELLO,<feed>,<session> is the first line on each feed",
      "send encode(Hello('PRICE', session)) to each new price subscriber (and 'NEWS' on the news port) "
      "before anything else", **FAST)
def hello_first(ctx):
    (price, _), (news, _) = both_feeds(ctx)
    if price.session != news.session:
        raise CaseFailed(f"the feeds name different sessions: {price.session!r} and {news.session!r}")


@case(2, "PRICE lines for every symbol (price above 0); NEWS lines with a sentiment 0..100",
      "every tick_interval send PRICE,<seq>,<ts_ns>,<symbol>,<price> for each of --symbols; every "
      "news_interval NEWS,<seq>,<ts_ns>,<0..100>", **FAST)
def prices_and_news(ctx):
    (_, price), (_, news) = both_feeds(ctx)
    got = price.collect(1.5)
    bad = [m for m in got if isinstance(m, protocol.ProtocolError)]
    if bad:
        raise CaseFailed(f"a line on the price feed is not valid: {bad[0].reason}")
    prices = data(got, protocol.Price)
    symbols = {p.symbol for p in prices}
    if symbols != set(ctx.config.symbols):
        raise CaseFailed(f"in 1.5 s the price feed sent symbols {sorted(symbols)}, expected "
                         f"{sorted(ctx.config.symbols)}")
    if any(not p.price > 0 for p in prices):
        raise CaseFailed(f"a price not above 0: {next(p for p in prices if not p.price > 0)}")
    got = news.collect(1.0)
    bad = [m for m in got if isinstance(m, protocol.ProtocolError)]
    if bad:
        raise CaseFailed(f"a line on the news feed is not valid: {bad[0].reason}")
    items = data(got, protocol.News)
    if not items:
        raise CaseFailed("no NEWS line within 1 s (news_interval is 0.1 s)")
    if any(not 0 <= n.sentiment <= 100 for n in items):
        raise CaseFailed(f"a sentiment outside 0..100: {next(n for n in items if not 0 <= n.sentiment <= 100)}")


def check_seqs(msgs, feed):
    last = None
    for m in msgs:
        if isinstance(m, protocol.Heartbeat):
            if last is not None and m.last_seq != last:
                raise CaseFailed(f"{feed}: HB says last_seq {m.last_seq} after seq {last}")
            continue
        if last is not None and m.seq != last + 1:
            raise CaseFailed(f"{feed}: seq {m.seq} followed seq {last}")
        last = m.seq
    if last is None:
        raise CaseFailed(f"{feed}: no data message at all")


@case(3, "sequence numbers increase by one on each feed; HB carries the last seq",
      "one counter per feed, +1 for every PRICE (or NEWS) line, never for HB", **FAST)
def sequence(ctx):
    (_, price), (_, news) = both_feeds(ctx)
    check_seqs(price.collect(1.0), "price feed")
    check_seqs(news.collect(0.8), "news feed")


@case(4, "HB,<last_seq>,<ts_ns> on a feed that has been silent for heartbeat_interval",
      "when a feed has sent nothing for heartbeat_interval seconds, send HB with the last seq it sent "
      "(0 before the first)", tick_interval=60.0, news_interval=60.0, heartbeat_interval=0.3)
def heartbeats(ctx):
    ctx.start()
    for port, feed in ((ctx.config.price_port, "PRICE"), (ctx.config.news_port, "NEWS")):
        _, client = subscribe(ctx, port, feed)
        got = client.collect(1.5)
        beats = data(got, protocol.Heartbeat)
        if len(beats) < 2:
            raise CaseFailed(f"{len(beats)} HB on the {feed} feed in 1.5 s of silence "
                             f"(heartbeat_interval 0.3 s); got {got[:3]}")
        check_seqs(got, f"{feed} feed") if data(got, protocol.Price) or data(got, protocol.News) else None


@case(5, "several subscribers get the same ticks",
      "broadcast each line to every subscriber, in the same order", **FAST)
def same_ticks(ctx):
    ctx.start()
    clients = [subscribe(ctx, ctx.config.price_port, "PRICE") for _ in range(3)]
    if len({hello.session for hello, _ in clients}) != 1:
        raise CaseFailed("the subscribers were told different sessions")
    seen = [{m.seq: m for m in data(c.collect(1.0), protocol.Price)} for _, c in clients]
    common = set(seen[0]) & set(seen[1]) & set(seen[2])
    if len(common) < 10:
        raise CaseFailed(f"the three subscribers had only {len(common)} seqs in common in 1 s")
    for seq in sorted(common):
        if not seen[0][seq] == seen[1][seq] == seen[2][seq]:
            raise CaseFailed(f"seq {seq} differs: {seen[0][seq]} / {seen[1][seq]} / {seen[2][seq]}")


@case(6, "a subscriber that never reads does not stall the others",
      "never block on one subscriber: drop one whose unsent data grows too big (or write without "
      "waiting), and keep serving the rest", timeout=60.0, tick_interval=0.001, news_interval=1.0,
      heartbeat_interval=0.3, symbols=tuple(f"S{i:02d}" for i in range(64)))
# 64 symbols a millisecond: the stalled subscriber's socket buffers (the kernel grows a
# loopback send buffer to about 4 MB) fill within seconds, so a gateway that waits for it shows.
def slow_subscriber(ctx):
    ctx.start()
    stalled = LineClient(ctx.config.host, ctx.config.price_port, rcvbuf=4096)
    ctx.on_cleanup(stalled.close)  # never read
    _, reader = subscribe(ctx, ctx.config.price_port, "PRICE")
    last_time, longest, last_seq = time.monotonic(), 0.0, None
    end = last_time + 12.0
    while time.monotonic() < end:
        msg = reader.next(2.0)
        now = time.monotonic()
        if msg is None:
            raise CaseFailed(f"the reading subscriber got nothing for 2 s while another never read "
                             f"(last seq {last_seq})")
        if isinstance(msg, protocol.Price):
            longest, last_time, last_seq = max(longest, now - last_time), now, msg.seq
    if longest > 1.0:
        raise CaseFailed(f"the reading subscriber waited {longest:.1f} s for a tick while another "
                         "never read")
    ctx.alive()


@case(7, "a restart announces a new session in HELLO",
      "pick a new session token each time the gateway starts (e.g. secrets.token_hex(4))", **FAST)
def new_session(ctx):
    ctx.start()
    first, _ = subscribe(ctx, ctx.config.price_port, "PRICE")
    ctx.sigterm()
    ctx.start()
    second, client = subscribe(ctx, ctx.config.price_port, "PRICE")
    if second.session == first.session:
        raise CaseFailed(f"the restarted gateway announced the same session {first.session!r}")


@case(8, "SIGTERM: a clean exit (status 0) within 5 s, with subscribers connected",
      "handle SIGTERM like Ctrl-C: close the sockets and exit 0", **FAST)
def sigterm(ctx):
    both_feeds(ctx)
    ctx.sigterm()


CASES = [hello_first, prices_and_news, sequence, heartbeats, same_ticks, slow_subscriber,
         new_session, sigterm]
