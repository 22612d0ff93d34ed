"""The runner of ``hftlab bench``: start the real processes and the bare baseline, measure.

What is measured and how is told in `hftlab.bench` (the package's docstring); the bare
processes are `hftlab.bench.baseline`; `hftlab.bench.report` turns the results into a
table and histograms. Sections, in the order `bench` runs them:

- the real system: one burst for throughput (`measure_burst`), then paced ticks for
  latency (`measure_system`), and the throughput curve of lesson 08;
- the baselines, in the same run: the bare reader (throughput) and the bare four-process
  path (latency), each started as `Role` processes;
- `bench`, the whole run; `measure_journal_cost`, what an fsync costs an order.
"""

from __future__ import annotations

import csv
import json
import os
import queue
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time

from hftlab import book, children, net, protocol
from hftlab.bench import burst
from hftlab.bench.measure import (BenchError, WAIT_S, cpu_delta, cpu_of, files_dir, machine, percentiles, ratio,
                                  wait)
from hftlab.config import FAST, Config
from hftlab.launcher import Launcher
from hftlab.order_manager import read_journal

__all__ = ["QUICK", "DEFAULT", "TICK_INTERVAL", "NEWS_INTERVAL", "HOPS", "BASELINE_HOPS", "Role",
           "bench", "start_burst", "measure_burst", "throughput_curve", "measure_system",
           "measure_bare_reader", "measure_baseline_latency", "measure_journal_cost", "measure_idle", "TARGETS",
           "targets"]

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
BASELINE_HOPS = ("source_to_shm", "shm_to_poller", "poller_to_sink")


def start_burst(child) -> tuple:
    """Make a gateway in --bench-ticks mode send a burst: (first seq, last seq, first ts_ns).

    Read from the gateway's own burst line (`hftlab.bench.burst.burst_line`), looked for only
    in what it logs after the SIGUSR1, so that each burst is timed by its own line. A
    gateway still in its previous burst (or that burst's quiet time) ignores a SIGUSR1 and
    says so: the signal is sent again then, so a second burst is never lost or mistaken."""
    offset = os.path.getsize(child.log_path)

    def started():
        nonlocal offset
        lines, offset = children.new_lines(child.log_path, offset)
        if any("SIGUSR1 ignored" in line for line in lines):
            os.kill(child.pid, signal.SIGUSR1)
        return next(filter(None, map(burst.parse_burst_line, lines)), None)

    os.kill(child.pid, signal.SIGUSR1)
    return wait(started, "the gateway to start the burst (is it in --bench-ticks mode?)")


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
            bursts = []
            for _ in range(runs):
                bursts.append(measure_burst(lab, prices, pids))
                end = prices.header()
                # The paced feed resumes after the burst's quiet time: the next burst (or
                # the paced phase) starts from a gateway that takes a SIGUSR1 again.
                wait(lambda: prices.header()["last_seq"] > end["last_seq"], "the paced feed to resume")
            rates = sorted(b["ticks_per_s"] for b in bursts)
            out["throughput_runs"] = {"ticks_per_s": [b["ticks_per_s"] for b in bursts], "n": len(bursts),
                                      "min": rates[0], "median": rates[len(rates) // 2], "max": rates[-1],
                                      "gaps": sum(b["gaps"] for b in bursts),
                                      "lost": sum(b["lost"] for b in bursts),
                                      "seqs": [[b["first_seq"], b["last_seq"]] for b in bursts]}
            # The figure is the median run; "burst" is that run in full.
            out["burst"] = next(b for b in bursts if b["ticks_per_s"] == out["throughput_runs"]["median"])
            out["throughput_ticks_per_s"] = out["throughput_runs"]["median"]
            # The window is the seqs the book wrote during it (seq_start, seq_end]: rows
            # are chosen by the feed's own numbers, never by wall-clock time.
            with open(lab.config.journal, "rb") as journal:
                journal.seek(0, os.SEEK_END)
                cpu2, t2, lat_start = cpu_of(pids), time.monotonic(), time.time_ns()
                seq_start = prices.header()["last_seq"]
                time.sleep(duration)  # the measurement window itself, not a wait for a condition
                if min_orders:        # a longer window until enough orders, at most 4x
                    deadline = time.monotonic() + 3 * duration
                    # Counted from the rows appended since the window began, reading only the
                    # new bytes: parsing the whole journal every half second made this process
                    # compete with the four it measures (tick-to-trade p99 870 us while it
                    # polled, 687 before, in one run).
                    rows = 0
                    while time.monotonic() < deadline:
                        rows += journal.read().count(b"\n")
                        if rows >= min_orders:
                            break
                        time.sleep(0.5)  # inside the measurement window: it goes on until the count
            seq_end = prices.header()["last_seq"]
            lat_end = time.time_ns()
            cpu3, t3 = cpu_of(pids), time.monotonic()
            out["paced"] = {"cpu_cores": cpu_delta(cpu2, cpu3, t3 - t2), "seconds": (lat_end - lat_start) / 1e9}
            out["gaps"] = prices.header()["gaps"]
            out["run_cpu_s"] = {name: round(v, 3) for name, v in cpu_of(pids).items() if v is not None}
        finally:
            prices.close()
        lab.stop()  # the strategy first: its latency log is complete once it has exited
        out.update(_system_latency(lab.config, seq_start, seq_end, (lat_end - lat_start) / 1e9))
    return out


def _system_latency(config: Config, seq_start: int, seq_end: int, seconds: float) -> dict:
    """The paced window's hops from the strategy's latency log and the journal: the ticks
    of seqs (seq_start, seq_end], and the orders the strategy sent on those ticks."""
    with open(config.latency_log) as f:
        # A row cut short by the strategy's stop (the last line, if any) has empty fields.
        rows = [r for r in csv.DictReader(f) if None not in r.values()]
    journal = read_journal(config.journal)
    by_order = {r["order_id"]: r for r in rows if r["order_id"]}
    window = [r for r in rows if seq_start < int(r["seq"]) <= seq_end]
    hops = {h: [] for h in HOPS}
    # The same hops for each order alone, aligned: per order they add up exactly to its
    # tick-to-trade (where each microsecond of it went).
    per_order = {h: [] for h in HOPS}
    t2t, orders = [], 0
    for r in window:
        hops["gateway_to_book"].append(int(r["written_ns"]) - int(r["ts_ns"]))
        hops["book_to_strategy"].append(int(r["seen_ns"]) - int(r["written_ns"]))
        if r["order_id"]:
            hops["strategy_waits"].append(int(r["began_ns"]) - int(r["seen_ns"]))
            hops["strategy_decides"].append(int(r["decided_ns"]) - int(r["began_ns"]))
    for o in journal:
        r = by_order.get(o["order_id"])
        if r is not None and seq_start < int(r["seq"]) <= seq_end:
            orders += 1
            t2t.append(int(o["recv_ns"]) - int(o["tick_ts_ns"]))
            ts, written, seen, began, decided, sent = (int(r[k]) for k in (
                "ts_ns", "written_ns", "seen_ns", "began_ns", "decided_ns", "sent_ns"))
            hops["strategy_sends"].append(sent - decided)
            hops["order_to_om"].append(int(o["recv_ns"]) - sent)
            for h, v in zip(HOPS, (written - ts, seen - written, began - seen, decided - began,
                                   sent - decided, int(o["recv_ns"]) - sent)):
                per_order[h].append(v)
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
            "orders_in_window": orders,
            "journaled_and_logged": sum(1 for o in journal if o["order_id"] in by_order)},
    }


# -- the baselines, in the same run -------------------------------------------------------

class Role:
    """One bare baseline process (`hftlab.bench.baseline`), and the JSON lines it prints."""

    def __init__(self, name: str, *args):
        self.name = name
        self.popen = subprocess.Popen([sys.executable, "-m", "hftlab.bench.baseline", name, *map(str, args)],
                                      stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        # A thread reads its lines: select() on a buffered pipe would miss a second line
        # that arrived in the same read as the first.
        self.lines = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.popen.stdout:
            self.lines.put(line)
        self.lines.put("")

    def said(self, timeout: float = WAIT_S) -> dict:
        """The next JSON line it printed, as a dict (BenchError if none comes in time)."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise BenchError(f"baseline {self.name} said nothing within {timeout:.0f} s") from None
        if not line:
            raise BenchError(f"baseline {self.name} exited with status {self.popen.wait()} before answering")
        return json.loads(line)

    def finish(self, timeout: float = WAIT_S) -> int:
        """Wait for the role to end by itself (each does, once its job is done)."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise BenchError(f"baseline {self.name} did not finish within {timeout:.0f} s") from None

    def stop(self) -> None:
        """Stop it if it is still running (SIGTERM, then SIGKILL) and close its pipe."""
        children.terminate(self.popen, 5.0)
        self.popen.stdout.close()


def _remove_segment(name: str) -> None:
    """Remove a baseline segment a crashed relay left behind (normally the relay does)."""
    try:
        shm = book.open_untracked(name)
    except (FileNotFoundError, book.BookError):
        return
    try:
        book.unlink_untracked(shm)
    except FileNotFoundError:
        pass
    finally:
        shm.close()


def measure_baseline_latency(n: int, interval: float, poll_interval: float, duration: float,
                             run_dir: str, seed: int = Config.seed, doorbell: bool = False) -> dict:
    """The bare path: TCP, a shared-memory record polled the same way, TCP again.

    With `doorbell` the poller sleeps until the relay rings (as the strategy waits);
    otherwise it sleeps `poll_interval` between looks (0: it spins)."""
    out_csv = os.path.join(run_dir, "baseline.csv")
    # Not "hftlab_...": `hftlab clean` must not take this segment for a stale book.
    shm = "hftbench_" + secrets.token_hex(4)
    roles = []
    try:
        sink = Role("sink", "--out", out_csv)
        roles.append(sink)
        sink_port = sink.said()["port"]
        source = Role("source", "--n", n, "--interval", interval, "--duration", duration, "--seed", seed)
        roles.append(source)
        source_port = source.said()["port"]
        relay = Role("relay", "--port", source_port, "--n", n, "--shm", shm)
        roles.append(relay)
        relay.said()
        poller = Role("poller", "--port", sink_port, "--n", n, "--shm", shm, "--poll-interval", poll_interval,
                      *(["--doorbell"] if doorbell else []))
        roles.append(poller)
        poller.said()
        pids = {r.name: r.popen.pid for r in roles}
        cpu0, t0 = cpu_of(pids), time.monotonic()
        source.popen.send_signal(signal.SIGUSR1)
        # Sample CPU just before the source ends (it exits after `duration`).
        time.sleep(duration * 0.95)  # inside the measurement window, not a wait for a condition
        cpu1, t1 = cpu_of(pids), time.monotonic()
        for role in roles:
            if role.finish() != 0:
                raise BenchError(f"baseline {role.name} failed with status {role.popen.returncode}")
    finally:
        for role in roles:
            role.stop()
        _remove_segment(shm)
    with open(out_csv) as f:
        rows = list(csv.DictReader(f))
    hops = {h: [] for h in BASELINE_HOPS}
    t2t = []
    for r in rows:
        ts, written, seen, recv = (int(r[k]) for k in ("ts_ns", "written_ns", "seen_ns", "recv_ns"))
        hops["source_to_shm"].append(written - ts)
        hops["shm_to_poller"].append(seen - written)
        hops["poller_to_sink"].append(recv - seen)
        t2t.append(recv - ts)
    seqs = [int(r["seq"]) for r in rows]
    return {"samples_ns": {**hops, "tick_to_trade": t2t},
            "hops_us": {h: percentiles(v) for h, v in hops.items()},
            "tick_to_trade_us": percentiles(t2t),
            "ticks_seen": len(rows), "ticks_missed": sum(int(r["missed"]) for r in rows),
            "ticks_sent": max(seqs) if seqs else 0,
            "cpu_cores": cpu_delta(cpu0, cpu1, t1 - t0)}


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


def measure_bare_reader(config: Config, ticks: int, run_dir: str) -> dict:
    """A second gateway sends the same burst to two bare readers, one after the other: one
    that only splits it into lines (the stream's ceiling), one that does the book's work
    per tick (split, convert the four fields, one seqlocked write: the fair baseline)."""
    quiet = config.replace(bench_ticks=ticks, tick_interval=3600.0, news_interval=3600.0,
                           heartbeat_interval=3600.0)  # nothing but HELLO and the bursts
    out = {}
    with Launcher(quiet, free_ports=True, run_dir=run_dir, names=("gateway",)) as gw:
        shm = "hftbench_" + secrets.token_hex(4)
        for role, args in (("reader", ()), ("fair_reader", ("--shm", shm))):
            reader = Role(role, "--port", gw.config.price_port, "--n", ticks + 1, *args)  # + the HELLO
            try:
                reader.said()   # connected
                said = reader.said()
                if not said.get("subscribed"):   # the HELLO: the gateway has it among its subscribers
                    raise BenchError(f"the bare {role} was not subscribed by the gateway: {said}")
                _, _, start_ns = start_burst(gw.children["gateway"])
                done = reader.said()
                reader.finish()
            finally:
                reader.stop()
                _remove_segment(shm)
            if done["lines"] < ticks + 1:
                raise BenchError(f"the bare {role} got {done['lines']} lines, not {ticks + 1}")
            out[role] = {"throughput_ticks_per_s": ticks / max(done["end_ns"] - start_ns, 1) * 1e9,
                         "seconds": (done["end_ns"] - start_ns) / 1e9}
    return out


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
        say(f"hftlab bench: the four processes, {preset['runs']} bursts of {ticks:,} ticks, then "
            f"{duration:g} s paced"
            + (f" (or until {preset['orders']} orders)" if preset["orders"] else "") + " ...")
        system = measure_system(config, ticks, duration, os.path.join(tmp, "system"), preset["runs"],
                                preset["orders"])
        say(f"hftlab bench: the four processes idle for {preset['idle']:g} s ...")
        idle = measure_idle(config, preset["idle"], os.path.join(tmp, "idle"))
        say("hftlab bench: the bare readers (the stream's ceiling, the fair baseline) ...")
        bare = measure_bare_reader(config, ticks, os.path.join(tmp, "bare"))
        say("hftlab bench: the bare latency baseline (the floor), waiting as the strategy waits ...")
        base = measure_baseline_latency(system["n_symbols"], tick_interval, config.poll_interval, duration,
                                        tmp, doorbell=config.doorbell)
        say(f"hftlab bench: the bare latency baseline polling every {config.poll_interval * 1e3:g} ms ...")
        polled = measure_baseline_latency(system["n_symbols"], tick_interval, config.poll_interval, duration,
                                          tmp, doorbell=False)
    # The raw samples (nanoseconds) are for plots; they stay out of the JSON.
    results["samples_ns"] = {"hftlab": system.pop("samples_ns"), "baseline": base.pop("samples_ns")}
    results.update(system)
    results["cpu_idle_cores"] = {"idle": idle, "paced": system["paced"]["cpu_cores"],
                                 "source": "/proc/PID/task/*/schedstat (ns)" if cpu_of({"me": os.getpid()})["me"]
                                 is not None else "n/a on this system"}
    # The line splitter: the rate of the stream itself, which no reader of it can beat.
    results["stream_ceiling_ticks_per_s"] = bare["reader"]["throughput_ticks_per_s"]
    results["baseline_throughput_ticks_per_s"] = results["stream_ceiling_ticks_per_s"]  # its older name
    # The fair baseline: the same work per tick as the book's, bare.
    results["fair_baseline_throughput_ticks_per_s"] = bare["fair_reader"]["throughput_ticks_per_s"]
    results["baseline_tick_to_trade_us"] = base.pop("tick_to_trade_us")
    # The floor: the bare four-process path waiting the way the strategy waits (the same run).
    results["floor_tick_to_trade_us"] = results["baseline_tick_to_trade_us"]
    polled.pop("samples_ns")
    results["poll_floor_tick_to_trade_us"] = polled["tick_to_trade_us"]
    results["poll_floor_cpu_cores"] = polled["cpu_cores"]
    results["baseline"] = base
    results["ratios"] = {
        "throughput": results["throughput_ticks_per_s"] / results["stream_ceiling_ticks_per_s"],
        "throughput_vs_fair": round(results["throughput_ticks_per_s"]
                                    / results["fair_baseline_throughput_ticks_per_s"], 2),
        "tick_to_trade_p50": ratio(results["tick_to_trade_us"]["p50"],
                                   results["baseline_tick_to_trade_us"]["p50"]),
        "tick_to_trade_p99": ratio(results["tick_to_trade_us"]["p99"],
                                   results["baseline_tick_to_trade_us"]["p99"]),
    }
    results["targets"] = targets(results)
    return results


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
