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

from hftlab import book, gateway, process, protocol
from hftlab.bench.measure import BenchError, WAIT_S, cpu_delta, cpu_of, machine, percentiles, ratio, wait
from hftlab.config import FAST, Config
from hftlab.launcher import Launcher
from hftlab.order_manager import read_journal

__all__ = ["QUICK", "DEFAULT", "TICK_INTERVAL", "NEWS_INTERVAL", "HOPS", "BASELINE_HOPS", "Role",
           "bench", "start_burst", "measure_burst", "throughput_curve", "measure_system",
           "measure_bare_reader", "measure_baseline_latency", "measure_journal_cost"]

QUICK = {"ticks": 200_000, "duration": 3.0}
DEFAULT = {"ticks": 1_000_000, "duration": 10.0}
# The latency phase: a tick per symbol every ms on average, 4,000 ticks/s offered for 4
# symbols (the gateway's millisecond timer delivers about 3,300: it skips, never bursts).
TICK_INTERVAL = 0.001
NEWS_INTERVAL = 0.01  # frequent news, so that the strategy trades often enough to sample
HOPS = ("gateway_to_book", "book_to_strategy", "strategy_decides", "order_to_om")
BASELINE_HOPS = ("source_to_shm", "shm_to_poller", "poller_to_sink")


def start_burst(child) -> tuple:
    """Make a gateway in --bench-ticks mode send a burst: (first seq, last seq, first ts_ns).

    Read from the gateway's own burst line (`hftlab.gateway.burst_line`), looked for only
    in what it logs after the SIGUSR1, so that each burst is timed by its own line."""
    offset = os.path.getsize(child.log_path)

    def started():
        nonlocal offset
        lines, offset = process.new_lines(child.log_path, offset)
        return next(filter(None, map(gateway.parse_burst_line, lines)), None)

    os.kill(child.pid, signal.SIGUSR1)
    return wait(started, "the gateway to start the burst (is it in --bench-ticks mode?)")


# -- the real system --------------------------------------------------------------------

def measure_burst(lab: Launcher, prices: book.SharedPriceBook, pids: dict | None = None) -> dict:
    """Make the running gateway (in --bench-ticks mode) send one burst; time it into the book."""
    pids = pids or {name: lab.pid(name) for name in lab.children}
    before = prices.header()
    cpu0, t0 = cpu_of(pids), time.monotonic()
    first, last, start_ns = start_burst(lab.children["gateway"])

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


def measure_system(config: Config, ticks: int, duration: float, run_dir: str) -> dict:
    """Run the four processes: one burst for throughput, then `duration` s of paced ticks."""
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
            out["burst"] = measure_burst(lab, prices, pids)
            out["throughput_ticks_per_s"] = out["burst"]["ticks_per_s"]
            end = prices.header()
            # The paced phase: the feed resumes after the burst's quiet time.
            wait(lambda: prices.header()["last_seq"] > end["last_seq"], "the paced feed to resume")
            # The window is the seqs the book wrote during it (seq_start, seq_end]: rows
            # are chosen by the feed's own numbers, never by wall-clock time.
            cpu2, t2, lat_start = cpu_of(pids), time.monotonic(), time.time_ns()
            seq_start = prices.header()["last_seq"]
            time.sleep(duration)  # the measurement window itself, not a wait for a condition
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
    t2t, orders = [], 0
    for r in window:
        hops["gateway_to_book"].append(int(r["written_ns"]) - int(r["ts_ns"]))
        hops["book_to_strategy"].append(int(r["seen_ns"]) - int(r["written_ns"]))
        if r["order_id"]:
            hops["strategy_decides"].append(int(r["decided_ns"]) - int(r["seen_ns"]))
    for o in journal:
        r = by_order.get(o["order_id"])
        if r is not None and seq_start < int(r["seq"]) <= seq_end:
            orders += 1
            t2t.append(int(o["recv_ns"]) - int(o["tick_ts_ns"]))
            hops["order_to_om"].append(int(o["recv_ns"]) - int(r["decided_ns"]))
    sent = seq_end - seq_start
    return {
        "samples_ns": {**hops, "tick_to_trade": t2t},
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
        process.terminate(self.popen, 5.0)
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


def measure_bare_reader(config: Config, ticks: int, run_dir: str) -> dict:
    """A second gateway sends the same burst to a reader that only splits it into lines."""
    quiet = config.replace(bench_ticks=ticks, tick_interval=3600.0, news_interval=3600.0,
                           heartbeat_interval=3600.0)  # nothing but HELLO and the burst
    with Launcher(quiet, free_ports=True, run_dir=run_dir, names=("gateway",)) as gw:
        reader = Role("reader", "--port", gw.config.price_port, "--n", ticks + 1)  # + the HELLO
        try:
            reader.said()
            wait(lambda: "subscriber" in gw.log("gateway", 5), "the reader to subscribe")
            _, _, start_ns = start_burst(gw.children["gateway"])
            done = reader.said()
            reader.finish()
        finally:
            reader.stop()
    if done["lines"] < ticks + 1:
        raise BenchError(f"the bare reader got {done['lines']} lines, not {ticks + 1}")
    return {"throughput_ticks_per_s": ticks / max(done["end_ns"] - start_ns, 1) * 1e9,
            "seconds": (done["end_ns"] - start_ns) / 1e9}


# -- the whole benchmark -------------------------------------------------------------------

def bench(quick: bool = False, ticks: int | None = None, duration: float | None = None,
          tick_interval: float = TICK_INTERVAL, poll_interval: float | None = None,
          say=print) -> dict:
    """Measure everything once; return the results as a dict (the --json content)."""
    preset = QUICK if quick else DEFAULT
    ticks = ticks or preset["ticks"]
    duration = duration or preset["duration"]
    config = Config(**FAST).replace(tick_interval=tick_interval, news_interval=NEWS_INTERVAL)
    if poll_interval is not None:
        config = config.replace(poll_interval=poll_interval)
    results = {"machine": machine(), "clock": "time.time_ns(), one machine",
               "ticks": ticks, "duration_s": duration, "tick_interval_s": tick_interval,
               "poll_interval_s": config.poll_interval, "doorbell": config.doorbell}
    with tempfile.TemporaryDirectory(prefix="hftlab-bench-") as tmp:
        say(f"hftlab bench: the four processes, a burst of {ticks:,} ticks, then {duration:g} s paced ...")
        system = measure_system(config, ticks, duration, os.path.join(tmp, "system"))
        say("hftlab bench: the bare reader ...")
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
    results["baseline_throughput_ticks_per_s"] = bare["throughput_ticks_per_s"]
    results["baseline_tick_to_trade_us"] = base.pop("tick_to_trade_us")
    # The floor: the bare four-process path waiting the way the strategy waits (the same run).
    results["floor_tick_to_trade_us"] = results["baseline_tick_to_trade_us"]
    polled.pop("samples_ns")
    results["poll_floor_tick_to_trade_us"] = polled["tick_to_trade_us"]
    results["poll_floor_cpu_cores"] = polled["cpu_cores"]
    results["baseline"] = base
    results["ratios"] = {
        "throughput": results["throughput_ticks_per_s"] / results["baseline_throughput_ticks_per_s"],
        "tick_to_trade_p50": ratio(results["tick_to_trade_us"]["p50"], results["baseline_tick_to_trade_us"]["p50"]),
    }
    return results


def measure_journal_cost(orders: int, directory: str) -> dict:
    """The order round trip (ORDER sent to ACK read) with the journal fsynced or not.

    One order manager per setting, its journal in `directory` (the disk to judge), one
    client sending `orders` orders one at a time. Returns {"off": percentiles, "on": ...}
    and the same in "per_order_us": the p50 difference is what an fsync costs an order."""
    from hftlab import protocol
    out = {}
    for fsync in (False, True):
        path = os.path.join(directory, f"journal-cost-{secrets.token_hex(4)}.csv")
        config = Config(journal=path, fsync=fsync)
        try:
            with Launcher(config, free_ports=True, names=["order_manager"]) as lab:
                sock = process.dial(lab.config.host, lab.config.order_port, timeout=WAIT_S)
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
