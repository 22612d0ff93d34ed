"""What every role's cases share: the process under test, scripted peers, the runner.

A case is a numbered function that gets a `Ctx`: a fresh `Config` (free ports, a fresh
book name, a temporary run folder) and the learner's command, which it starts in its
role through `hftlab.launcher.Launcher` (so exactly as ``hftlab run --strategy-cmd``
would: same flags, environment, log, ready wait and stop). A case fails by raising
`CaseFailed` with what it saw, and with a hint of its own when it knows the cause (the
process crashed, ignored SIGTERM, listens nowhere); otherwise the case's hint is given.

Every wait has a deadline, and the runner gives each case at most `Case.timeout`
seconds, and a whole run at most `RUN_LIMIT`. Nothing is left behind, whatever happens:
when a case ends, times out or is interrupted, `Ctx.close` closes its peers' sockets
(which wakes a case thread blocked on one), makes every wait of the case raise `Stopped`,
lets no process start any more, stops the process and whatever it left in its process
group, and removes the case's books and its run folder.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import threading
from concurrent import futures
from dataclasses import dataclass, field

from hftlab import book, children
from hftlab.config import Config
from hftlab.launcher import LaunchError, Launcher
from hftlab.conform.peers import LineClient, Server, is_loopback, listeners
from hftlab.net import free_port

__all__ = ["READY_TIMEOUT", "STOP_TIMEOUT", "CASE_TIMEOUT", "RUN_LIMIT", "JOIN_TIMEOUT", "SEEN_LIMIT",
           "HINT_READY", "HINT_EXITED", "HINT_SIGTERM", "HINT_LEFTOVERS", "HINT_BIND", "CaseFailed", "NotReady",
           "Stopped", "Case", "Result", "Ctx", "base_config", "case", "background", "one_line", "end_of",
           "wait_until", "only_loopback"]

READY_TIMEOUT = 20.0   # seconds to write the ready line (a loaded machine is slow to import numpy)
STOP_TIMEOUT = 5.0     # seconds a process gets to exit after SIGTERM (docs/roles.md, "Stop")
CASE_TIMEOUT = 60.0    # seconds a case gets, its ready wait included
RUN_LIMIT = 600.0      # seconds a whole run gets: cases not started by then are not run
JOIN_TIMEOUT = 5.0     # seconds a case thread gets to end once its world is closed
SEEN_LIMIT = 300       # characters of a report line's "seen", and of the end of a log quoted in it

HINT_READY = ("print a line containing ': ready: ' (and flush it) once your ports are bound and the book "
              f"is made, within {READY_TIMEOUT:g} s of the start (docs/roles.md, 'Ready')")
HINT_EXITED = ("it exited on its own: the end of its log (in 'seen') says why; run the command by hand "
               "with the same flags to watch it happen")
HINT_SIGTERM = (f"handle SIGTERM: stop and exit with status 0 within {STOP_TIMEOUT:g} s (in Python: "
                "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0)))")
HINT_LEFTOVERS = ("stop what your program starts when it gets SIGTERM (it gets SIGTERM too, as the whole "
                  "group does)")
HINT_BIND = ("bind HOST only (--host, HFTLAB_HOST: 127.0.0.1), never 0.0.0.0 or '': these ports have no "
             "authentication, so anyone who can reach this machine could use them")


class CaseFailed(AssertionError):
    """A case saw something its role must not do.

    `seen` says what; `hint` what to do, when the cause is known (else the case's own hint
    is given); `log` the end of the process's log, quoted from its end in the report."""

    def __init__(self, seen: str, hint: str | None = None, log: str | None = None):
        super().__init__(seen)
        self.seen, self.hint, self.log = seen, hint, log
        self.explains_exit = False  # it already says how the process ended (see _with_crash)


class NotReady(CaseFailed):
    """The process never wrote its ready line (or exited before, or could not start).
    `first` is true when that was the case's first start: then the later cases are not run
    (a start again within a case, a restart, may fail for reasons of its own)."""

    def __init__(self, seen: str, hint: str | None = None, log: str | None = None, first: bool = True):
        super().__init__(seen, hint, log)
        self.first = first
        self.explains_exit = True


class Stopped(Exception):
    """The case's world was closed under it (its time was up, or conform was interrupted):
    the case thread ends here."""


@dataclass(frozen=True, eq=False)
class Case:
    role: str
    number: int
    title: str      # what is checked, one line
    hint: str       # what to look at when it fails (unless the failure brings its own)
    run: object     # run(ctx) -> None: checks the process in ctx; raises CaseFailed
    timeout: float = CASE_TIMEOUT
    config: dict = field(default_factory=dict)  # changes to a fresh Config for this case


@dataclass
class Result:
    role: str
    number: int
    title: str
    passed: bool
    seen: str = ""
    hint: str = ""
    seconds: float = 0.0
    not_ready: bool = False        # it never became ready: the later cases are not run
    ran: bool = True               # False: not run (see `seen` for why)
    note: str = ""                 # something worth saying even of a case that passed
    ignores_sigterm: bool = False  # it had to be killed: later cases kill it at once

    def line(self) -> str:
        verdict = "pass" if self.passed else "FAIL" if self.ran else "not run"
        head = f"{self.role} {self.number:>2}  {verdict}  {self.title}"
        if not self.ran:
            head = f"{head}  -- {self.seen}"
        elif not self.passed:
            head = f"{head}  -- seen: {self.seen}  -- hint: {self.hint}"
        return f"{head}  -- note: {self.note}" if self.note else head


def _flat(text: str) -> str:
    return " | ".join(part.strip() for part in text.strip().splitlines() if part.strip())


def one_line(text: str, limit: int = 400) -> str:
    """Text on one line, cut to its first `limit` characters (a sentence: its start matters)."""
    flat = _flat(text)
    return flat if len(flat) <= limit else flat[:limit - 3] + "..."


def end_of(text: str, limit: int = SEEN_LIMIT) -> str:
    """Text on one line, cut to its last `limit` characters (a log: its end says what happened)."""
    flat = _flat(text)
    return flat if len(flat) <= limit else "..." + flat[-(limit - 3):]


# -- one case's world ----------------------------------------------------------------------

class _CaseLauncher(Launcher):
    """A Launcher that starts nothing once its case is closed, and keeps every process it
    started (a case may start its process more than once)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.guard = threading.Lock()
        self.shut = False
        self.started = []

    def _spawn(self, name):
        # Under the guard: `close_case` either sees this process in `started`, or this
        # sees `shut` and starts nothing.
        with self.guard:
            if self.shut:
                raise Stopped("the case was closed")
            child = super()._spawn(name)
            self.started.append(child)
            return child

    def close_case(self, kill_at_once: bool, done: set) -> tuple:
        """Start nothing more, stop every process started but those in `done` (pids; SIGKILL at
        once if `kill_at_once`), remove the run folder. What their stops found: ([(pid, command)]
        left in their groups, whether one had to be killed)."""
        with self.guard:
            self.shut = True
        leftovers, forced = [], False
        for child in self.started:
            if child.pid in done:
                continue
            if kill_at_once and child.running():
                children.signal_group(child.group, signal.SIGKILL)
                child.popen.wait()
            self._terminate(child)
            # Read now: the launcher's own stop below reaps it again, and finds nothing more.
            leftovers += child.leftovers
            forced |= child.forced
        self.close()
        return leftovers, forced


class Ctx:
    """One case's world: its config, the learner's process (`start`, `sigterm`), the peers
    and clients the case made (`server`, `client`, `make_book`), its waits (`sleep`,
    `wait_until`) and its teardown (`close`)."""

    def __init__(self, role: str, command: list, config: Config, kill_at_once: bool = False):
        self.role, self.command, self.config = role, command, config
        self.launcher = _CaseLauncher(config, names=(role,), commands={role: command},
                                      ready_timeout=READY_TIMEOUT, max_restarts=0)
        self.kill_at_once = kill_at_once
        self.lock = threading.Lock()
        self.closed = threading.Event()
        self._cleanups = []
        self.notes = []
        self.leftovers = []         # [(pid, command)] its process groups left behind
        self.ignored_sigterm = False
        self.stopped = set()        # pids this case stopped on purpose (`sigterm`)

    # -- the case's things, each closed by `close` --------------------------------------

    def on_cleanup(self, fn) -> None:
        """Call `fn` at `close`; at once (and raise `Stopped`) if the case is closed already."""
        with self.lock:
            if not self.closed.is_set():
                self._cleanups.append(fn)
                return
        with contextlib.suppress(Exception):
            fn()
        raise Stopped("the case was closed")

    def configure(self, **changes) -> None:
        """Change the config the process will be started with (the ports of the case's peers)."""
        self.config = self.config.replace(**changes)
        self.launcher.config = self.config

    def server(self, on_connect) -> "Server":
        s = Server(on_connect)
        self.on_cleanup(s.stop)
        return s

    def client(self, port: int, what: str, rcvbuf: int | None = None, timeout: float = 3.0) -> "LineClient":
        """A client of the process's `port` (`what` names it: "price port"); CaseFailed with a
        hint to bind it if nothing accepts there."""
        c = LineClient(rcvbuf, timeout)
        self.on_cleanup(c.close)
        host = self.config.host
        try:
            c.connect(host, port)
        except socket.timeout:
            raise CaseFailed(f"could not connect to its {what} {host}:{port} within {timeout:g} s: something "
                             "listens there, but does not accept connections (its backlog is full)",
                             hint="accept each connection as it comes and serve each on its own (threads, "
                                  "select or asyncio): one client must not keep the others waiting") from None
        except OSError as exc:
            if self.closed.is_set():
                raise Stopped("the case was closed") from None
            raise CaseFailed(f"could not connect to its {what} {host}:{port}: {exc.strerror or exc}",
                             hint=f"listen on {host}:{port}, its {what}, before printing the ready line "
                                  "(the flags and HFTLAB_* variables give the address)") from None
        return c

    def make_book(self, symbols) -> book.SharedPriceBook:
        """A book the harness owns under the case's book name, removed at `close`."""
        with self.lock:
            if self.closed.is_set():
                raise Stopped("the case was closed")
            b = book.SharedPriceBook(symbols, self.config.shm_name)
            self._cleanups += [b.unlink, b.close]
        return b

    # -- waiting --------------------------------------------------------------------------

    def sleep(self, seconds: float) -> None:
        """time.sleep that ends the case (`Stopped`) if it is closed meanwhile."""
        if self.closed.wait(seconds):
            raise Stopped("the case was closed")

    def wait_until(self, condition, timeout: float, interval: float = 0.01):
        """`condition()`'s first truthy value within `timeout` seconds, else None (a case
        then says what did not happen)."""
        try:
            return children.wait_for(condition, timeout, interval=interval, sleep=self.sleep)
        except TimeoutError:
            return None

    # -- the process under test ---------------------------------------------------------------

    def start(self) -> None:
        """Start the process in its role and wait for its ready line; NotReady if it does not
        come, saying so in one sentence with the end of its log."""
        try:
            self.launcher.start_one(self.role)
        except LaunchError as exc:
            if self.closed.is_set():
                raise Stopped("the case was closed") from None
            raise self._not_ready(exc) from None
        self.config = self.launcher.config  # the ports it was given

    def _not_ready(self, exc: LaunchError) -> NotReady:
        """The launcher's sentence, without the path of a log that `close` is about to remove,
        and with the end of that log."""
        child = self.launcher.children.get(self.role)
        head = str(exc).split("\n", 1)[0]
        first = len(self.launcher.started) <= 1
        if child is None or " could not start: " in head:
            return NotReady(head, hint="give a command that runs here: a program on PATH, or a path to one",
                            first=first)
        head = head.replace(f" ({child.log_path})", "").replace(child.log_path, "its log")
        head = (head.rpartition(" The end of its log")[0] or head).rstrip(".")
        slow = " was not ready within " in head
        return NotReady(head, hint=HINT_READY if slow else HINT_EXITED, log=self.log_end(), first=first)

    def child(self):
        return self.launcher.children.get(self.role)

    def running(self) -> bool:
        child = self.child()
        return child is not None and child.running()

    def alive(self, what: str = "") -> None:
        """CaseFailed if the process has exited."""
        child = self.child()
        if child is not None and not child.running():
            failed = CaseFailed(f"it exited with status {child.popen.returncode}{' ' + what if what else ''}",
                                hint=HINT_EXITED, log=self.log_end())
            failed.explains_exit = True
            raise failed

    def sigterm(self) -> None:
        """SIGTERM the process's whole group, as the launcher does; CaseFailed unless it exits
        with status 0 within STOP_TIMEOUT and leaves nothing running in its group (every
        role's contract: SIGTERM is a clean exit)."""
        child = self.child()
        if not child.running():
            self.alive()
        self.stopped.add(child.pid)
        children.signal_group(child.group, signal.SIGTERM)
        try:
            code = child.popen.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.ignored_sigterm = True
            children.signal_group(child.group, signal.SIGKILL)
            child.popen.wait()
            child.reap(STOP_TIMEOUT)
            failed = CaseFailed(f"still running {STOP_TIMEOUT:g} s after SIGTERM (killed with SIGKILL)",
                                hint=HINT_SIGTERM)
            failed.explains_exit = True
            raise failed from None
        child.reap(STOP_TIMEOUT)  # waits a moment for the group to empty, then stops the rest
        if child.leftovers:
            self.leftovers += child.leftovers
            failed = CaseFailed(f"after SIGTERM it exited but left {children.describe(child.leftovers)} "
                                "running in its process group (stopped now)", hint=HINT_LEFTOVERS)
            failed.explains_exit = True
            raise failed
        if code != 0:
            failed = CaseFailed(f"exit status {code} after SIGTERM", hint=HINT_SIGTERM, log=self.log_end())
            failed.explains_exit = True
            raise failed

    def crashed(self, grace: float = 0.3):
        """The exit status of the process if it exited on its own (not by `sigterm`), else None.
        A process that is dying is given `grace` seconds: its peers see its sockets close a
        moment before its exit status can be read."""
        child = self.child()
        if child is None or child.pid in self.stopped:
            return None
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.popen.wait(grace)
        return child.popen.returncode

    def log_end(self, lines: int = 8) -> str:
        child = self.child()
        if child is None:
            return "(never started)"
        return children.tail(child.log_path, lines).strip() or "(empty)"

    def note(self, text: str) -> None:
        """Something the report line should say even if the case passes."""
        self.notes.append(text)

    # -- teardown -----------------------------------------------------------------------

    def close(self) -> None:
        """Tear the case's world down: the case's peers and clients (which wakes a case thread
        blocked on their sockets), then the process (SIGTERM to its group, SIGKILL after
        STOP_TIMEOUT, or at once if it is known to ignore SIGTERM) and what it left in its
        group, its run folder, and any book under the case's name. Once only."""
        with self.lock:
            if self.closed.is_set():
                return
            self.closed.set()
            cleanups, self._cleanups = self._cleanups, []
        for fn in reversed(cleanups):
            with contextlib.suppress(Exception):
                fn()
        leftovers, forced = self.launcher.close_case(self.kill_at_once, self.stopped)
        self.leftovers += leftovers
        self.ignored_sigterm |= forced
        with contextlib.suppress(book.BookError, OSError):  # another user's segment: not ours
            book.remove_stale(self.config.shm_name)         # a book the process left behind


def wait_until(condition, timeout: float, interval: float = 0.01):
    """`condition()`'s first truthy value within `timeout` seconds, else None; for waits
    outside a case (a case uses `Ctx.wait_until`, which ends when the case is closed)."""
    try:
        return children.wait_for(condition, timeout, interval=interval)
    except TimeoutError:
        return None


def only_loopback(ctx: Ctx, ports: dict) -> None:
    """CaseFailed unless each of `ports` ({"price port": 9000, ...}) has a listening socket and
    every listening socket on it is bound to a loopback address. Where the system cannot
    tell, a note says the case was not checked."""
    for what, port in ports.items():
        found = listeners(port)
        if found is None:
            ctx.note("not checked: no /proc and no lsof; the case passes unchecked")
            return
        if not found:
            raise CaseFailed(f"nothing listens on its {what} {port}")
        exposed = [a for a in found if not is_loopback(a)]
        if exposed:
            raise CaseFailed(f"its {what} {port} listens on {exposed[0]}, not on {ctx.config.host} only: "
                             "every machine that can reach this one can connect", hint=HINT_BIND)


def base_config(**changes) -> Config:
    """A config on free ports with a fresh book name, for one case."""
    ports = set()
    while len(ports) < 3:
        ports.add(free_port())
    price, news, order = sorted(ports)
    return Config(price_port=price, news_port=news, order_port=order,
                  shm_name=book.new_name()).replace(**changes)


# -- making cases -------------------------------------------------------------------------

def case(role: str, number: int, title: str, hint: str, timeout: float = CASE_TIMEOUT, **config):
    """Decorator: a case of `role`, run as ``fn(ctx)`` in a fresh `Ctx` whose config has the
    `config` changes."""
    def wrap(fn) -> Case:
        return Case(role, number, title, hint, fn, timeout, config)
    return wrap


def background(fn, *args, name: str = "conform") -> futures.Future:
    """Start `fn(*args)` in a daemon thread of its own; what it returns or raises, as a Future
    (a thread stuck in a socket call must not keep the interpreter from exiting, which an
    executor's threads would)."""
    outcome = futures.Future()

    def body():
        outcome.set_running_or_notify_cancel()
        try:
            outcome.set_result(fn(*args))
        except BaseException as exc:  # every outcome is the caller's to judge, even a bug in a case
            outcome.set_exception(exc)

    threading.Thread(target=body, name=name, daemon=True).start()
    return outcome


