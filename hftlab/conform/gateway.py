"""The gateway's cases: the harness subscribes to its two feeds and checks what arrives.

Run with a fast cadence (a tick every 50 ms, news every 100 ms, heartbeats after 0.3 s of
silence) so that every case takes a few seconds.
"""

from __future__ import annotations

import time

from hftlab import protocol
from hftlab.conform.harness import CaseFailed, case, only_loopback

__all__ = ["ROLE", "FAST", "HINT_HELLO", "CASES", "stall_proof_bytes"]

ROLE = "gateway"
FAST = dict(tick_interval=0.05, news_interval=0.1, heartbeat_interval=0.3)
HINT_HELLO = ("send encode(Hello('PRICE', session)) to each new price subscriber (and 'NEWS' on the news port) "
              "before anything else")


def subscribe(ctx, port: int, feed: str) -> tuple:
    """Connect; the HELLO line and the client. CaseFailed if the first line is not HELLO."""
    client = ctx.client(port, f"{feed.lower()} port")
    first = client.next(3.0)
    if not isinstance(first, protocol.Hello) or first.feed != feed:
        raise CaseFailed(f"the first line on the {feed} port was {first!r}, not HELLO,{feed},<session>",
                         hint=HINT_HELLO)
    return first, client


def both_feeds(ctx):
    """Start the gateway and subscribe to its two feeds: ((hello, client) of PRICE, of NEWS)."""
    ctx.start()
    return subscribe(ctx, ctx.config.price_port, "PRICE"), subscribe(ctx, ctx.config.news_port, "NEWS")


def data(msgs, kind):
    return [m for m in msgs if isinstance(m, kind)]


@case(ROLE, 1, "HELLO,<feed>,<session> is the first line on each feed", HINT_HELLO, **FAST)
def hello_first(ctx):
    (price, _), (news, _) = both_feeds(ctx)
    if price.session != news.session:
        raise CaseFailed(f"the feeds name different sessions: {price.session!r} and {news.session!r}")


@case(ROLE, 2, "PRICE lines for every symbol (price above 0); NEWS lines with a sentiment 0..100",
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


@case(ROLE, 3, "sequence numbers increase by one on each feed; HB carries the last seq",
      "one counter per feed, +1 for every PRICE (or NEWS) line, never for HB", **FAST)
def sequence(ctx):
    (_, price), (_, news) = both_feeds(ctx)
    check_seqs(price.collect(1.0), "price feed")
    check_seqs(news.collect(0.8), "news feed")


def check_quiet_beats(got, feed):
    """HB lines on a feed that sends no data: at least 2 in the window, and all with the same
    last_seq (a heartbeat does not use up a seq); with data, the seqs as in case 3."""
    beats = data(got, protocol.Heartbeat)
    if len(beats) < 2:
        raise CaseFailed(f"{len(beats)} HB on the {feed} feed in 1.5 s of silence "
                         f"(heartbeat_interval 0.3 s); got {got[:3]}")
    if data(got, protocol.Price) or data(got, protocol.News):
        check_seqs(got, f"{feed} feed")
    elif len({b.last_seq for b in beats}) > 1:
        raise CaseFailed(f"with no {feed} line sent, its HB lines said last_seq "
                         f"{', '.join(str(b.last_seq) for b in beats[:4])}: a heartbeat used up a seq")


@case(ROLE, 4, "HB,<last_seq>,<ts_ns> on a feed that has been silent for heartbeat_interval",
      "when a feed has sent nothing for heartbeat_interval seconds, send HB with the last seq it sent "
      "(0 before the first); a heartbeat does not use up a seq", tick_interval=60.0, news_interval=60.0,
      heartbeat_interval=0.3)
def heartbeats(ctx):
    ctx.start()
    for port, feed in ((ctx.config.price_port, "PRICE"), (ctx.config.news_port, "NEWS")):
        _, client = subscribe(ctx, port, feed)
        check_quiet_beats(client.collect(1.5), feed)


@case(ROLE, 5, "several subscribers get the same ticks",
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


def _sysctl(path: str, word: int, default: int) -> int:
    try:
        with open(path) as f:
            return int(f.read().split()[word])
    except (OSError, ValueError, IndexError):
        return default


def stall_proof_bytes() -> int:
    """How many bytes a subscriber must have been sent before a gateway that waits for a
    subscriber that never reads is sure to be stuck: more than that one's socket buffers can
    hold (the kernel's largest send buffer, the stalled reader's small receive buffer), with room."""
    largest_send = max(_sysctl("/proc/sys/net/ipv4/tcp_wmem", 2, 8 << 20),
                       2 * _sysctl("/proc/sys/net/core/wmem_max", 0, 4 << 20))
    return largest_send + (1 << 20)


@case(ROLE, 6, "a subscriber that never reads does not stall the others",
      "never block on one subscriber: drop one whose unsent data grows too big (or write without "
      "waiting), and keep serving the rest", timeout=60.0, tick_interval=0.001, news_interval=1.0,
      heartbeat_interval=0.3, symbols=tuple(f"S{i:02d}" for i in range(64)))
# 64 symbols a millisecond. The reading subscriber must get more bytes than the stalled one's
# socket buffers can hold (`stall_proof_bytes`): by then a gateway that waits for the stalled
# one is stuck, whatever the machine's speed, and the reader sees its ticks stop.
def slow_subscriber(ctx):
    ctx.start()
    stalled = ctx.client(ctx.config.price_port, "price port", rcvbuf=4096)  # never read
    _, reader = subscribe(ctx, ctx.config.price_port, "PRICE")
    need = stall_proof_bytes()
    last_time, longest, last_seq = time.monotonic(), 0.0, None
    end = last_time + 40.0
    while reader.received < need:
        msg = reader.next(2.0)
        now = time.monotonic()
        if msg is None:
            raise CaseFailed(f"the reading subscriber got nothing for 2 s while another never read "
                             f"(last seq {last_seq}, {reader.received >> 10} KiB in all)")
        if isinstance(msg, protocol.Price):
            longest, last_time, last_seq = max(longest, now - last_time), now, msg.seq
        if now > end:
            raise CaseFailed(f"in 40 s the reading subscriber got only {reader.received >> 20} MiB "
                             f"(64 symbols every 1 ms would be over 100 MiB); {need >> 20} MiB are needed to "
                             "show that a subscriber that never reads stalls no one")
    if longest > 1.0:
        raise CaseFailed(f"the reading subscriber waited {longest:.1f} s for a tick while another "
                         "never read")
    stalled.close()
    ctx.alive()


@case(ROLE, 7, "a restart announces a new session in HELLO",
      "pick a new session token each time the gateway starts (e.g. secrets.token_hex(4))", **FAST)
def new_session(ctx):
    ctx.start()
    first, _ = subscribe(ctx, ctx.config.price_port, "PRICE")
    ctx.sigterm()
    ctx.start()
    second, _ = subscribe(ctx, ctx.config.price_port, "PRICE")
    if second.session == first.session:
        raise CaseFailed(f"the restarted gateway announced the same session {first.session!r}")


@case(ROLE, 8, "SIGTERM: a clean exit (status 0) within 5 s, with subscribers connected",
      "handle SIGTERM like Ctrl-C: close the sockets and exit 0", **FAST)
def sigterm(ctx):
    both_feeds(ctx)
    ctx.sigterm()


@case(ROLE, 9, "it listens on HOST (127.0.0.1) only, never on every address",
      "bind HOST only (--host, HFTLAB_HOST: 127.0.0.1), never 0.0.0.0 or '': the feeds have no "
      "authentication", **FAST)
def loopback_only(ctx):
    ctx.start()
    only_loopback(ctx, {"price port": ctx.config.price_port, "news port": ctx.config.news_port})


CASES = [hello_first, prices_and_news, sequence, heartbeats, same_ticks, slow_subscriber,
         new_session, sigterm, loopback_only]
