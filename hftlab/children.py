"""Child processes, from the parent's side: wait for a condition, follow a child's log, stop a
child and whatever it left in its process group. Used by the launcher, the bench, ``hftlab
conform`` and the keeper; the children themselves are `hftlab.process`'s subject."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field

__all__ = ["Child", "relay_output", "wait_for", "terminate", "MAX_LINE", "TAIL_BYTES", "TAIL_LINE", "cut", "tail",
           "new_lines", "signal_group", "group_members", "stop_group", "describe", "how_ended"]

# A log line longer than this is shown cut (a program may print for ever without a newline:
# whoever follows its log must not hold all of that in memory, nor read it again and again).
MAX_LINE = 64 * 1024
# What `tail` reads from the end of a log, at most, and how much of a line it shows: a tail
# is quoted in messages for people.
TAIL_BYTES = 256 * 1024
TAIL_LINE = 1000


def wait_for(condition, timeout: float = 10.0, what: str = "the condition", interval: float = 0.01,
             sleep=time.sleep):
    """Poll `condition` until it returns something truthy, and return that.

    Raises TimeoutError after `timeout` seconds, naming `what` was awaited. Used where no
    event says a thing has happened (another process's log line, its shared memory).
    `sleep(seconds)` waits between two looks (one that may end the wait by raising).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        sleep(interval)


def terminate(child, timeout: float) -> int:
    """Stop a child politely: SIGTERM, then SIGKILL if it has not exited after `timeout` s.

    `child` is a `subprocess.Popen` (the launcher's, the bench's) or a
    `multiprocessing.Process` (the comparisons' helpers in `hftlab.alternatives`).
    Returns its exit status (negative: the signal that ended it). Every hftlab process
    turns SIGTERM into its clean exit (`hftlab.process.main`); SIGKILL is for one that hangs."""
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
    left = _members_after(pgid, grace)
    if not left:
        return []
    signal_group(pgid, signal.SIGTERM)
    _members_after(pgid, timeout)
    signal_group(pgid, signal.SIGKILL)
    # A SIGKILL is sent at once but acted on when the process next runs: on a busy machine,
    # a moment later. Return once they are gone (one stuck in the kernel: after a second).
    _members_after(pgid, 1.0)
    return left


def _members_after(pgid: int, seconds: float) -> list:
    """Group `pgid`'s members once they are all gone, or as they are `seconds` from now."""
    deadline = time.monotonic() + seconds
    while (members := group_members(pgid)) and time.monotonic() < deadline:
        time.sleep(0.01)
    return members


def describe(processes, most: int = 3) -> str:
    """'pid 123 (python child.py), pid 124 (sleep 60)': processes for a message. The program
    is named without its folder (a venv's python is a long path that would take the room
    the arguments need)."""
    shown = ", ".join(f"pid {pid} ({cut(_short_command(command), 80)})" for pid, command in processes[:most])
    return shown + (f" and {len(processes) - most} more" if len(processes) > most else "")


def _short_command(command: str) -> str:
    """'/long/venv/bin/python child.py' -> 'python child.py'."""
    program, space, rest = command.partition(" ")
    return os.path.basename(program) + space + rest


@dataclass
class Child:
    name: str
    popen: subprocess.Popen
    log_path: str
    log_start: int  # where this run's output begins in the log file
    lifeline: int  # our write end of its lifeline pipe
    relay: threading.Thread | None = None  # copies a learner's command's output into its log (relay_output)
    forced: bool = False  # it had to be killed (SIGKILL): it did not exit on SIGTERM in time
    leftovers: list = field(default_factory=list)  # [(pid, command)] of its group left after it

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def group(self) -> int:
        """Its process group: it leads its own session, so the group's id is its pid."""
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def cut_lifeline(self) -> None:
        """Close our end of its lifeline (once); done when it has exited."""
        if self.lifeline >= 0:
            os.close(self.lifeline)
            self.lifeline = -1

    def reap(self, timeout: float) -> None:
        """Once it has exited: stop what it left in its group, and let its output reach the log."""
        self.leftovers = stop_group(self.group, timeout)
        self.cut_lifeline()
        if self.relay is not None:
            self.relay.join(1.0)  # what it printed last is in the log before anyone reads it


def relay_output(source: int, log_path: str, limit: int | None, label: str) -> None:
    """Copy a command's output (the read end of its pipe) into its log, `limit` bytes at
    most, then one line saying the rest is dropped; read to the end in any case, so the
    command never blocks on a full pipe."""
    left = limit
    with open(source, "rb", buffering=0) as out, open(log_path, "ab", buffering=0) as log:
        while data := out.read(65536):
            if left is None:
                log.write(data)
            elif left > 0:
                log.write(data[:left])
                left -= len(data)
                if left <= 0:
                    log.write(f"\nhftlab: {label} printed more than its log may keep "
                              f"({limit // 2**20} MiB, --log-limit-mb); the rest of this run's output "
                              "is dropped\n".encode())


def how_ended(returncode: int) -> str:
    """'exited with status 2', 'was killed by SIGKILL'."""
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"
