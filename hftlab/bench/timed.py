"""Our strategy with every hop timed, for ``hftlab bench``: one CSV row per tick it saw.

    python -m hftlab.bench.timed --latency-log latency.csv ...    (the strategy's flags)

`TimedStrategy` is `hftlab.strategy.Strategy` with its `trade` timed step by step, so that
the strategy a learner reads carries no measuring code and the bench times the same trading.
Each row holds the gateway's ts_ns, the book's written_ns, when the strategy saw the tick,
began deciding on its symbol, decided, and sent the order, all from ``time.time_ns()``, the
one clock every process on this machine shares. ``hftlab bench`` starts this module in the
strategy's place (`hftlab.launcher.Launcher.module_of`, when the config has a latency_log).
"""

from __future__ import annotations

import time

from hftlab import process, strategy

__all__ = ["LatencyLog", "TimedStrategy", "run", "main"]


class LatencyLog:
    """One CSV row per tick the strategy saw, for `hftlab bench`. Buffered: written in blocks."""

    COLUMNS = "seq,symbol,ts_ns,written_ns,seen_ns,decided_ns,order_id,missed,began_ns,sent_ns"
    BLOCK = 4096

    def __init__(self, path: str):
        self.file = open(path, "w")
        self.file.write(self.COLUMNS + "\n")
        self.rows = []

    def add(self, quote, seen_ns: int, decided_ns: int, order_id: str, missed: int, began_ns: int = 0,
            sent_ns: int = 0) -> None:
        """One tick seen: `seen_ns` when the look at the book was taken, `began_ns` when
        this symbol's decision began (later than seen_ns if another symbol of the same
        look was decided first), `decided_ns` when it was decided (0: no order), `sent_ns`
        when its look's orders were handed to the kernel in one write (0: none sent)."""
        self.rows.append(f"{quote.seq},{quote.symbol},{quote.ts_ns},{quote.written_ns},{seen_ns},"
                         f"{decided_ns},{order_id},{missed},{began_ns or seen_ns},{sent_ns}\n")
        if len(self.rows) >= self.BLOCK:
            self.flush()

    def flush(self) -> None:
        # The rows leave the buffer before they are written: SIGTERM (KeyboardInterrupt)
        # landing inside this write must not leave them here for close() to write again.
        # Duplicated rows once made the bench count more ticks seen than sent.
        rows, self.rows = self.rows, []
        self.file.write("".join(rows))
        self.file.flush()

    def close(self) -> None:
        self.flush()
        self.file.close()


class TimedStrategy(strategy.Strategy):
    """The strategy, each tick of each look at the book timed into a `LatencyLog`."""

    def __init__(self, config, log):
        if not config.latency_log:
            raise process.Fatal("the timed strategy needs --latency-log PATH (hftlab bench gives it one)")
        super().__init__(config, log)
        self.latency = LatencyLog(config.latency_log)

    def trade(self, prices: list) -> None:
        """`Strategy.trade`, step for step, with the time of each step: the timing inline
        (hooks around each step, each a call more, cost each timed hop 2-3 us; docs/
        performance.md). tests/test_bench.py holds it to the same orders as Strategy.trade."""
        orders, rows = [], []
        for quote, missed in prices:
            began_ns = time.time_ns()
            decision = self.decide(quote)
            decided_ns, order_id = 0, ""
            if decision is not None:
                decided_ns = time.time_ns()
                order_id = self.next_order_id(decision)
                if order_id:
                    orders.append((order_id, decision))
            rows.append((quote, decided_ns, order_id, missed, began_ns))
        sent_ns = self.send(orders) if orders else 0
        seen_ns = self.reader.seen_ns
        for quote, decided_ns, order_id, missed, began_ns in rows:
            self.latency.add(quote, seen_ns, decided_ns, order_id if sent_ns else "", missed, began_ns,
                             sent_ns if order_id else 0)

    def close(self) -> None:
        super().close()
        self.latency.close()


def run(config, log) -> None:
    strategy.run(config, log, TimedStrategy)


def main(argv=None) -> int:
    return process.main("strategy", "The strategy, every hop timed into --latency-log (hftlab bench).",
                        run, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
