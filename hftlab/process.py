"""What every hftlab process has in common: flags, logging, a ready line, clean exits.

Each process module defines ``run(config, log)`` and calls `main` (a command with flags
of its own, such as ``hftlab record``, passes `add_arguments` and gets ``run(config, log,
args)``). `main` parses
the shared `Config` flags, logs with the process's name, turns SIGTERM into the same
clean exit as Ctrl-C, watches the launcher's *lifeline* (see `watch_lifeline`) and
turns a `Fatal` error into one sentence and exit status 2 instead of a traceback.

Signal dispositions, decided here rather than inherited by accident:

- SIGINT (Ctrl-C) and SIGTERM always stop the process cleanly (exit status 0, the book
  removed), even when they were inherited ignored. A background job of a shell script
  starts with SIGINT and SIGQUIT ignored (POSIX), and Python keeps an inherited ignored
  SIGINT; a lab process that then ignored Ctrl-C and the tests' SIGINT would go on
  trading. To keep a process out of reach of a terminal's Ctrl-C, start it in its own
  session (``setsid``), as the launcher does, rather than by ignoring SIGINT.
- A stop must not be lost. Python runs a signal handler between any two bytecodes,
  and an exception raised where Python cannot pass it on (a destructor, a weakref
  callback, such as the one the import system runs when a lazy import finishes) is
  printed as "Exception ignored" and dropped: the process would go on running after
  SIGTERM. `main` therefore stops it again when that happens, by SIGALRM (an alarm
  10 ms later, handled like SIGTERM), until the stop lands in ordinary code
  (`_stop_again_if_swallowed`).
- SIGHUP and SIGQUIT are left as inherited, so ``nohup`` keeps working.
- SIGPIPE is ignored (Python does that at start-up, whatever was inherited): a write to
  a peer that has gone raises BrokenPipeError / ConnectionResetError, which the servers
  handle per connection, instead of killing the process.
- SIGCHLD is not used: the processes start no children.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import gc
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import NamedTuple

from hftlab import config as _config

__all__ = ["LIFELINE_ENV", "EXIT_FATAL", "Fatal", "LOG_FORMAT", "LogLine", "CappedHandler", "setup_logging",
           "ready", "parse_ready", "parse_log_line", "address", "peer", "no_delay", "listen_error",
           "warn_if_exposed", "Backoff", "dial", "watch_lifeline", "main", "wait_for",
           "until_stopped", "Connections", "MAX_LINE", "cut", "tail", "new_lines", "terminate",
           "signal_group", "group_members", "stop_group", "describe"]

LIFELINE_ENV = "HFTLAB_LIFELINE_FD"
EXIT_FATAL = 2


class Fatal(Exception):
    """Something the process cannot work without; the message says what to do."""


# A log line: "14:03:07.123 strategy: the message". Written by `setup_logging`, read
# back by `parse_log_line` (kept side by side: change one, change the other).
LOG_FORMAT = "%(asctime)s.%(msecs)03d %(name)s: %(message)s"
_LOG_LINE = re.compile(r"(\d\d:\d\d:\d\d\.\d{3}) (\w+): (.*)")


class LogLine(NamedTuple):
    time: str  # HH:MM:SS.mmm, local time
    name: str  # the process that wrote it
    text: str  # the message


class CappedHandler(logging.StreamHandler):
    """A StreamHandler that writes at most `limit` bytes (None: no limit), then one line that
    says the log was cut, then nothing: a lab left running for days must not fill the disk."""

    def __init__(self, stream, limit: int | None = None):
        super().__init__(stream)
        self.left = limit

    def emit(self, record) -> None:
        if self.left is None:
            return super().emit(record)
        if self.left <= 0:
            return
        try:
            line = self.format(record) + self.terminator
            self.left -= len(line)
            if self.left <= 0:
                line = (f"{self.formatter.formatTime(record, '%H:%M:%S')}.{int(record.msecs):03d} {record.name}: "
                        "this log reached its size limit (--log-limit-mb); nothing more is written to it\n")
            self.stream.write(line)
            self.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)


def setup_logging(name: str, limit: int | None = None) -> logging.Logger:
    """The process's logger: lines in `LOG_FORMAT` on stdout, `limit` bytes at most."""
    # Line-buffered so a log file (the launcher's) shows each line as it happens.
    sys.stdout.reconfigure(line_buffering=True)
    handler = CappedHandler(sys.stdout, limit)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%H:%M:%S"))
    log = logging.getLogger(name)
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
    return log


def ready(log: logging.Logger, **facts) -> None:
    """Log the ready line. The launcher waits for it and reads the facts from it.

    Everything made until now (modules, numpy, the book's views) lives as long as the
    process, so it is frozen out of the cyclic garbage collector's sight (`gc.freeze`):
    a full collection then looks only at what came after. Unfrozen, one took 17-21 ms in
    a burst-fed orderbook here, a stall for every tick behind it."""
    gc.collect()
    gc.freeze()
    log.info("ready: " + " ".join(f"{k}={v}" for k, v in facts.items()))


def parse_ready(line: str) -> dict | None:
    """The facts of a ready line written by `ready`, or None if it is not one."""
    _, sep, rest = line.partition(": ready: ")
    if not sep:
        return None
    return dict(item.split("=", 1) for item in rest.split() if "=" in item)


def parse_log_line(line: str) -> LogLine | None:
    """The time, process name and message of a line `setup_logging` wrote, or None if it
    is not one (a traceback's lines, say)."""
    m = _LOG_LINE.fullmatch(line)
    return LogLine(*m.groups()) if m else None


def address(host: str, port: int) -> str:
    return f"{host}:{port}"


def peer(writer) -> str:
    """host:port of an asyncio connection's other end ("?" once it is gone)."""
    name = writer.get_extra_info("peername")
    return address(*name[:2]) if name else "?"


def no_delay(sock) -> None:
    """Turn Nagle off: our messages are small and latency-sensitive (lesson 01)."""
    with contextlib.suppress(OSError):  # macOS refuses it on a socket already shut down
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def listen_error(exc: OSError, host: str, port: int, flag: str) -> Fatal:
    """Turn a failed bind into the one sentence a learner needs."""
    if exc.errno == errno.EADDRINUSE:
        return Fatal(f"port {port} on {host} is already in use (is another hftlab running? "
                     f"stop it with Ctrl-C, or pass {flag} 0 to take any free port)")
    if exc.errno == errno.EADDRNOTAVAIL:
        return Fatal(f"cannot bind to {host}: it is not an address of this machine (use --host 127.0.0.1)")
    return Fatal(f"cannot listen on {host}:{port}: {exc.strerror}")


def warn_if_exposed(log: logging.Logger, host: str) -> None:
    if not _config.is_loopback(host):
        log.warning(f"listening on {host}, not loopback: these ports have no authentication, "
                    "anyone who can reach this machine can read the feeds and send orders")


class Backoff:
    """Delays for reconnecting: 0.1 s, doubling, at most `cap` seconds."""

    def __init__(self, first: float = 0.1, cap: float = 2.0):
        self.first, self.cap, self.delay = first, cap, first

    def next(self) -> float:
        delay, self.delay = self.delay, min(self.delay * 2, self.cap)
        return delay

    def reset(self) -> None:
        self.delay = self.first


def dial(host: str, port: int, timeout: float = 1.0) -> socket.socket:
    """Connect, with Nagle off: our messages are small and latency-sensitive."""
    sock = socket.create_connection((host, port), timeout=timeout)
    no_delay(sock)
    return sock


def watch_lifeline() -> None:
    """Exit cleanly when the process that launched us dies, however it dies.

    The launcher keeps the write end of a pipe and gives us the read end. Nobody ever
    writes to it: a read returns only when every write end is closed, which the kernel
    does when the launcher exits, even on SIGKILL. Works on Linux and macOS alike.
    """
    fd = os.environ.pop(LIFELINE_ENV, None)
    if fd is None:
        return

    def wait():
        try:
            while os.read(int(fd), 1):
                pass
        except OSError:
            pass
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=wait, name="lifeline", daemon=True).start()


def _stop_again_if_swallowed(unraisable) -> None:
    """sys.unraisablehook: a KeyboardInterrupt raised in a destructor or callback was
    dropped; deliver the stop again so it lands in ordinary code (see the module
    docstring). By an alarm 10 ms from now rather than a signal at once, which would be
    handled here, inside this hook, and dropped once more."""
    if issubclass(unraisable.exc_type, KeyboardInterrupt):
        signal.setitimer(signal.ITIMER_REAL, 0.01)
        return
    sys.__unraisablehook__(unraisable)


def main(name: str, description: str, run, add_arguments=None, argv=None) -> int:
    """Run a process: parse flags, log, handle Ctrl-C/SIGTERM and fatal errors.

    `add_arguments(parser)`, if given, adds the command's own flags; `run` then gets the
    parsed flags as a third argument."""
    parser = argparse.ArgumentParser(prog=f"hftlab {name}", description=description)
    if add_arguments:
        add_arguments(parser)
    _config.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        config = _config.from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    log = setup_logging(name, limit=config.log_limit_bytes())
    # SIGTERM (the launcher's stop, `kill`) takes the same clean path as Ctrl-C, and Ctrl-C
    # works even if SIGINT was inherited ignored (see the module docstring).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGALRM, signal.default_int_handler)
    sys.unraisablehook = _stop_again_if_swallowed
    watch_lifeline()
    try:
        # run returns on its own only when an asyncio server was stopped
        run(config, log, args) if add_arguments else run(config, log)
    except KeyboardInterrupt:
        pass
    except Fatal as exc:
        log.error(f"cannot run: {exc}")
        return EXIT_FATAL
    log.info("stopped")
    return 0


def wait_for(condition, timeout: float = 10.0, what: str = "the condition", interval: float = 0.01):
    """Poll `condition` until it returns something truthy, and return that.

    Raises TimeoutError after `timeout` seconds, naming `what` was awaited. Used where no
    event says a thing has happened (another process's log line, its shared memory).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


# -- child processes and their logs (the launcher's, the bench's) -----------------------

def terminate(child, timeout: float) -> int:
    """Stop a child politely: SIGTERM, then SIGKILL if it has not exited after `timeout` s.

    `child` is a `subprocess.Popen` (the launcher's, the bench's) or a
    `multiprocessing.Process` (the comparisons' helpers in `hftlab.alternatives`).
    Returns its exit status (negative: the signal that ended it). Every hftlab process
    turns SIGTERM into its clean exit (see `main`); SIGKILL is for one that hangs."""
    if isinstance(child, subprocess.Popen):
        running, wait, status = (lambda: child.poll() is None), _popen_wait(child), child.wait
    else:  # a multiprocessing.Process: joined, not waited for
        running, wait, status = child.is_alive, child.join, (lambda: child.exitcode)
    if running():
        child.terminate()
        wait(timeout)
        if running():
            child.kill()
    wait(None)
    return status()


def _popen_wait(popen: subprocess.Popen):
    """popen.wait(timeout) that, like Process.join, returns when the time is up."""
    def wait(timeout):
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(timeout)
    return wait


# A log line longer than this is shown cut (a program may print for ever without a newline:
# whoever follows its log must not hold all of that in memory, nor read it again and again).
MAX_LINE = 64 * 1024
# What `tail` reads from the end of a log, at most, and how much of a line it shows: a tail
# is quoted in messages for people.
TAIL_BYTES = 256 * 1024
TAIL_LINE = 1000


def cut(line: str, limit: int = MAX_LINE) -> str:
    """`line`, or its first `limit` characters and a note that says it was cut."""
    return line if len(line) <= limit else f"{line[:limit]} [... cut: {len(line) - limit} more characters]"


def tail(path: str, lines: int = 10) -> str:
    """The last `lines` lines of a log file ("" if it does not exist), each cut to TAIL_LINE
    characters; only the file's last TAIL_BYTES are read."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - TAIL_BYTES))
            data = f.read()
    except FileNotFoundError:
        return ""
    text = data.decode(errors="replace")
    kept = text.splitlines(keepends=True)[-lines:] if lines > 0 else []
    return "".join(cut(line.rstrip("\n"), TAIL_LINE) + ("\n" if line.endswith("\n") else "") for line in kept)


def new_lines(path: str, offset: int, limit: int = 1 << 20) -> tuple:
    """(the complete lines written to `path` from byte `offset` on, the offset after them).

    For following a log another process is writing: a line still being written (no
    newline yet) is left for the next call, so no line is ever read in two pieces, unless
    it is longer than MAX_LINE: then what there is of it is given, cut, and the offset moves
    past it (its rest comes as another piece). At most `limit` bytes are read a call, so
    memory stays bounded whatever the process prints."""
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(limit)
    end = data.rfind(b"\n") + 1
    lines = [cut(line) for line in data[:end].decode(errors="replace").splitlines()]
    if len(data) - end >= MAX_LINE:  # no newline in sight
        lines.append(cut(data[end:].decode(errors="replace")) + " [no newline yet]")
        end = len(data)
    return lines, offset + end


def signal_group(pgid: int, sig: int) -> None:
    """Send `sig` to every process of group `pgid`, if any is left."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def group_members(pgid: int) -> list:
    """[(pid, command line), ...] of the processes in process group `pgid` that still run
    (a zombie runs no code: left out)."""
    if not os.path.isdir("/proc/self"):  # macOS: no /proc
        out = subprocess.run(["ps", "-A", "-o", "pid=,pgid=,state=,command="], capture_output=True,
                             text=True).stdout
        rows = [line.split(None, 3) for line in out.splitlines()]
        return [(int(r[0]), r[3] if len(r) > 3 else "?") for r in rows
                if len(r) >= 3 and r[1] == str(pgid) and not r[2].startswith("Z")]
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                state, _, group = f.read().rsplit(b")", 1)[1].split()[:3]
            if state == b"Z" or int(group) != pgid:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                command = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, ValueError):  # gone meanwhile
            continue
        found.append((int(entry), command or "?"))
    return found


def stop_group(pgid: int, timeout: float, grace: float = 1.0) -> list:
    """Stop what is left of process group `pgid` once its leader has exited, and return it
    as [(pid, command line), ...] (empty: nothing was left).

    What is still there `grace` seconds after the leader exited (it may have had the
    leader's SIGTERM, and be on its way out) gets SIGTERM, and SIGKILL `timeout` seconds
    later. A process that left the group (``setsid``) is out of reach."""
    deadline = time.monotonic() + grace
    while (left := group_members(pgid)) and time.monotonic() < deadline:
        time.sleep(0.02)
    if not left:
        return []
    signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.02)
    signal_group(pgid, signal.SIGKILL)
    return left


def describe(processes, most: int = 3) -> str:
    """'pid 123 (python child.py), pid 124 (sleep 60)': processes for a message."""
    shown = ", ".join(f"pid {pid} ({cut(command, 80)})" for pid, command in processes[:most])
    return shown + (f" and {len(processes) - most} more" if len(processes) > most else "")


# -- asyncio servers (the gateway) ---------------------------------------------------------

async def until_stopped(*work) -> None:
    """Run the `work` coroutines until Ctrl-C or SIGTERM (or until one of them fails).

    An asyncio server waits here rather than being interrupted by KeyboardInterrupt, so
    that it can hang up on its clients itself: connection tasks cancelled under it are
    reported by asyncio with a traceback in the log.
    """
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopped.set)
    tasks = [asyncio.ensure_future(stopped.wait()), *map(asyncio.ensure_future, work)]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()  # a failure of the work is raised here, not lost
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


class Connections:
    """The open connections of an asyncio server, so that it can close them at shutdown."""

    def __init__(self):
        self.tasks = {}  # the task serving a connection -> its StreamWriter

    def add(self, writer) -> None:
        self.tasks[asyncio.current_task()] = writer

    def remove(self) -> None:
        self.tasks.pop(asyncio.current_task(), None)

    async def hang_up(self, timeout: float = 2.0) -> None:
        """Close every connection and let its task finish by itself."""
        for writer in self.tasks.values():
            writer.close()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=timeout)

