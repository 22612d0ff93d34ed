"""Start the four processes in the right order, wait until each is ready, stop them all.

    with Launcher(free_ports=True) as lab:      # or Launcher(Config(...))
        print(lab.config.price_port)            # the port the gateway really bound
        ...

Each process is ``sys.executable -m hftlab.<module>`` in its own session, with its
output in its own log file in ``run_dir``. "Ready" means the process wrote its ready
line (`hftlab.process.ready`); the launcher reads the addresses it bound from that line,
so port 0 ("any free port") works and tests can run beside a live lab.

Children never outlive the launcher: each gets the read end of a *lifeline* pipe whose
write end only the launcher holds (see `hftlab.process.watch_lifeline`). If the launcher
(a notebook kernel, a test, ``hftlab run``) dies, even by SIGKILL, the kernel closes the
pipe and every child exits cleanly, removing the shared-memory book on its way out. A
stop signals a child's whole process group, and stops what it left there.

Supervision: `Launcher.supervise` looks once at every process and restarts the dead
ones, leaving the others alone (same pids); call it now and then (``hftlab run`` does,
ten times a second; a notebook can, from a loop: no thread is needed). A dead process is
restarted after a back-off (RESTART_DELAY, doubling with each death in the last
`restart_window` seconds); one that dies more than `max_restarts` times within
`restart_window` seconds is given up on: the launcher stops everything and `supervise`
raises `GaveUp`. A restart that fails before its ready line counts as one more death.
Each death and restart is an `Event` whose message quotes the end of the process's log.

Files: the run directory is made user-only (0700) when the launcher creates it, and
each log is user-only (0600) like the order manager's journal: they repeat the orders
and the clients' addresses.

Bring your own process: ``commands={"strategy": ["python", "my_strategy.py"]}`` (or a
string, split like a shell would) runs that command in the role instead of ours, with the
same configuration, log, readiness wait, stop, lifeline and supervision (the contract:
docs/roles.md; ``hftlab conform`` checks it), through `hftlab.keeper`, so that it never
outlives the launcher even if it ignores its lifeline.

Signals: the launcher leaves its own process's signal handlers alone (it may live in a
notebook kernel). Children start in their own session, so a Ctrl-C typed in a terminal
reaches only the launcher, which stops them in order with SIGTERM. A launcher in a
process that ignores SIGCHLD cannot read its children's exit status (the kernel reaps
them at once and it reads 0); ``hftlab run`` therefore sets SIGCHLD back to its default.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field

import hftlab
from hftlab import book, children, net, process
from hftlab.children import Child
from hftlab.config import Config
from hftlab.journal import read_journal

__all__ = ["NAMES", "READY_TIMEOUT", "STOP_TIMEOUT", "MAX_RESTARTS", "RESTART_WINDOW",
           "RESTART_DELAY", "LOG_MODE", "DIR_MODE", "LaunchError", "GaveUp", "Event", "Child",
           "Launcher"]

# Dependency order: servers first, then the book's writer, then its reader.
NAMES = ("gateway", "order_manager", "orderbook", "strategy")
READY_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0
# Supervision: at most MAX_RESTARTS restarts of one process within RESTART_WINDOW s;
# the first after RESTART_DELAY s, then twice as long for each further recent death.
MAX_RESTARTS = 3
RESTART_WINDOW = 60.0
RESTART_DELAY = 0.5
LOG_MODE = 0o600   # logs and the run directory are the user's alone, like the journal
DIR_MODE = 0o700


class LaunchError(RuntimeError):
    """A process did not start; the message names it and quotes the end of its log."""


class GaveUp(LaunchError):
    """A process died too often to restart it again; the launcher stopped everything."""


@dataclass(frozen=True)
class Event:
    """What `Launcher.supervise` did: a process "died" or was "restarted".
    (Giving up is not an event: `supervise` raises `GaveUp`.)"""
    kind: str
    name: str
    pid: int        # the dead process's pid, or the restarted one's new pid
    message: str    # one sentence for a person (deaths also quote the end of the log)


@dataclass
class _Watch:
    """Supervision state of one process name."""
    deaths: deque = field(default_factory=deque)  # monotonic times of recent deaths
    due: float | None = None                      # when its restart is due
    seen_dead: int | None = None                  # pid whose death was reported


def _package_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(hftlab.__file__)))


_live = weakref.WeakSet()
_temp_run_dirs = set()


@atexit.register
def _stop_all_at_exit() -> None:
    for launcher in list(_live):
        launcher.stop()
    for path in list(_temp_run_dirs):
        shutil.rmtree(path, ignore_errors=True)


class Launcher:
    """The processes of one lab: `start`, `supervise`, `kill`, `restart`, `stop`, `close`.

    `free_ports` takes any free ports and a fresh book name; `run_dir` holds the logs and
    the journal (a temporary folder by default); `max_restarts` and `restart_window` are
    the supervision limit (``max_restarts=0``: give up at the first death).
    """

    def __init__(self, config: Config | None = None, *, free_ports: bool = False,
                 run_dir: str | None = None, keep_run_dir: bool = False, names=NAMES,
                 ready_timeout: float = READY_TIMEOUT, max_restarts: int = MAX_RESTARTS,
                 restart_window: float = RESTART_WINDOW, commands: dict | None = None):
        config = config or Config()
        self.commands, self.typed = _commands(commands)
        if free_ports:
            config = config.replace(price_port=0, news_port=0, order_port=0,
                                    shm_name=book.new_name())
        self.run_dir = run_dir or tempfile.mkdtemp(prefix="hftlab-")
        if run_dir is None and not keep_run_dir:
            # Ours to remove: at close(), or when this Python exits. Not at stop(), so the
            # logs and the journal can still be read after the processes have stopped.
            _temp_run_dirs.add(self.run_dir)
        if not os.path.isdir(self.run_dir):
            # Not the user's umask: the logs repeat orders and client addresses.
            os.makedirs(self.run_dir, mode=DIR_MODE)
            os.chmod(self.run_dir, DIR_MODE)
        if config.journal == Config.journal:
            config = config.replace(journal=os.path.join(self.run_dir, "orders.csv"))
        self.config = config
        self.names = tuple(names)
        self.ready_timeout = ready_timeout
        self.max_restarts = max_restarts
        self.restart_window = restart_window
        self._watch = {}  # name -> _Watch, for supervise()
        self.children = {}
        self.facts = {}  # name -> what its ready line said

    # -- starting -------------------------------------------------------------------

    def start(self) -> "Launcher":
        _live.add(self)
        try:
            for name in self.names:
                self.start_one(name)
        except BaseException:
            self.stop()
            raise
        return self

    def start_one(self, name: str) -> Child:
        """Start one process (again) and wait until it is ready."""
        if name not in NAMES:
            raise ValueError(f"unknown process {name!r}; the processes are {', '.join(NAMES)}")
        old = self.children.get(name)
        if old is not None:
            if old.running():
                raise LaunchError(f"{name} is already running as pid {old.pid}")
            old.cut_lifeline()  # it died on its own
        if name in self.commands:
            self._pick_port(name)
        child = self._spawn(name)
        self.children[name] = child
        self.facts[name] = self._wait_ready(child)
        self._learn_ports(name, self.facts[name])
        return child

    def _spawn(self, name: str) -> Child:
        """Start process `name` in a session of its own, with its lifeline, its output going
        to its log (a learner's through `children.relay_output`, which keeps to the size
        limit: our own processes keep to it themselves, with hftlab.process.CappedHandler)."""
        argv, env = self._command_line(name)
        log_path = os.path.join(self.run_dir, f"{name}.log")
        read_end, write_end = os.pipe()
        env[process.LIFELINE_ENV] = str(read_end)
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, LOG_MODE)
        os.fchmod(fd, LOG_MODE)  # also a log left by an older run
        relayed = name in self.commands
        with open(fd, "ab") as log:
            start = log.seek(0, os.SEEK_END)
            pipe_out, output = os.pipe() if relayed else (None, log)
            try:
                popen = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                    env=env, pass_fds=(read_end,),
                    start_new_session=True)  # Ctrl-C in a terminal reaches us, and we stop them in order
            except OSError as exc:  # no such program, not executable
                for end in (read_end, write_end, *((pipe_out, output) if relayed else ())):
                    os.close(end)
                raise LaunchError(f"{self.label(name)} could not start: {exc.strerror or exc}") from None
        os.close(read_end)
        relay = None
        if relayed:
            os.close(output)
            relay = threading.Thread(target=children.relay_output, name=f"{name}-output", daemon=True,
                                     args=(pipe_out, log_path, self.config.log_limit_bytes(), self.label(name)))
            relay.start()
        return Child(name, popen, log_path, start, write_end, relay)

    def _command_line(self, name: str) -> tuple:
        """(argv, environment) of process `name`: ours with the config's flags, or a learner's
        command with every value as flags and in the environment (docs/roles.md)."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_package_root(), env.get("PYTHONPATH")]))
        if name not in self.commands:
            return [sys.executable, "-m", self.module_of(name), *self.config.to_args()], env
        command = self.commands[name]
        if shutil.which(command[0]) is None:
            raise LaunchError(f"{self.label(name)} could not start: {command[0]!r} is not a "
                              "program (not found, or not executable)")
        env.update(self.config.to_env())
        # Through the keeper, so that it dies with us even if it ignores its lifeline.
        return [sys.executable, "-m", "hftlab.keeper", *command, *self.config.to_args(everything=True)], env

    def _wait_ready(self, child: Child) -> dict:
        deadline = time.monotonic() + self.ready_timeout
        started_ns = time.time_ns()
        offset = child.log_start
        while True:
            lines, offset = children.new_lines(child.log_path, offset)
            for line in lines:
                facts = process.parse_ready(line)
                if facts is not None:
                    return facts
            if not child.running():
                child.reap(STOP_TIMEOUT)
                raise LaunchError(
                    f"{self.label(child.name)} exited with status {child.popen.returncode} before "
                    f"it was ready.{_disk_note(child.log_path)} The end of its log "
                    f"({child.log_path}):\n{children.tail(child.log_path, 5)}")
            if time.monotonic() > deadline:
                self._terminate(child)
                raise LaunchError(
                    f"{self.label(child.name)} was not ready within {self.ready_timeout:g} s "
                    f"(no line with ': ready: ', see docs/roles.md).{self._traded_note(child, started_ns)}"
                    f"{_disk_note(child.log_path)} The end of its log ({child.log_path}):\n"
                    f"{children.tail(child.log_path, 5)}")
            time.sleep(0.01)  # polling a file: the child gives no other signal

    def _traded_note(self, child: Child, since_ns: int) -> str:
        """For a strategy that never said it was ready: whether it traded all the same."""
        if child.name != "strategy":
            return ""
        booked = sum(1 for row in read_journal(self.config.journal) if int(row.get("recv_ns") or 0) >= since_ns)
        if not booked:
            return ""
        return (f" Yet it traded: the order manager booked {booked} orders meanwhile. A process must "
                "print its ready line once it is ready, before it trades.")

    def module_of(self, name: str) -> str:
        """The module our process `name` runs: ``hftlab.<name>``, or the bench's measuring
        variant of it when the config asks for what only that one does (a latency log, bursts)."""
        if name == "strategy" and self.config.latency_log:
            return "hftlab.bench.timed"
        if name == "gateway" and self.config.bench_ticks:
            return "hftlab.bench.burst"
        return f"hftlab.{name}"

    def label(self, name: str) -> str:
        """How a message names a process: ``strategy`` or ``the strategy command 'python x.py'``
        (as the learner typed it)."""
        if name in self.commands:
            return f"the {name} command {self.typed[name]!r}"
        return name

    def _pick_port(self, name: str) -> None:
        """A learner's server is given real ports, not 0: it need not report what it bound."""
        keys = {"gateway": ("price_port", "news_port"), "order_manager": ("order_port",)}.get(name, ())
        for key in keys:
            if getattr(self.config, key) == 0:
                taken = {self.config.price_port, self.config.news_port, self.config.order_port}
                port = net.free_port(self.config.host)
                while port in taken:
                    port = net.free_port(self.config.host)
                self.config = self.config.replace(**{key: port})

    def _learn_ports(self, name: str, facts: dict) -> None:
        def port(key):  # a learner's ready line may leave the address out: it has the config's
            given = {"price": "price_port", "news": "news_port", "orders": "order_port"}[key]
            try:
                return int(facts[key].rsplit(":", 1)[1])
            except (KeyError, ValueError, IndexError):
                return getattr(self.config, given)
        if name == "gateway":
            self.config = self.config.replace(price_port=port("price"), news_port=port("news"))
        elif name == "order_manager":
            self.config = self.config.replace(order_port=port("orders"))

    # -- watching -------------------------------------------------------------------

    def status(self) -> dict:
        """name -> {'pid', 'running', 'returncode'} for every process started."""
        return {name: {"pid": c.pid, "running": c.running(), "returncode": c.popen.returncode}
                for name, c in self.children.items()}

    def dead(self) -> list:
        """(name, returncode, end of log) for each started process that is no longer running."""
        return [(name, c.popen.returncode, children.tail(c.log_path, 10))
                for name, c in self.children.items() if not c.running()]

    def supervise(self) -> list:
        """Look once at every process: report deaths, restart the dead ones when due.

        Returns the `Event`s of this call (often none). Does not wait for back-offs:
        call it again later. The processes that did not die are not touched. Raises
        `GaveUp` (after stopping everything) when one died more than `max_restarts`
        times within `restart_window` seconds.
        """
        events = []
        now = time.monotonic()
        for name, child in list(self.children.items()):
            watch = self._watch.setdefault(name, _Watch())
            if child.running() or watch.seen_dead == child.pid:
                continue
            child.reap(STOP_TIMEOUT)
            watch.seen_dead = child.pid
            how = children.how_ended(child.popen.returncode) + _left_note(child)
            events.append(self._died(name, watch, now, how,
                                     children.tail(child.log_path, 10), child.pid))
        for name, watch in self._watch.items():
            if watch.due is None or now < watch.due:
                continue
            watch.due = None
            try:
                child = self.start_one(name)
            except LaunchError:
                failed = self.children[name]
                failed.reap(STOP_TIMEOUT)
                watch.seen_dead = failed.pid
                events.append(self._died(name, watch, time.monotonic(),
                                         f"{children.how_ended(failed.popen.wait())} before it was ready",
                                         children.tail(failed.log_path, 10), failed.pid))
                continue
            recent = len(watch.deaths)
            events.append(Event("restarted", name, child.pid,
                                f"restarted {name} as pid {child.pid} (restart {recent} of "
                                f"{self.max_restarts} allowed within {self.restart_window:g} s)"))
        return events

    def _died(self, name, watch, now, how, log, pid) -> Event:
        """Count a death; schedule the restart, or give up and stop everything."""
        watch.deaths.append(now)
        while watch.deaths and watch.deaths[0] < now - self.restart_window:
            watch.deaths.popleft()
        recent = len(watch.deaths)
        if recent > self.max_restarts:
            self.stop()
            raise GaveUp(f"{name} died {recent} times within {self.restart_window:g} s "
                         f"(last: {how}); gave up on it and stopped everything. "
                         f"The end of its log ({self.children[name].log_path}):\n{log}")
        delay = RESTART_DELAY * 2 ** (recent - 1)
        watch.due = now + delay
        return Event("died", name, pid, f"{name} (pid {pid}) {how}; restarting it in "
                                        f"{delay:g} s. The end of its log:\n{log}")

    def log(self, name: str, lines: int = 20) -> str:
        return children.tail(self.children[name].log_path, lines)

    def pid(self, name: str) -> int:
        return self.children[name].pid

    # -- stopping -------------------------------------------------------------------

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Send a signal to one process (a crash, by default) and reap it; returns its status."""
        child = self.children[name]
        if child.running():
            child.popen.send_signal(sig)
        code = child.popen.wait(STOP_TIMEOUT)
        child.reap(STOP_TIMEOUT)
        return code

    def restart(self, name: str) -> Child:
        """Stop one process (if running) and start it again; the others are not touched."""
        child = self.children.get(name)
        if child is not None:
            self._terminate(child)
        return self.start_one(name)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop every process, the strategy first: SIGTERM, then SIGKILL after `timeout`."""
        for name in reversed(NAMES):
            child = self.children.get(name)
            if child is not None:
                self._terminate(child, timeout)
                # Stopped on purpose: not a death for supervise(), and no restart pending.
                self._watch[name] = _Watch(seen_dead=child.pid)
        _live.discard(self)

    def close(self) -> None:
        """Stop everything, and remove the run directory if the launcher made it."""
        self.stop()
        if self.run_dir in _temp_run_dirs:
            _temp_run_dirs.discard(self.run_dir)
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def _terminate(self, child: Child, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM its whole process group (whatever it started gets it too), SIGKILL after
        `timeout` s if it is still there (`child.forced`), then what it left behind in the group
        (`child.leftovers`, stopped too)."""
        if child.running():
            children.signal_group(child.group, signal.SIGTERM)
            try:
                child.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                child.forced = True
                children.signal_group(child.group, signal.SIGKILL)
                child.popen.wait()
        child.reap(timeout)
        if child.name == "orderbook":
            # A SIGKILLed orderbook could not remove its book; nobody else will.
            with contextlib.suppress(book.BookError):  # another user's segment: not ours to judge
                book.remove_stale(self.config.shm_name)
        # A reader killed in its sleep leaves its bell; its book may be gone already.
        book.remove_dead_bells(self.config.shm_name)

    def __enter__(self) -> "Launcher":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        running = [n for n, c in self.children.items() if c.running()]
        return f"<Launcher {self.run_dir} running: {', '.join(running) or 'nothing'}>"


def _left_note(child: Child) -> str:
    """'; it left pid 123 (python child.py) running, stopped now' or ''."""
    if not child.leftovers:
        return ""
    return f"; it left {children.describe(child.leftovers)} running (stopped now)"


def _disk_note(path: str) -> str:
    """A sentence if the disk holding `path` is full (a log that cannot be written shows no
    ready line), else ''."""
    try:
        st = os.statvfs(os.path.dirname(os.path.abspath(path)))
    except OSError:
        return ""
    free = st.f_bavail * st.f_frsize
    if free >= 1 << 20:
        return ""
    return (f" The disk holding {os.path.dirname(os.path.abspath(path))} is full ({free} bytes free), so "
            "its log cannot be written: free some space.")


def _commands(commands) -> tuple:
    """({role: argv list to run}, {role: the command as typed, for messages}) from {role or
    its dashed name: list or shell-like string}."""
    run, typed = {}, {}
    for role, cmd in (commands or {}).items():
        name = role.replace("-", "_")
        if name not in NAMES:
            raise ValueError(f"unknown role {role!r} in commands; the roles are {', '.join(NAMES)}")
        argv = shlex.split(cmd) if isinstance(cmd, str) else [str(a) for a in cmd]
        if not argv:
            raise ValueError(f"the {name} command is empty")
        typed[name] = shlex.join(argv)
        run[name] = [lab_python(argv[0]), *argv[1:]]
    return run, typed


def lab_python(program: str) -> str:
    """`program`, or the Python running the lab (with hftlab in it) for python and python3
    (docs/roles.md)."""
    return sys.executable if program in ("python", "python3") else program

