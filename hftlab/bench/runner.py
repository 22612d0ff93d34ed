"""The runner of ``hftlab bench``: start the real processes, measure them beside the bare
baseline, and the whole run.

What is measured and how is told in `hftlab.bench` (the package's docstring); the bare
processes are `hftlab.bench.baseline`, started and measured by `hftlab.bench.bare`;
`hftlab.bench.report` turns the results into a table and histograms. Sections, in the
order `bench` runs them:

- the real system: one burst for throughput (`measure_burst`), then paced ticks for
  latency (`measure_system`), and the throughput curve of lesson 08;
- the baselines, in the same run (`hftlab.bench.bare`): the bare readers (throughput) and
  the bare four-process path (latency);
- `bench`, the whole run; `measure_journal_cost`, what an fsync costs an order.
"""

from __future__ import annotations

import csv
import os
import secrets
import tempfile
import time

from hftlab import book, net, protocol
from hftlab.bench.bare import measure_bare_reader, measure_baseline_latency
from hftlab.bench.measure import (BenchError, WAIT_S, cpu_delta, cpu_of, files_dir, machine, percentiles, ratio,
                                  start_burst, wait)
from hftlab.config import FAST, Config
from hftlab.launcher import Launcher
from hftlab.order_manager import read_journal

__all__ = ["QUICK", "DEFAULT", "TICK_INTERVAL", "NEWS_INTERVAL", "HOPS", "bench", "start_burst", "measure_burst",
           "throughput_curve", "measure_system", "measure_journal_cost", "measure_idle", "TARGETS", "targets"]

QUICK = {"ticks": 200_000, "duration": 3.0, "runs": 3, "orders": 0, "idle": 1.0}
# At least 2000 orders for the tick-to-trade percentiles: the paced window goes on (up to
# 4x its duration) until the journal holds that many of its orders.
DEFAULT = {"ticks": 1_000_000, "duration": 10.0, "runs": 3, "orders": 2000, "idle": 3.0}
# The latency phase: a tick per symbol every ms on average, 4,000 ticks/s offered for 4
# symbols (the gateway's millisecond timer delivers about 3,300: it skips, never bursts).
TICK_INTERVAL = 0.001
NEWS_INTERVAL = 0.01  # frequent news, so that the strategy trades often enough to sample
# strategy_waits: from the look at the book to this symbol's turn (behind another
# symbol's decision and send in the same look); strategy_decides: that symbol's own.
HOPS = ("gateway_to_book", "book_to_strategy", "strategy_waits", "strategy_decides", "strategy_sends",
        "order_to_om")


# -- the real system --------------------------------------------------------------------

def measure_burst(lab: Launcher, prices: book.SharedPriceBook, pids: dict | None = None) -> dict:
    """Make the running gateway (in --bench-ticks mode) send one burst; time it into the book."""
    pids = pids or {name: lab.pid(name) for name in lab.children}
    before = prices.header()
    cpu0, t0 = cpu_of(pids), time.monotonic()
    first, last, start_ns = start_burst(lab.children["gateway"])
    if first <= before["last_seq"]:
        raise BenchError(f"the burst's first seq {first} is not after the book's {before['last_seq']}: "
                         "an earlier burst would be timed again")

    def reached():
        header = prices.header()
        return header if header["last_seq"] >= last else None

    end = wait(reached, f"the book to reach seq {last}")
    seen_ns = time.time_ns()
    rec = [r for r in prices.snapshot() if int(r["seq"]) == last]
    # The burst's last tick's record says when it was written; if the paced feed has
    # overwritten it already, the time this poll noticed is the (slightly late) bound.
    end_ns = int(rec[0]["written_ns"]) if rec else seen_ns
    cpu1, t1 = cpu_of(pids), time.monotonic()
    sent = end["last_seq"] - before["last_seq"]
    return {"ticks": last - first + 1, "first_seq": first, "last_seq": last,
            "seconds": (end_ns - start_ns) / 1e9,
            "ticks_per_s": (last - first + 1) / max(end_ns - start_ns, 1) * 1e9,
            "gaps": end["gaps"] - before["gaps"],
            # Ticks the book should have written but did not: every seq must be one update.
            "lost": sent - (end["updates"] - before["updates"]),
            "cpu_cores": cpu_delta(cpu0, cpu1, t1 - t0)}


def throughput_curve(rates, ticks: int, config: Config | None = None) -> list:
    """Taken rate into the book for each offered rate (0 = as fast as possible): one
    gateway and orderbook pair per rate, one burst of `ticks` each."""
    base = (config or Config(**FAST)).replace(tick_interval=TICK_INTERVAL, bench_ticks=ticks)
    out = []
    for rate in rates:
        with Launcher(base.replace(bench_rate=float(rate)), free_ports=True,
                      names=("gateway", "orderbook")) as lab:
            prices = book.SharedPriceBook.attach(lab.config.shm_name)
            try:
                wait(lambda: prices.header()["updates"] > 0, "the first ticks in the book")
                out.append({"offered": rate, **measure_burst(lab, prices)})
            finally:
                prices.close()
    return out


def measure_system(config: Config, ticks: int, duration: float, run_dir: str, runs: int = 3,
                   min_orders: int = 0) -> dict:
    """Run the four processes: `runs` bursts for throughput, then `duration` s of paced
    ticks (longer, up to 4x, until `min_orders` orders of the window are journalled)."""
    config = config.replace(bench_ticks=ticks, latency_log=os.path.join(run_dir, "latency.csv"),
                            journal=os.path.join(run_dir, "orders.csv"))
    out = {}
    with Launcher(config, free_ports=True, run_dir=run_dir) as lab:
        prices = book.SharedPriceBook.attach(lab.config.shm_name)
        try:
            out["book_bytes"], out["book_mapped_bytes"] = prices.nbytes, prices.mapped_bytes
            out["n_symbols"] = len(prices.symbols)
            pids = {name: lab.pid(name) for name in lab.children}
            # The strategy is attached and the feed is flowing before anything is timed.
            wait(lambda: prices.header()["updates"] > 0, "the first ticks in the book")
            out.update(_throughput(_bursts(lab, prices, pids, runs)))
            seq_start, seq_end, out["paced"] = _paced_window(lab.config.journal, prices, pids, duration,
                                                             min_orders)
            out["gaps"] = prices.header()["gaps"]
            out["run_cpu_s"] = {name: round(v, 3) for name, v in cpu_of(pids).items() if v is not None}
        finally:
            prices.close()
        lab.stop()  # the strategy first: its latency log is complete once it has exited
        out.update(_system_latency(lab.config, seq_start, seq_end, out["paced"]["seconds"]))
    return out


def _bursts(lab: Launcher, prices: book.SharedPriceBook, pids: dict, runs: int) -> list:
    """The throughput phase: `runs` bursts one after the other, each timed by `measure_burst`."""
    bursts = []
    for _ in range(runs):
        bursts.append(measure_burst(lab, prices, pids))
        end = prices.header()
        # The paced feed resumes after the burst's quiet time: the next burst (or
        # the paced phase) starts from a gateway that takes a SIGUSR1 again.
        wait(lambda: prices.header()["last_seq"] > end["last_seq"], "the paced feed to resume")
    return bursts


def _throughput(bursts: list) -> dict:
    """The bursts summed up: min/median/max ("throughput_runs"); the figure is the median run,
    and "burst" is that run in full."""
    rates = sorted(b["ticks_per_s"] for b in bursts)
    runs = {"ticks_per_s": [b["ticks_per_s"] for b in bursts], "n": len(bursts),
            "min": rates[0], "median": rates[len(rates) // 2], "max": rates[-1],
            "gaps": sum(b["gaps"] for b in bursts),
            "lost": sum(b["lost"] for b in bursts),
            "seqs": [[b["first_seq"], b["last_seq"]] for b in bursts]}
    return {"throughput_runs": runs,
            "burst": next(b for b in bursts if b["ticks_per_s"] == runs["median"]),
            "throughput_ticks_per_s": runs["median"]}


def _paced_window(journal_path: str, prices: book.SharedPriceBook, pids: dict, duration: float,
                  min_orders: int) -> tuple:
    """The latency phase: `duration` s of paced ticks, longer (up to 4x) until `min_orders`
    orders were journalled in it. (seq_start, seq_end, {"cpu_cores", "seconds"})."""
    # The window is the seqs the book wrote during it (seq_start, seq_end]: rows
    # are chosen by the feed's own numbers, never by wall-clock time.
    with open(journal_path, "rb") as journal:
        journal.seek(0, os.SEEK_END)
        cpu2, t2, lat_start = cpu_of(pids), time.monotonic(), time.time_ns()
        seq_start = prices.header()["last_seq"]
        time.sleep(duration)  # the measurement window itself, not a wait for a condition
        if min_orders:        # a longer window until enough orders, at most 4x
            deadline = time.monotonic() + 3 * duration
            # Counted from the rows appended since the window began, reading only the new
            # bytes: parsing the whole journal competed with the four processes measured
            # (docs/performance.md, "The bench no longer competes with what it measures").
            rows = 0
            while time.monotonic() < deadline:
                rows += journal.read().count(b"\n")
                if rows >= min_orders:
                    break
                time.sleep(0.5)  # inside the measurement window: it goes on until the count
    seq_end = prices.header()["last_seq"]
    lat_end = time.time_ns()
    cpu3, t3 = cpu_of(pids), time.monotonic()
    paced = {"cpu_cores": cpu_delta(cpu2, cpu3, t3 - t2), "seconds": (lat_end - lat_start) / 1e9}
    return seq_start, seq_end, paced


def _system_latency(config: Config, seq_start: int, seq_end: int, seconds: float) -> dict:
    """The paced window's hops from the strategy's latency log and the journal: the ticks
    of seqs (seq_start, seq_end], and the orders the strategy sent on those ticks."""
    with open(config.latency_log) as f:
        # A row cut short by the strategy's stop (the last line, if any) has empty fields.
        rows = [r for r in csv.DictReader(f) if None not in r.values()]
    journal = read_journal(config.journal)
    by_order = {r["order_id"]: r for r in rows if r["order_id"]}
    window = [r for r in rows if seq_start < int(r["seq"]) <= seq_end]
    orders = _orders_in_window(journal, by_order, seq_start, seq_end)
    t2t, per_order = _order_hops(orders)
    hops = _tick_hops(window)
    hops["strategy_sends"] = list(per_order["strategy_sends"])
    hops["order_to_om"] = list(per_order["order_to_om"])
    sent = seq_end - seq_start
    return {
        "samples_ns": {**hops, "tick_to_trade": t2t, "per_order": per_order},
        "hops_us": {h: percentiles(v) for h, v in hops.items()},
        "tick_to_trade_us": percentiles(t2t),
        "paced_ticks_per_s": sent / max(seconds, 1e-9),
        "strategy": {
            "rows": len(rows), "ticks_seen": len(window), "ticks_sent": sent,
            "ticks_missed": sum(int(r["missed"]) for r in window),
            "orders_logged": len(by_order), "orders_journaled": len(journal),
            "orders_in_window": len(orders),
            "journaled_and_logged": sum(1 for o in journal if o["order_id"] in by_order)},
    }


def _tick_hops(window: list) -> dict:
    """HOPS -> samples (ns) of each tick of the window: into the book, to the strategy, and
    for a tick it sent an order on, its wait for its turn and its decision."""
    hops = {h: [] for h in HOPS}
    for r in window:
        hops["gateway_to_book"].append(int(r["written_ns"]) - int(r["ts_ns"]))
        hops["book_to_strategy"].append(int(r["seen_ns"]) - int(r["written_ns"]))
        if r["order_id"]:
            hops["strategy_waits"].append(int(r["began_ns"]) - int(r["seen_ns"]))
            hops["strategy_decides"].append(int(r["decided_ns"]) - int(r["began_ns"]))
    return hops


def _orders_in_window(journal: list, by_order: dict, seq_start: int, seq_end: int) -> list:
    """(journal row, latency-log row) of each journalled order sent on a tick of the window."""
    logged = ((o, by_order.get(o["order_id"])) for o in journal)
    return [(o, r) for o, r in logged if r is not None and seq_start < int(r["seq"]) <= seq_end]


def _order_hops(orders: list) -> tuple:
    """(tick-to-trade of each order, HOPS -> that order's hops): the same hops for each order
    alone, aligned, so that per order they add up exactly to its tick-to-trade (where each
    microsecond of it went)."""
    per_order = {h: [] for h in HOPS}
    t2t = []
    for o, r in orders:
        recv = int(o["recv_ns"])
        t2t.append(recv - int(o["tick_ts_ns"]))
        ts, written, seen, began, decided, sent = (int(r[k]) for k in (
            "ts_ns", "written_ns", "seen_ns", "began_ns", "decided_ns", "sent_ns"))
        for h, v in zip(HOPS, (written - ts, seen - written, began - seen, decided - began,
                               sent - decided, recv - sent)):
            per_order[h].append(v)
    return t2t, per_order


def measure_idle(config: Config, seconds: float, run_dir: str) -> dict:
    """CPU per process (cores) of the four processes while no tick flows: a gateway
    whose feeds only send their heartbeats, the book attached, the strategy asleep."""
    quiet = config.replace(tick_interval=3600.0, news_interval=3600.0)
    with Launcher(quiet, free_ports=True, run_dir=run_dir) as lab:
        pids = {name: lab.pid(name) for name in lab.children}
        with book.SharedPriceBook.attach(lab.config.shm_name) as price_book:  # a fact, not a log line
            if config.doorbell:
                wait(lambda: price_book.header()["sleepers"], "the strategy to sleep on the book's doorbell")
        cpu0, t0 = cpu_of(pids), time.monotonic()
        time.sleep(seconds)  # the measurement window itself, not a wait for a condition
        cpu1, t1 = cpu_of(pids), time.monotonic()
    return cpu_delta(cpu0, cpu1, t1 - t0)


# -- the whole benchmark -------------------------------------------------------------------

# The targets, as ratios within one run (printed beside the figures by the report;
# a test never asserts them: they depend on the machine and its load).
TARGETS = {
    "tick_to_trade_p50": "tick-to-trade p50 <= 2x the floor's p50",
    "tick_to_trade_p99": "tick-to-trade p99 <= 2x the floor's p99",
    "idle_cpu": "each process <= 0.1 core while no tick flows",
    "throughput": "throughput >= 0.75x the fair baseline",
    "gaps": "0 gaps",
    "lost": "0 lost",
}


def targets(r: dict) -> dict:
    """name -> {"target", "figure", "met"} for each of TARGETS, from bench results
    (`met` None where a figure is missing, e.g. CPU off Linux)."""
    def check(figure, met):
        return {"figure": figure, "met": None if figure is None else met}

    t2t, floor = r["tick_to_trade_us"], r["floor_tick_to_trade_us"]
    idle = [v for v in r["cpu_idle_cores"]["idle"].values() if v is not None]
    out = {
        "tick_to_trade_p50": check(ratio(t2t["p50"], floor["p50"]), (ratio(t2t["p50"], floor["p50"]) or 0) <= 2),
        "tick_to_trade_p99": check(ratio(t2t["p99"], floor["p99"]), (ratio(t2t["p99"], floor["p99"]) or 0) <= 2),
        "idle_cpu": check(max(idle) if idle else None, bool(idle) and max(idle) <= 0.1),
        "throughput": check(r["ratios"]["throughput_vs_fair"], r["ratios"]["throughput_vs_fair"] >= 0.75),
        "gaps": check(r["gaps"] + r["throughput_runs"]["gaps"], r["gaps"] + r["throughput_runs"]["gaps"] == 0),
        "lost": check(r["throughput_runs"]["lost"], r["throughput_runs"]["lost"] == 0),
    }
    return {name: {"target": TARGETS[name], **v} for name, v in out.items()}


def bench(quick: bool = False, ticks: int | None = None, duration: float | None = None,
          tick_interval: float = TICK_INTERVAL, poll_interval: float | None = None,
          say=print, files_in: str | None = None) -> dict:
    """Measure everything once; return the results as a dict (the --json content).

    The processes' files (journal, logs) go in a fresh folder under `files_in`, by
    default `files_dir()`: in RAM where there is one."""
    preset = QUICK if quick else DEFAULT
    ticks = ticks or preset["ticks"]
    duration = duration or preset["duration"]
    config = Config(**FAST).replace(tick_interval=tick_interval, news_interval=NEWS_INTERVAL)
    if poll_interval is not None:
        config = config.replace(poll_interval=poll_interval)
    results = {"machine": machine(), "clock": "time.time_ns(), one machine",
               "ticks": ticks, "duration_s": duration, "tick_interval_s": tick_interval,
               "poll_interval_s": config.poll_interval, "doorbell": config.doorbell,
               "min_orders": preset["orders"], "files_in": files_in or files_dir()}
    with tempfile.TemporaryDirectory(prefix="hftlab-bench-", dir=results["files_in"]) as tmp:
        results["run_folder"] = tmp  # removed with everything in it when the run ends
        system, idle = _measure_hftlab(config, preset, ticks, duration, tmp, say)
        bare, base, polled = _measure_baselines(config, system["n_symbols"], ticks, duration, tmp, say)
    # The raw samples (nanoseconds) are for plots; they stay out of the JSON.
    results["samples_ns"] = {"hftlab": system.pop("samples_ns"), "baseline": base.pop("samples_ns")}
    results.update(system)
    results["cpu_idle_cores"] = {"idle": idle, "paced": system["paced"]["cpu_cores"],
                                 "source": "/proc/PID/task/*/schedstat (ns)" if cpu_of({"me": os.getpid()})["me"]
                                 is not None else "n/a on this system"}
    results.update(_baseline_figures(bare, base, polled))
    results["ratios"] = _ratios(results)
    results["targets"] = targets(results)
    return results


def _measure_hftlab(config: Config, preset: dict, ticks: int, duration: float, tmp: str, say) -> tuple:
    """The four processes: bursts then the paced window (`measure_system`), then idle."""
    say(f"hftlab bench: the four processes, {preset['runs']} bursts of {ticks:,} ticks, then "
        f"{duration:g} s paced"
        + (f" (or until {preset['orders']} orders)" if preset["orders"] else "") + " ...")
    system = measure_system(config, ticks, duration, os.path.join(tmp, "system"), preset["runs"],
                            preset["orders"])
    say(f"hftlab bench: the four processes idle for {preset['idle']:g} s ...")
    idle = measure_idle(config, preset["idle"], os.path.join(tmp, "idle"))
    return system, idle


def _measure_baselines(config: Config, n_symbols: int, ticks: int, duration: float, tmp: str, say) -> tuple:
    """The bare readers, then the bare path twice: waiting as the strategy waits (the
    floor), and polling every poll interval."""
    say("hftlab bench: the bare readers (the stream's ceiling, the fair baseline) ...")
    bare = measure_bare_reader(config, ticks, os.path.join(tmp, "bare"))
    say("hftlab bench: the bare latency baseline (the floor), waiting as the strategy waits ...")
    base = measure_baseline_latency(n_symbols, config.tick_interval, config.poll_interval, duration,
                                    tmp, doorbell=config.doorbell)
    say(f"hftlab bench: the bare latency baseline polling every {config.poll_interval * 1e3:g} ms ...")
    polled = measure_baseline_latency(n_symbols, config.tick_interval, config.poll_interval, duration,
                                      tmp, doorbell=False)
    return bare, base, polled


def _baseline_figures(bare: dict, base: dict, polled: dict) -> dict:
    """The baselines' figures under their names in the results (`base` without its samples)."""
    out = {}
    # The line splitter: the rate of the stream itself, which no reader of it can beat.
    out["stream_ceiling_ticks_per_s"] = bare["reader"]["throughput_ticks_per_s"]
    out["baseline_throughput_ticks_per_s"] = out["stream_ceiling_ticks_per_s"]  # its older name
    # The fair baseline: the same work per tick as the book's, bare.
    out["fair_baseline_throughput_ticks_per_s"] = bare["fair_reader"]["throughput_ticks_per_s"]
    out["baseline_tick_to_trade_us"] = base.pop("tick_to_trade_us")
    # The floor: the bare four-process path waiting the way the strategy waits (the same run).
    out["floor_tick_to_trade_us"] = out["baseline_tick_to_trade_us"]
    polled.pop("samples_ns")
    out["poll_floor_tick_to_trade_us"] = polled["tick_to_trade_us"]
    out["poll_floor_cpu_cores"] = polled["cpu_cores"]
    out["baseline"] = base
    return out


def _ratios(results: dict) -> dict:
    """hftlab's figures over the baselines' (throughput, tick-to-trade p50 and p99)."""
    return {
        "throughput": results["throughput_ticks_per_s"] / results["stream_ceiling_ticks_per_s"],
        "throughput_vs_fair": round(results["throughput_ticks_per_s"]
                                    / results["fair_baseline_throughput_ticks_per_s"], 2),
        "tick_to_trade_p50": ratio(results["tick_to_trade_us"]["p50"],
                                   results["baseline_tick_to_trade_us"]["p50"]),
        "tick_to_trade_p99": ratio(results["tick_to_trade_us"]["p99"],
                                   results["baseline_tick_to_trade_us"]["p99"]),
    }


def measure_journal_cost(orders: int, directory: str) -> dict:
    """The order round trip (ORDER sent to ACK read) with the journal fsynced or not.

    One order manager per setting, its journal in `directory` (the disk to judge), one
    client sending `orders` orders one at a time. Returns {"off": percentiles, "on": ...}
    and the same in "per_order_us": the p50 difference is what an fsync costs an order."""
    out = {}
    for fsync in (False, True):
        path = os.path.join(directory, f"journal-cost-{secrets.token_hex(4)}.csv")
        config = Config(journal=path, fsync=fsync)
        try:
            with Launcher(config, free_ports=True, names=["order_manager"]) as lab:
                sock = net.dial(lab.config.host, lab.config.order_port, timeout=WAIT_S)
                decoder, times = protocol.Decoder(), []
                with sock:
                    for i in range(orders):
                        line = protocol.encode(protocol.Order(f"j{i}", 0, "BUY", 1, config.symbols[0], 100.0))
                        t0 = time.perf_counter_ns()
                        sock.sendall(line)
                        replies = []
                        while not replies:
                            data = sock.recv(4096)
                            if not data:
                                raise BenchError("the order manager closed the connection")
                            replies = decoder.feed(data)
                        times.append(time.perf_counter_ns() - t0)
                        if not isinstance(replies[0], protocol.Ack):
                            raise BenchError(f"order {i} was not ACKed: {replies[0]}")
        finally:
            if os.path.exists(path):
                os.remove(path)
        out["on" if fsync else "off"] = percentiles(times)
    return out
