"""What every measurement of the bench shares: percentiles, CPU per process, the machine,
waiting for a condition, starting a gateway's burst, and the one error type.

No processes are started here; the runner (hftlab) and the baseline (`hftlab.bench.bare`)
both measure through these, so a figure of hftlab and the figure of its baseline are
computed the same way.
"""

from __future__ import annotations

import os
import platform
import signal
import tempfile

import numpy as np

from hftlab import children
from hftlab.bench import burst

__all__ = ["BenchError", "WAIT_S", "wait", "start_burst", "percentiles", "ratio", "cpu_seconds", "cpu_of",
           "cpu_delta", "RAM_DIR", "files_dir", "machine"]

WAIT_S = 60.0  # the longest any one step may take before the bench gives up


class BenchError(RuntimeError):
    """A benchmark step failed; the message says which and why."""


def wait(condition, what: str):
    """Poll `condition` every ms until it is truthy and return it; BenchError after WAIT_S.

    Every ms: the end of a burst is timed by the book itself (written_ns), this only has
    to notice it before the paced feed resumes (the gateway's BURST_QUIET later)."""
    try:
        return children.wait_for(condition, WAIT_S, what, interval=0.001)
    except TimeoutError as exc:
        raise BenchError(str(exc)) from None


def start_burst(child) -> tuple:
    """Make a gateway in --bench-ticks mode send a burst: (first seq, last seq, first ts_ns).

    Read from the gateway's own burst line (`hftlab.bench.burst.burst_line`), looked for only
    in what it logs after the SIGUSR1, so that each burst is timed by its own line. A
    gateway still in its previous burst (or that burst's quiet time) ignores a SIGUSR1 and
    says so: the signal is sent again then, so a second burst is never lost or mistaken.
    Shared by the real system's bursts and the bare readers' (`hftlab.bench.bare`)."""
    offset = os.path.getsize(child.log_path)

    def started():
        nonlocal offset
        lines, offset = children.new_lines(child.log_path, offset)
        if any("SIGUSR1 ignored" in line for line in lines):
            os.kill(child.pid, signal.SIGUSR1)
        return next(filter(None, map(burst.parse_burst_line, lines)), None)

    os.kill(child.pid, signal.SIGUSR1)
    return wait(started, "the gateway to start the burst (is it in --bench-ticks mode?)")


def percentiles(values_ns) -> dict:
    """p50, p90, p99 and max of nanosecond values, in microseconds, and their count."""
    v = np.asarray(values_ns, dtype=np.float64) / 1e3
    if v.size == 0:
        return {"p50": None, "p90": None, "p99": None, "max": None, "n": 0}
    p50, p90, p99 = np.percentile(v, [50, 90, 99])
    return {"p50": round(float(p50), 1), "p90": round(float(p90), 1), "p99": round(float(p99), 1),
            "max": round(float(v.max()), 1), "n": int(v.size)}


def ratio(a, b):
    """a / b to two decimals, or None when either is missing (or b is 0)."""
    return None if a is None or not b else round(a / b, 2)


# -- CPU per process ---------------------------------------------------------------------
# /proc/PID/schedstat counts a process's time on a CPU in nanoseconds (the scheduler's own
# clock); /proc/PID/stat only in clock ticks (10 ms on most Linux systems), too coarse for
# an idle process's few milliseconds a second. Elsewhere (macOS): None, said "n/a".

def cpu_seconds(pid: int) -> float | None:
    """CPU time of a running process so far (the schedstat of each of its threads, else
    user plus system time from /proc/PID/stat), Linux only; None elsewhere or if gone."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
        with open(f"/proc/{pid}/task/{tasks[0]}/schedstat"):
            pass
    except (OSError, IndexError):
        tasks = None
    if tasks is not None:
        total = 0
        for task in tasks:
            try:
                with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                continue            # a thread that ended meanwhile
        return total / 1e9
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_of(pids: dict) -> dict:
    """name -> CPU seconds so far (None where unknown), for name -> pid."""
    return {name: cpu_seconds(pid) for name, pid in pids.items()}


def cpu_delta(before: dict, after: dict, seconds: float) -> dict:
    """name -> share of one core used between two `cpu_of` samples `seconds` apart."""
    return {name: None if before[name] is None or after[name] is None
            else round((after[name] - before[name]) / seconds, 3) for name in before}


RAM_DIR = "/dev/shm"


def files_dir() -> str:
    """Where the bench's processes keep their files (journal, logs, latency log).

    A folder in RAM where the system has one (Linux's /dev/shm), so that the figures
    measure IPC and not the disk (why: docs/performance.md, "The bench's files in RAM");
    `--journal-cost DIR` measures what a disk costs an order. Elsewhere, the usual
    temporary folder."""
    if os.path.isdir(RAM_DIR) and os.access(RAM_DIR, os.W_OK | os.X_OK):
        return RAM_DIR
    return tempfile.gettempdir()


def machine() -> dict:
    """CPU count and model, Python version and OS: what a figure was measured on."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
                         model)
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "system": f"{platform.system()} {platform.release()}"}
