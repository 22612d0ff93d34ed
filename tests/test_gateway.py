"""The gateway's pacing (`hftlab.gateway.pace`): ticks on schedule, heartbeats in silence,
nothing after it is stopped, and a failure that stops it rather than vanishing into the
event loop's log."""

import asyncio
import time

import pytest

from hftlab import gateway


class Recorded(gateway.Feed):
    """A feed with no subscribers that remembers what it published, and when."""

    def __init__(self):
        super().__init__("PRICE", "s1", log=None)
        self.sent = []

    def publish(self, data: bytes) -> None:
        super().publish(data)
        self.sent.append((time.monotonic(), data))


async def until(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


def test_pace_ticks_on_schedule_then_stops_when_cancelled():
    async def main():
        feed, made = Recorded(), []

        def make():
            made.append(len(made))
            return b"tick %d\n" % made[-1]

        start = time.monotonic()
        task = asyncio.ensure_future(gateway.pace(feed, 0.01, 10.0, make))
        await until(lambda: len(made) >= 20, 10, "20 ticks")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        stopped_at = len(feed.sent)
        await asyncio.sleep(0.05)  # five intervals: a timer left booked would tick in them
        return start, feed.sent, stopped_at

    start, sent, stopped_at = asyncio.run(main())
    assert [data for _, data in sent] == [b"tick %d\n" % i for i in range(len(sent))]  # no heartbeat: never silent
    assert len(sent) == stopped_at, "pace went on ticking after it was cancelled"
    # A fixed schedule, never early: the 20th tick is due 200 ms after the start, however
    # late a wake-up was (a late tick is followed by at most one at once, never a burst).
    assert sent[19][0] - start >= 0.2 - 0.001


def test_pace_sends_heartbeats_while_there_is_nothing_to_make():
    async def main():
        feed = Recorded()
        task = asyncio.ensure_future(gateway.pace(feed, float("inf"), 0.02, bytes))
        await until(lambda: len(feed.sent) >= 3, 10, "3 heartbeats")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return feed.sent

    sent = asyncio.run(main())
    assert all(data.startswith(b"HB,") for _, data in sent)
    apart = [b - a for (a, _), (b, _) in zip(sent, sent[1:])]
    assert min(apart) >= 0.02 - 0.002, f"a heartbeat before the feed was silent: {apart}"


def test_a_failure_to_make_a_tick_stops_pace_with_that_error():
    def make():
        raise ValueError("no prices today")

    async def main():
        await asyncio.wait_for(gateway.pace(Recorded(), 0.001, 10.0, make), 10)

    with pytest.raises(ValueError, match="no prices today"):
        asyncio.run(main())


def test_a_paused_feed_skips_its_ticks_but_keeps_its_schedule():
    async def main():
        feed, made = Recorded(), []
        feed.paused = True  # as a benchmark burst does while it owns the feed
        task = asyncio.ensure_future(gateway.pace(feed, 0.005, 10.0, lambda: made.append(1) or b"x\n"))
        await asyncio.sleep(0.05)  # ten intervals: ticks that must not be made
        skipped = len(made)
        feed.paused = False
        await until(lambda: len(made) >= 3, 10, "ticks after the pause")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return skipped

    assert asyncio.run(main()) == 0
