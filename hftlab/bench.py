"""``hftlab bench``: throughput and latency of the real processes, beside a bare baseline.

Every figure is measured, none is guessed, and each comes with a baseline taken in the
same run on the same machine, because a number alone says little about IPC in Python:

- **Throughput.** The four processes run with the gateway in benchmark mode
  (``--bench-ticks``); a SIGUSR1 makes it send a burst of N ticks in large writes, as
  fast as the orderbook takes them. The book header's counters (``last_seq``,
  ``updates``, ``gaps``) say whether every tick reached the book; the burst's first
  tick's ``ts_ns`` and the ``written_ns`` of its last record say how long it took. The
  baseline is a bare reader that receives the same burst from a second gateway and only
  splits it into lines.
- **Latency.** Then the gateway ticks at a calm pace (random intervals of mean
  ``tick_interval``) that leaves the machine mostly idle, and every hop is timestamped with ``time.time_ns()``, the one
  clock that every process on one machine shares: the gateway made the tick (PRICE
  ``ts_ns``), the orderbook wrote it (record ``written_ns``), the strategy saw it and
  decided (its ``--latency-log``), the order manager received the order (journal
  ``recv_ns``). Tick-to-trade is ``recv_ns - tick_ts_ns`` of each journalled order.
  The baseline is four bare processes on the same path with no trading logic: a
  timestamped line over TCP, into a shared-memory record (seqlock, as in the book),
  polled the same way the strategy polls, and over TCP again.

The comparison of clocks across processes is sound only on one machine: across
machines ``time.time_ns()`` differs by the clocks' offset (PTP or NTP would be needed).

Run: ``hftlab bench [--quick] [--json PATH] [--plot PATH]``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import selectors
import queue
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import secrets
import time

import numpy as np

from hftlab import book as _book
from hftlab import process
from hftlab.config import FAST, Config
from hftlab.launcher import LaunchError, Launcher
from hftlab.order_manager import read_journal

QUICK = {"ticks": 200_000, "duration": 3.0}
DEFAULT = {"ticks": 1_000_000, "duration": 10.0}
# The latency phase: a tick per symbol every ms on average, 4,000 ticks/s offered for 4
# symbols (the gateway's millisecond timer delivers about 3,300: it skips, never bursts).
TICK_INTERVAL = 0.001
NEWS_INTERVAL = 0.01  # frequent news, so that the strategy trades often enough to sample
WAIT_S = 60.0  # the longest any one step may take before the bench gives up
HOPS = ("gateway_to_book", "book_to_strategy", "strategy_decides", "order_to_om")
BASELINE_HOPS = ("source_to_shm", "shm_to_poller", "poller_to_sink")


class BenchError(RuntimeError):
    """A benchmark step failed; the message says which and why."""


# -- measuring ------------------------------------------------------------------------

def percentiles(values_ns) -> dict:
    """p50, p90, p99 and max of nanosecond values, in microseconds, and their count."""
    v = np.asarray(values_ns, dtype=np.float64) / 1e3
    if v.size == 0:
        return {"p50": None, "p90": None, "p99": None, "max": None, "n": 0}
    p50, p90, p99 = np.percentile(v, [50, 90, 99])
    return {"p50": round(float(p50), 1), "p90": round(float(p90), 1), "p99": round(float(p99), 1),
            "max": round(float(v.max()), 1), "n": int(v.size)}


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of a running process, from /proc (Linux); None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine() -> dict:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
                         model)
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "system": f"{platform.system()} {platform.release()}"}


def _wait(condition, what: str):
    # Polled every ms: the burst's end is timed by the book itself (written_ns), this
    # only has to notice it before the paced feed resumes (BURST_QUIET later).
    try:
        return process.wait_for(condition, WAIT_S, what, interval=0.001)
    except TimeoutError as exc:
        raise BenchError(str(exc)) from None


def _log_line(path: str, start: int, prefix: str) -> str | None:
    with open(path, errors="replace") as f:
        f.seek(start)
        for line in f:
            if prefix in line:
                return line
    return None


def _burst_start(child) -> tuple:
    """(first seq, last seq, ts_ns of the first tick) from the gateway's burst log line."""
    line = _wait(lambda: _log_line(child.log_path, child.log_start, "bench: burst of"),
                 "the gateway to start the burst (is it in --bench-ticks mode?)")
    words = line.split()
    first, last = words[words.index("seq") + 1].rstrip(",").split("..")
    return int(first), int(last), int(words[-1])


# -- the real system --------------------------------------------------------------------

def _cpu_of(pids: dict) -> dict:
    return {name: cpu_seconds(pid) for name, pid in pids.items()}


def _cpu_delta(before: dict, after: dict, seconds: float) -> dict:
    """name -> share of one core used between the two samples."""
    return {name: None if before[name] is None or after[name] is None
            else round((after[name] - before[name]) / seconds, 3) for name in before}


def measure_burst(lab: Launcher, book: _book.SharedPriceBook, pids: dict | None = None) -> dict:
    """Make the running gateway (in --bench-ticks mode) send one burst; time it into the book."""
    pids = pids or {name: lab.pid(name) for name in lab.children}
    before = book.header()
    cpu0, t0 = _cpu_of(pids), time.monotonic()
    os.kill(lab.pid("gateway"), signal.SIGUSR1)
    first, last, start_ns = _burst_start(lab.children["gateway"])

    def reached():
        header = book.header()
        return header if header["last_seq"] >= last else None

    end = _wait(reached, f"the book to reach seq {last}")
    seen_ns = time.time_ns()
    rec = [r for r in book.snapshot() if int(r["seq"]) == last]
    # The burst's last tick's record says when it was written; if the paced feed has
    # overwritten it already, the time this poll noticed is the (slightly late) bound.
    end_ns = int(rec[0]["written_ns"]) if rec else seen_ns
    cpu1, t1 = _cpu_of(pids), time.monotonic()
    sent = end["last_seq"] - before["last_seq"]
    return {"ticks": last - first + 1, "first_seq": first, "last_seq": last,
            "seconds": (end_ns - start_ns) / 1e9,
            "ticks_per_s": (last - first + 1) / max(end_ns - start_ns, 1) * 1e9,
            "gaps": end["gaps"] - before["gaps"],
            # Ticks the book should have written but did not: every seq must be one update.
            "lost": sent - (end["updates"] - before["updates"]),
            "cpu_cores": _cpu_delta(cpu0, cpu1, t1 - t0)}


def throughput_curve(rates, ticks: int, config: Config | None = None) -> list:
    """Taken rate into the book for each offered rate (0 = as fast as possible): one
    gateway and orderbook pair per rate, one burst of `ticks` each."""
    base = (config or Config(**FAST)).replace(tick_interval=TICK_INTERVAL, bench_ticks=ticks)
    out = []
    for rate in rates:
        with Launcher(base.replace(bench_rate=float(rate)), free_ports=True,
                      names=("gateway", "orderbook")) as lab:
            book = _book.SharedPriceBook.attach(lab.config.shm_name)
            try:
                _wait(lambda: book.header()["updates"] > 0, "the first ticks in the book")
                out.append({"offered": rate, **measure_burst(lab, book)})
            finally:
                book.close()
    return out


def measure_system(config: Config, ticks: int, duration: float, run_dir: str) -> dict:
    """Run the four processes: one burst for throughput, then `duration` s of paced ticks."""
    config = config.replace(bench_ticks=ticks, latency_log=os.path.join(run_dir, "latency.csv"),
                            journal=os.path.join(run_dir, "orders.csv"))
    out = {}
    with Launcher(config, free_ports=True, run_dir=run_dir) as lab:
        book = _book.SharedPriceBook.attach(lab.config.shm_name)
        try:
            out["book_bytes"], out["book_mapped_bytes"] = book.nbytes, book.mapped_bytes
            out["n_symbols"] = len(book.symbols)
            pids = {name: lab.pid(name) for name in lab.children}
            # The strategy is attached and the feed is flowing before anything is timed.
            _wait(lambda: book.header()["updates"] > 0, "the first ticks in the book")
            out["burst"] = measure_burst(lab, book, pids)
            out["throughput_ticks_per_s"] = out["burst"]["ticks_per_s"]
            end = book.header()
            # The paced phase: the feed resumes after the burst's quiet time.
            _wait(lambda: book.header()["last_seq"] > end["last_seq"], "the paced feed to resume")
            cpu2, t2, lat_start = _cpu_of(pids), time.monotonic(), time.time_ns()
            time.sleep(duration)  # the measurement window itself, not a wait for a condition
            lat_end = time.time_ns()
            cpu3, t3 = _cpu_of(pids), time.monotonic()
            out["paced"] = {"cpu_cores": _cpu_delta(cpu2, cpu3, t3 - t2), "seconds": (lat_end - lat_start) / 1e9}
            out["gaps"] = book.header()["gaps"]
            out["run_cpu_s"] = {name: round(v, 3) for name, v in _cpu_of(pids).items() if v is not None}
        finally:
            book.close()
        lab.stop()  # the strategy first: its latency log is complete once it has exited
        out.update(_system_latency(lab.config, lat_start, lat_end))
    return out


def _system_latency(config: Config, lat_start: int, lat_end: int) -> dict:
    with open(config.latency_log) as f:
        rows = list(csv.DictReader(f))
    journal = read_journal(config.journal)
    by_order = {r["order_id"]: r for r in rows if r["order_id"]}
    window = [r for r in rows if lat_start <= int(r["ts_ns"]) <= lat_end]
    hops = {h: [] for h in HOPS}
    t2t, orders = [], 0
    for r in window:
        hops["gateway_to_book"].append(int(r["written_ns"]) - int(r["ts_ns"]))
        hops["book_to_strategy"].append(int(r["seen_ns"]) - int(r["written_ns"]))
        if r["order_id"]:
            hops["strategy_decides"].append(int(r["decided_ns"]) - int(r["seen_ns"]))
    for o in journal:
        if lat_start <= int(o["tick_ts_ns"]) <= lat_end:
            orders += 1
            t2t.append(int(o["recv_ns"]) - int(o["tick_ts_ns"]))
            r = by_order.get(o["order_id"])
            if r is not None:
                hops["order_to_om"].append(int(o["recv_ns"]) - int(r["decided_ns"]))
    seqs = [int(r["seq"]) for r in window]
    sent = (max(seqs) - min(seqs) + 1) if seqs else 0
    return {
        "samples_ns": {**hops, "tick_to_trade": t2t},
        "hops_us": {h: percentiles(v) for h, v in hops.items()},
        "tick_to_trade_us": percentiles(t2t),
        "paced_ticks_per_s": sent / max((lat_end - lat_start) / 1e9, 1e-9),
        "strategy": {
            "rows": len(rows), "ticks_seen": len(window), "ticks_sent": sent,
            "ticks_missed": sum(int(r["missed"]) for r in window),
            "orders_logged": len(by_order), "orders_journaled": len(journal),
            "orders_in_window": orders,
            "journaled_and_logged": sum(1 for o in journal if o["order_id"] in by_order)},
    }


# -- the bare baseline -------------------------------------------------------------------
#
# Each role is a small process (`python -m hftlab.bench --role NAME`): it prints one JSON
# line when it is ready, does its one job, and exits by itself.

_BL_HEAD = struct.Struct("<Q")  # done flag
_BL_VERSION = struct.Struct("<Q")
_BL_DATA = struct.Struct("<qqq")  # seq, ts_ns, written_ns
_BL_REC = _BL_VERSION.size + _BL_DATA.size


def _say(**facts) -> None:
    print(json.dumps(facts), flush=True)


def _remove_segment(name: str) -> None:
    """Remove a baseline segment a crashed relay left behind (normally the relay does)."""
    try:
        shm = _book.open_untracked(name)
    except (FileNotFoundError, _book.BookError):
        return
    try:
        _book.unlink_untracked(shm)
    except FileNotFoundError:
        pass
    finally:
        shm.close()


def role_source(args) -> None:
    """Send n timestamped lines every interval over TCP, for duration, after SIGUSR1."""
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
    srv = socket.create_server(("127.0.0.1", 0))
    _say(port=srv.getsockname()[1])
    conn, _ = srv.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    signal.sigwait([signal.SIGUSR1])
    seq, n, interval = 0, args.n, args.interval
    # Sleep the way the gateway's asyncio loop sleeps: in select(), whose epoll timeout
    # is rounded up to whole milliseconds on Linux (time.sleep would be finer).
    # And at the same random intervals (see hftlab.gateway: a periodic feed phase-locks
    # with a periodic poller).
    timer, rng = selectors.DefaultSelector(), random.Random(args.seed)
    next_at = time.monotonic()
    end = next_at + args.duration
    while next_at < end:
        delay = next_at - time.monotonic()
        if delay > 0:
            timer.select(delay)
        ts = time.time_ns()
        conn.sendall(b"".join(b"%d,%d\n" % (seq + j, ts) for j in range(1, n + 1)))
        seq += n
        next_at = max(next_at + rng.expovariate(1.0 / interval), time.monotonic())  # skip, not burst
    conn.close()


def role_relay(args) -> None:
    """Read lines from the source; write each into its shared-memory record under a seqlock."""
    from multiprocessing.shared_memory import SharedMemory
    shm = SharedMemory(args.shm, create=True, size=_BL_HEAD.size + args.n * _BL_REC)
    buf = shm.buf
    try:
        sock = process.dial("127.0.0.1", args.port)
        sock.settimeout(None)
        _say(shm=args.shm)
        versions = [0] * args.n
        tail = b""
        while True:
            data = sock.recv(65536)
            if not data:
                break
            lines = (tail + data).split(b"\n")
            tail = lines.pop()
            for line in lines:
                seq, ts = line.split(b",")
                seq = int(seq)
                i = seq % args.n
                off = _BL_HEAD.size + i * _BL_REC
                v = versions[i] + 1
                _BL_VERSION.pack_into(buf, off, v)
                _BL_DATA.pack_into(buf, off + 8, seq, int(ts), time.time_ns())
                _BL_VERSION.pack_into(buf, off, v + 1)
                versions[i] = v + 1
        _BL_HEAD.pack_into(buf, 0, 1)
    finally:
        buf.release()
        shm.close()
        try:
            shm.unlink()
        except FileNotFoundError:
            pass


def role_poller(args) -> None:
    """Poll the records as the strategy polls the book; send every new one on over TCP."""
    shm = _book.open_untracked(args.shm)
    buf = shm.buf
    sock = process.dial("127.0.0.1", args.port)
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)
    n = args.n
    block = struct.Struct("<" + "Qqqq" * n)
    end = _BL_HEAD.size + n * _BL_REC
    last = [0] * n
    try:
        _say(polling=args.poll_interval)
        while not _BL_HEAD.unpack_from(buf, 0)[0]:
            sel.select(args.poll_interval)  # the sink never writes: a timed wait, as in the strategy
            while True:
                first = bytes(buf[_BL_HEAD.size:end])
                if bytes(buf[_BL_HEAD.size:end]) == first:
                    break
            seen = time.time_ns()
            values = block.unpack(first)
            for i in range(n):
                version, seq, ts, written = values[4 * i:4 * i + 4]
                if seq != last[i] and not version & 1:
                    # Record i holds the seqs i, i + n, i + 2n...: the ones skipped were conflated.
                    missed = (seq - last[i]) // n - 1 if last[i] else 0
                    # The order: one small write per decision, as the strategy sends one.
                    sock.sendall(b"%d,%d,%d,%d,%d\n" % (seq, ts, written, seen, missed))
                    last[i] = seq
    finally:
        sock.close()
        buf.release()
        shm.close()


def role_sink(args) -> None:
    """Receive the poller's lines, stamp each with the time it arrived, write a CSV at EOF."""
    srv = socket.create_server(("127.0.0.1", 0))
    _say(port=srv.getsockname()[1])
    conn, _ = srv.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    rows, tail = [], b""
    while True:
        data = conn.recv(65536)
        now = time.time_ns()
        if not data:
            break
        lines = (tail + data).split(b"\n")
        tail = lines.pop()
        rows += [b"%s,%d" % (line, now) for line in lines]
    with open(args.out, "wb") as f:
        f.write(b"seq,ts_ns,written_ns,seen_ns,missed,recv_ns\n" + b"\n".join(rows) + b"\n")


def role_reader(args) -> None:
    """Receive a gateway's price stream and only split it into lines; report when n arrived."""
    sock = process.dial("127.0.0.1", args.port)
    sock.settimeout(None)
    _say(connected=True)
    count, tail = 0, b""
    while count < args.n:
        data = sock.recv(65536)
        if not data:
            break
        lines = (tail + data).split(b"\n")
        tail = lines.pop()
        count += len(lines)
    _say(lines=count, end_ns=time.time_ns())
    sock.close()


ROLES = {"source": role_source, "relay": role_relay, "poller": role_poller, "sink": role_sink,
         "reader": role_reader}


class Role:
    """One bare baseline process, and the JSON lines it prints."""

    def __init__(self, name: str, *args):
        self.name = name
        self.popen = subprocess.Popen([sys.executable, "-m", "hftlab.bench", "--role", name, *map(str, args)],
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
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.popen.stdout.close()


def measure_baseline_latency(n: int, interval: float, poll_interval: float, duration: float,
                             run_dir: str, seed: int = Config.seed) -> dict:
    """The bare path: TCP, a shared-memory record polled the same way, TCP again."""
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
        poller = Role("poller", "--port", sink_port, "--n", n, "--shm", shm, "--poll-interval", poll_interval)
        roles.append(poller)
        poller.said()
        pids = {r.name: r.popen.pid for r in roles}
        cpu0, t0 = _cpu_of(pids), time.monotonic()
        source.popen.send_signal(signal.SIGUSR1)
        # Sample CPU just before the source ends (it exits after `duration`).
        time.sleep(duration * 0.95)  # inside the measurement window, not a wait for a condition
        cpu1, t1 = _cpu_of(pids), time.monotonic()
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
            "cpu_cores": _cpu_delta(cpu0, cpu1, t1 - t0)}


def measure_bare_reader(config: Config, ticks: int, run_dir: str) -> dict:
    """A second gateway sends the same burst to a reader that only splits it into lines."""
    quiet = config.replace(bench_ticks=ticks, tick_interval=3600.0, news_interval=3600.0,
                           heartbeat_interval=3600.0)  # nothing but HELLO and the burst
    with Launcher(quiet, free_ports=True, run_dir=run_dir, names=("gateway",)) as gw:
        reader = Role("reader", "--port", gw.config.price_port, "--n", ticks + 1)  # + the HELLO
        try:
            reader.said()
            _wait(lambda: "subscriber" in gw.log("gateway", 5), "the reader to subscribe")
            os.kill(gw.pid("gateway"), signal.SIGUSR1)
            _, _, start_ns = _burst_start(gw.children["gateway"])
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
               "poll_interval_s": config.poll_interval}
    with tempfile.TemporaryDirectory(prefix="hftlab-bench-") as tmp:
        say(f"hftlab bench: the four processes, a burst of {ticks:,} ticks, then {duration:g} s paced ...")
        system = measure_system(config, ticks, duration, os.path.join(tmp, "system"))
        say("hftlab bench: the bare reader ...")
        bare = measure_bare_reader(config, ticks, os.path.join(tmp, "bare"))
        say("hftlab bench: the bare latency baseline ...")
        base = measure_baseline_latency(system["n_symbols"], tick_interval, config.poll_interval, duration,
                                        tmp)
    # The raw samples (nanoseconds) are for plots; they stay out of the JSON.
    results["samples_ns"] = {"hftlab": system.pop("samples_ns"), "baseline": base.pop("samples_ns")}
    results.update(system)
    results["baseline_throughput_ticks_per_s"] = bare["throughput_ticks_per_s"]
    results["baseline_tick_to_trade_us"] = base.pop("tick_to_trade_us")
    results["baseline"] = base
    results["ratios"] = {
        "throughput": results["throughput_ticks_per_s"] / results["baseline_throughput_ticks_per_s"],
        "tick_to_trade_p50": _ratio(results["tick_to_trade_us"]["p50"], results["baseline_tick_to_trade_us"]["p50"]),
    }
    return results


def _ratio(a, b):
    return None if a is None or not b else round(a / b, 2)


def report(r: dict) -> str:
    """The results as a table for a terminal."""
    m = r["machine"]
    fmt = lambda x: "-" if x is None else f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"
    lines = [
        f"machine: {m['nproc']} CPUs, {m['cpu']}, Python {m['python']}, {m['system']}",
        f"clock: {r['clock']}; strategy poll interval {r['poll_interval_s'] * 1e3:g} ms",
        "",
        f"THROUGHPUT  burst of {r['burst']['ticks']:,} ticks, gateway -> book",
        f"  hftlab orderbook  {r['throughput_ticks_per_s']:>12,.0f} ticks/s   "
        f"{r['burst']['gaps']} gaps, {r['burst']['lost']} lost",
        f"  bare reader       {r['baseline_throughput_ticks_per_s']:>12,.0f} ticks/s   "
        f"hftlab/bare = {r['ratios']['throughput']:.2f}",
        "  CPU during the burst (cores): " + ", ".join(
            f"{k} {v:.2f}" for k, v in r["burst"]["cpu_cores"].items() if v is not None),
        "",
        f"LATENCY  paced at {r['paced_ticks_per_s']:,.0f} ticks/s for {r['duration_s']:g} s, in microseconds",
        f"  {'hop':<26}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}{'n':>8}",
    ]

    def row(name, p):
        lines.append(f"  {name:<26}" + "".join(f"{fmt(p[k]):>9}" for k in ("p50", "p90", "p99", "max"))
                     + f"{p['n']:>8}")

    for h in HOPS:
        row("hftlab " + h.replace("_", " "), r["hops_us"][h])
    row("hftlab TICK-TO-TRADE", r["tick_to_trade_us"])
    for h in BASELINE_HOPS:
        row("bare " + h.replace("_", " "), r["baseline"]["hops_us"][h])
    row("bare TICK-TO-TRADE", r["baseline_tick_to_trade_us"])
    ratio = r["ratios"]["tick_to_trade_p50"]
    s = r["strategy"]
    lines += [
        f"  tick-to-trade p50 hftlab/bare = {ratio if ratio is not None else '-'}",
        "  CPU while paced (cores): " + ", ".join(
            f"{k} {v:.3f}" for k, v in {**r["paced"]["cpu_cores"], **{"bare " + k: v for k, v in
                                        r["baseline"]["cpu_cores"].items()}}.items() if v is not None),
        "",
        f"BOOK  {r['book_bytes']} bytes of layout, {r['book_mapped_bytes']} bytes mapped, "
        f"{r['gaps']} gaps in the whole run",
        f"CONFLATION  the strategy saw {s['ticks_seen']:,} of the paced ticks and never saw "
        f"{s['ticks_missed']:,} (the book keeps only the latest price); bare poller missed "
        f"{r['baseline']['ticks_missed']:,}",
        f"ORDERS  {s['orders_journaled']} journalled, {s['orders_in_window']} in the paced window",
    ]
    return "\n".join(lines)


def plot(r: dict, path: str | None = None):
    """Histograms of every hop and of tick-to-trade, hftlab beside the baseline.

    Saves a PNG if `path` is given (Agg backend, no display needed); returns the figure."""
    import matplotlib
    if path:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ours, base = r["samples_ns"]["hftlab"], r["samples_ns"]["baseline"]
    panels = [("tick to trade", ours["tick_to_trade"], base["tick_to_trade"]),
              ("gateway -> book (bare: source -> shm)", ours["gateway_to_book"], base["source_to_shm"]),
              ("book -> strategy saw it (bare: shm -> poller)", ours["book_to_strategy"], base["shm_to_poller"]),
              ("strategy saw it -> decided", ours["strategy_decides"], []),
              ("order -> order manager (bare: poller -> sink)", ours["order_to_om"], base["poller_to_sink"])]
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.2 * len(panels)))
    every = [v for _, a, b in panels for v in (*a, *b) if v > 0]
    bins = np.logspace(np.log10(max(min(every), 1e3) / 1e3 * 0.9), np.log10(max(every) / 1e3 * 1.1), 60)
    for ax, (title, a, b) in zip(axes, panels):
        for values, label in ((a, "hftlab"), (b, "bare baseline")):
            if len(values):
                us = np.clip(np.asarray(values, dtype=float) / 1e3, bins[0], bins[-1])
                # Each sample weighs 1/n: the bars are fractions of the samples, comparable
                # between the two (density=True would divide by the log bins' widths).
                ax.hist(us, bins=bins, alpha=0.6, weights=np.full(len(us), 1 / len(us)),
                        label=f"{label} (p50 {np.median(us):,.0f} us, n={len(us)})")
        ax.set_xscale("log")
        ax.set_ylabel("fraction")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
    axes[-1].set_xlabel("microseconds (log scale); one clock: time.time_ns()")
    fig.suptitle(f"hftlab bench: {r['paced_ticks_per_s']:,.0f} ticks/s paced, poll "
                 f"{r['poll_interval_s'] * 1e3:g} ms, {r['machine']['nproc']} CPUs, Python {r['machine']['python']}",
                 fontsize=10)
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=90)
        plt.close(fig)
    return fig


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


def report_journal_cost(r: dict, directory: str) -> str:
    lines = [f"order round trip (ORDER to ACK), journal in {directory}, microseconds:"]
    for key in ("off", "on"):
        p = r[key]
        lines.append(f"  fsync {key:<3}  p50 {p['p50']:>9,.1f}  p90 {p['p90']:>9,.1f}  p99 {p['p99']:>9,.1f}"
                     f"  max {p['max']:>9,.1f}  ({p['n']} orders)")
    lines.append(f"  an fsync costs an order about {r['on']['p50'] - r['off']['p50']:,.0f} us (p50 difference)")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="hftlab bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a short run (about 15 s): fewer ticks, 3 s windows")
    p.add_argument("--ticks", type=int, default=None, help="ticks in the throughput burst")
    p.add_argument("--duration", type=float, default=None, help="seconds of each latency window")
    p.add_argument("--tick-interval", type=float, default=TICK_INTERVAL,
                   help=f"mean seconds between paced ticks of each symbol (default {TICK_INTERVAL})")
    p.add_argument("--poll-interval", type=float, default=None,
                   help="the strategy's (and the baseline poller's) poll interval in seconds")
    p.add_argument("--json", metavar="PATH", help="write the results to this JSON file")
    p.add_argument("--plot", metavar="PATH", help="save histograms of every hop to this PNG file")
    p.add_argument("--journal-cost", metavar="DIR", nargs="?", const=".",
                   help="instead: measure what fsyncing the journal costs an order, with the journal "
                        "in DIR (default: the current folder)")
    p.add_argument("--orders", type=int, default=500, help="orders per setting for --journal-cost")
    # The baseline's processes run this module with --role; not for users.
    p.add_argument("--role", choices=sorted(ROLES), help=argparse.SUPPRESS)
    for name, kind in (("port", int), ("n", int), ("shm", str), ("out", str), ("interval", float),
                       ("seed", int)):
        p.add_argument(f"--{name}", type=kind, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.role:
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        try:
            ROLES[args.role](args)
        except KeyboardInterrupt:
            pass
        return 0
    for name in ("ticks", "duration", "tick_interval", "poll_interval"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive; got {value}")
    if args.journal_cost is not None:
        try:
            print(report_journal_cost(measure_journal_cost(args.orders, args.journal_cost),
                                      os.path.abspath(args.journal_cost)), flush=True)
        except (BenchError, LaunchError, OSError) as exc:
            print(f"hftlab bench: {exc}", file=sys.stderr)
            return 1
        return 0
    try:
        results = bench(args.quick, args.ticks, args.duration, args.tick_interval, args.poll_interval)
    except (BenchError, LaunchError, _book.BookError, OSError) as exc:
        print(f"hftlab bench: {exc}", file=sys.stderr)
        return 1
    print(report(results), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({k: v for k, v in results.items() if k != "samples_ns"}, f, indent=2)
    if args.plot:
        plot(results, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
