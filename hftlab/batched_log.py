"""Log lines written in batches, at most `every` seconds apart, each stamped with the time it
was said: the strategy's log, kept off its orders' path.

Nearly every line the strategy logs is about an order (why it was sent, its ACK). Written as
they were said, a log write came right after most orders, on the CPU the order manager the
order had just woken was waiting for, and it cost the next orders their latency. So a line
said is only noted, with its time (and an order's line with the time the order was sent),
and the notes are written together every `every` seconds; the figures are in
docs/performance.md, "round 4".

    said = BatchedLog(log, every=0.1)
    said.info("BUY 10 AAPL ...", at_ns=sent_ns)
    ready = selector.select(said.timeout(0.25))   # wake in time for the next batch
    said.write_if_due()
"""

from __future__ import annotations

import logging
import time

__all__ = ["BatchedLog"]


class BatchedLog:
    """Say lines now, write them later: `write_if_due` every `every` s, `write` at the end."""

    def __init__(self, log: logging.Logger, every: float = 0.1):
        self.log, self.every = log, every
        self.held = []          # [(time_ns, level, text), ...]: said, not yet written
        self.held_since = 0.0   # monotonic time the oldest of them was said

    def say(self, level: int, text: str, at_ns: int = 0) -> None:
        """Note a line said now (or at `at_ns`, a time.time_ns()), for the next batch."""
        if not self.held:
            self.held_since = time.monotonic()
        self.held.append((at_ns or time.time_ns(), level, text))

    def info(self, text: str, at_ns: int = 0) -> None:
        self.say(logging.INFO, text, at_ns)

    def warning(self, text: str, at_ns: int = 0) -> None:
        self.say(logging.WARNING, text, at_ns)

    def timeout(self, timeout: float) -> float:
        """`timeout`, shortened if the next batch is due sooner: for the caller's select()."""
        if not self.held:
            return timeout
        return max(0.0, min(timeout, self.held_since + self.every - time.monotonic()))

    def write_if_due(self) -> None:
        if self.held and time.monotonic() - self.held_since >= self.every:
            self.write()

    def write(self) -> None:
        """Write every line held, in order, each stamped with the time it was said."""
        held, self.held = self.held, []
        for said_ns, level, text in held:
            if self.log.isEnabledFor(level):
                record = self.log.makeRecord(self.log.name, level, __file__, 0, text, None, None)
                record.created, record.msecs = said_ns / 1e9, (said_ns % 1_000_000_000) // 1_000_000
                self.log.handle(record)
