"""The gateway with bursts on demand, for ``hftlab bench``: how fast the consumers go.

    python -m hftlab.bench.burst --bench-ticks N [--bench-rate R] ...   (the gateway's flags)

Each SIGUSR1 makes the price feed send a burst of N ticks in large writes, as fast as the
subscribers take them (or at R ticks a second), waiting for the slowest instead of dropping
it, so a burst measures how fast the consumers go without losing a tick. The paced feed
holds still during a burst (`hftlab.gateway.Feed.paused`). The burst replays a precomputed
cycle of the seeded walk, so that the gateway spends its time formatting and sending, not
drawing random numbers. Between bursts, the paced ticks come at random (exponential,
seeded) intervals of mean ``tick_interval``, as real ticks do: a feed ticking every 1 ms
and a strategy polling every 1 ms keep nearly the same phase for seconds, and a latency
measured then would be that phase, not the system. ``hftlab bench`` starts this module in
the gateway's place (`hftlab.launcher.Launcher.module_of`, when the config has bench_ticks).
"""

from __future__ import annotations

import asyncio
import random
import re
import signal
import time

from hftlab import gateway, process

__all__ = ["BENCH_BATCH", "BENCH_CYCLE", "BURST_QUIET", "bench_tails", "burst_line", "parse_burst_line",
           "burst", "Bursts", "run", "main"]

BENCH_BATCH = 4096  # ticks per write in a benchmark burst (about 160 KB)
BENCH_CYCLE = 4096  # walk steps precomputed for bursts
BURST_QUIET = 0.2  # seconds the paced feed stays still after a burst: the book then shows its end


def bench_tails(symbols, seed: int, steps: int = BENCH_CYCLE) -> list:
    """The seeded walk's first `steps` steps as `price_tails`."""
    walk = gateway.PriceWalk(symbols, seed)
    return [tail for _ in range(steps) for tail in gateway.price_tails(walk.step())]


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


async def burst(feed: gateway.Feed, n: int, rate: float, tails: list, log) -> None:
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
            feed.publish(gateway.price_lines(feed.seq + 1, ts, ring[k:k + m]))
            feed.seq, k = feed.seq + m, (k + m) % cycle
            await feed.drain()
            if rate:
                await asyncio.sleep(max(0.0, start + (feed.seq - first + 1) / rate - loop.time()))
            ts = time.time_ns()
        took = max(ts - t0, 1)
        log.info(f"bench: burst sent in {took / 1e9:.3f} s ({n / took * 1e9:,.0f} ticks/s offered "
                 f"and taken by {len(feed.subscribers)} subscriber(s))")
        await asyncio.sleep(BURST_QUIET)
    finally:
        feed.paused = False


class Bursts:
    """A burst on each SIGUSR1, one at a time: `install` is the gateway's `setup` (before its
    ready line, so that a SIGUSR1 never finds no handler); what it returns cancels a burst
    still running."""

    def __init__(self, config, log):
        self.config, self.log = config, log
        self.tails = bench_tails(config.symbols, config.seed)
        self.task = None

    def install(self, prices: gateway.Feed):
        def on_sigusr1():
            if self.task is not None and not self.task.done():
                self.log.warning("bench: a burst is still running; SIGUSR1 ignored")
                return
            self.task = asyncio.ensure_future(
                burst(prices, self.config.bench_ticks, self.config.bench_rate, self.tails, self.log))

        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, on_sigusr1)
        return self.cancel

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()


def run(config, log) -> None:
    if not config.bench_ticks:
        raise process.Fatal("the benchmark gateway needs --bench-ticks N (hftlab bench gives it)")
    bursts = Bursts(config, log)
    asyncio.run(gateway.serve(config, log, gaps=random.Random(config.seed + 2), setup=bursts.install))


def main(argv=None) -> int:
    return process.main("gateway", "The gateway, with a burst of --bench-ticks on each SIGUSR1 (hftlab bench).",
                        run, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
