"""The bare baselines, from the bench's side: start `hftlab.bench.baseline`'s roles as
processes, read what they say, measure them in the same run as the real system.

- `measure_bare_reader`: the throughput baselines, two bare readers of a gateway's burst
  (the stream's ceiling, the fair baseline);
- `measure_baseline_latency`: the latency floor, the bare four-process path (source,
  relay, poller, sink), its hops `BASELINE_HOPS`;
- `Role`: one such process and the JSON lines it prints.
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
import threading
import time

from hftlab import book, children
from hftlab.bench.measure import BenchError, WAIT_S, cpu_delta, cpu_of, percentiles, start_burst
from hftlab.config import Config
from hftlab.launcher import Launcher

__all__ = ["BASELINE_HOPS", "Role", "measure_bare_reader", "measure_baseline_latency"]

BASELINE_HOPS = ("source_to_shm", "shm_to_poller", "poller_to_sink")


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


def _new_segment_name() -> str:
    # Not "hftlab_...": `hftlab clean` must not take this segment for a stale book.
    return "hftbench_" + secrets.token_hex(4)


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


# -- the throughput baselines ---------------------------------------------------------------

def measure_bare_reader(config: Config, ticks: int, run_dir: str) -> dict:
    """A second gateway sends the same burst to two bare readers, one after the other: one
    that only splits it into lines (the stream's ceiling), one that does the book's work
    per tick (split, convert the four fields, one seqlocked write: the fair baseline)."""
    quiet = config.replace(bench_ticks=ticks, tick_interval=3600.0, news_interval=3600.0,
                           heartbeat_interval=3600.0)  # nothing but HELLO and the bursts
    out = {}
    with Launcher(quiet, free_ports=True, run_dir=run_dir, names=("gateway",)) as gw:
        shm = _new_segment_name()
        for role, args in (("reader", ()), ("fair_reader", ("--shm", shm))):
            reader = Role(role, "--port", gw.config.price_port, "--n", ticks + 1, *args)  # + the HELLO
            try:
                done, start_ns = _read_one_burst(reader, gw.children["gateway"])
            finally:
                reader.stop()
                _remove_segment(shm)
            if done["lines"] < ticks + 1:
                raise BenchError(f"the bare {role} got {done['lines']} lines, not {ticks + 1}")
            out[role] = {"throughput_ticks_per_s": ticks / max(done["end_ns"] - start_ns, 1) * 1e9,
                         "seconds": (done["end_ns"] - start_ns) / 1e9}
    return out


def _read_one_burst(reader: Role, gateway) -> tuple:
    """Once the gateway has subscribed the bare reader, start a burst; (what the reader said
    when it had read it all, the burst's first ts_ns)."""
    reader.said()   # connected
    said = reader.said()
    if not said.get("subscribed"):   # the HELLO: the gateway has it among its subscribers
        raise BenchError(f"the bare {reader.name} was not subscribed by the gateway: {said}")
    _, _, start_ns = start_burst(gateway)
    done = reader.said()
    reader.finish()
    return done, start_ns


# -- the latency floor -----------------------------------------------------------------------

def measure_baseline_latency(n: int, interval: float, poll_interval: float, duration: float,
                             run_dir: str, seed: int = Config.seed, doorbell: bool = False) -> dict:
    """The bare path: TCP, a shared-memory record polled the same way, TCP again.

    With `doorbell` the poller sleeps until the relay rings (as the strategy waits);
    otherwise it sleeps `poll_interval` between looks (0: it spins)."""
    out_csv = os.path.join(run_dir, "baseline.csv")
    shm = _new_segment_name()
    roles = []
    try:
        source = _start_bare_path(roles, out_csv, shm, n, interval, duration, seed, poll_interval, doorbell)
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
    return {**_bare_path_figures(out_csv), "cpu_cores": cpu_delta(cpu0, cpu1, t1 - t0)}


def _start_bare_path(roles: list, out_csv: str, shm: str, n: int, interval: float, duration: float,
                     seed: int, poll_interval: float, doorbell: bool) -> Role:
    """Start the sink, the source, the relay and the poller, each once the one it connects
    to is ready, and add each to `roles` as it starts (the caller stops them all).
    Returns the source, which sends from its SIGUSR1 on."""
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
    return source


def _bare_path_figures(out_csv: str) -> dict:
    """The floor's hops and tick-to-trade, from the sink's CSV (one row per tick it got)."""
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
            "ticks_sent": max(seqs) if seqs else 0}
