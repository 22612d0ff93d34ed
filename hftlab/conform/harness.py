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
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field

from hftlab import book, children, protocol
from hftlab.config import Config
from hftlab.launcher import LaunchError, Launcher
from hftlab.net import free_port

__all__ = ["READY_TIMEOUT", "STOP_TIMEOUT", "CASE_TIMEOUT", "RUN_LIMIT", "HINT_READY", "HINT_EXITED",
           "HINT_SIGTERM", "HINT_LEFTOVERS", "CaseFailed", "NotReady", "Stopped", "Interrupted", "Case",
           "Result", "Ctx", "LineClient", "Server", "read_lines", "base_config", "case", "run_case",
           "run_role", "write_json", "background", "one_line", "end_of", "wait_until", "listeners",
           "is_loopback", "only_loopback", "on_interrupt", "shielded"]

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


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM reached ``hftlab conform`` (see `on_interrupt`); `role` and `number`
    name the case that was running, if one was."""

    def __init__(self, signum: int = signal.SIGINT, role: str | None = None, number: int | None = None):
        super().__init__(signum)
        self.signum, self.role, self.number = signum, role, number

    def message(self) -> str:
        if self.number is None:
            return "hftlab conform: interrupted; no case was running"
        return f"hftlab conform: interrupted; stopped {self.role} case {self.number} and removed what it made"


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


# -- interrupting a run ------------------------------------------------------------------

class _Shield:
    depth = 0
    pending = None


def on_interrupt(signum, frame) -> None:
    """Signal handler for SIGINT and SIGTERM (``hftlab conform`` installs it): raise
    `Interrupted` in the main thread, or, while a case's world is being torn down
    (`shielded`), once that is done."""
    if _Shield.depth:
        _Shield.pending = _Shield.pending or signum
        return
    raise Interrupted(signum)


@contextlib.contextmanager
def shielded():
    """Hold back `on_interrupt` while the block runs (a teardown must not be cut short by a
    second Ctrl-C), and raise it at the end."""
    _Shield.depth += 1
    try:
        yield
    finally:
        _Shield.depth -= 1
        if not _Shield.depth and _Shield.pending is not None:
            signum, _Shield.pending = _Shield.pending, None
            raise Interrupted(signum)


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
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                return None
            self.sleep(interval)

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


# -- listening sockets --------------------------------------------------------------------

def listeners(port: int) -> list | None:
    """The local addresses of the TCP sockets listening on `port` on this machine, as text
    ("127.0.0.1", "0.0.0.0", "::1", "*"); None if this system cannot tell (no /proc/net/tcp,
    no lsof)."""
    if os.path.exists("/proc/net/tcp"):
        return _proc_listeners(port)
    lsof = shutil.which("lsof")
    if lsof:
        return _lsof_listeners(lsof, port)
    return None


def _proc_listeners(port: int) -> list:
    found = []
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                rows = f.read().splitlines()[1:]
        except FileNotFoundError:  # no IPv6
            continue
        for row in rows:
            fields = row.split()
            address, _, hex_port = fields[1].partition(":")
            if fields[3] == "0A" and int(hex_port, 16) == port:  # 0A: TCP_LISTEN
                found.append(str(_proc_address(address)))
    return found


def _proc_address(hex_address: str):
    """An address of /proc/net/tcp{,6}: 32-bit words in hex, each in the host's byte order."""
    raw = bytes.fromhex(hex_address)
    words = [raw[k:k + 4] for k in range(0, len(raw), 4)]
    if sys.byteorder == "little":
        words = [w[::-1] for w in words]
    return ipaddress.ip_address(b"".join(words))


def _lsof_listeners(lsof: str, port: int) -> list:
    out = subprocess.run([lsof, "-nP", f"-iTCP:{port}", "-sTCP:LISTEN", "-Fn"], capture_output=True,
                         text=True, timeout=20).stdout
    return [line[1:].rpartition(":")[0].strip("[]") for line in out.splitlines() if line.startswith("n")]


def is_loopback(address: str) -> bool:
    """127.x.x.x, ::1 or ::ffff:127.x.x.x; not 0.0.0.0, ::, * or any other address."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


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


# -- scripted peers and clients ---------------------------------------------------------

class LineClient:
    """A client connection read line by line with `hftlab.protocol.Decoder`; `received`
    counts the bytes read. Made by `Ctx.client`, which connects it."""

    def __init__(self, rcvbuf: int | None = None, timeout: float = 3.0):
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.decoder = protocol.Decoder()
        self.pending = []
        self.received = 0

    def connect(self, host: str, port: int) -> None:
        self.sock.connect((host, port))

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def next(self, timeout: float):
        """The next message (or ProtocolError); None after `timeout` s or if the connection closed."""
        deadline = time.monotonic() + timeout
        while not self.pending:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                self.sock.settimeout(left)
                data = self.sock.recv(65536)
            except (socket.timeout, OSError):
                return None
            if not data:
                return None
            self.received += len(data)
            self.pending.extend(self.decoder.feed(data))
        return self.pending.pop(0)

    def collect(self, seconds: float) -> list:
        """Every message that arrives within `seconds`."""
        out, deadline = [], time.monotonic() + seconds
        while True:
            msg = self.next(max(0.0, deadline - time.monotonic()))
            if msg is None:
                return out
            out.append(msg)

    def close(self) -> None:
        # shutdown first: it wakes a thread blocked in recv on this socket, close alone does not
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


class Server:
    """A scripted TCP server on 127.0.0.1: `on_connect(conn)` runs in a thread per client.

    `stop()` closes the listener and every connection (a server going away); `reopen()`
    listens on the same port again (a server coming back)."""

    def __init__(self, on_connect, port: int = 0):
        self.on_connect = on_connect
        self.conns = []
        self.lock = threading.Lock()
        self.port = port
        self.listener = None
        self.reopen()

    def reopen(self) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(64)
        self.port = sock.getsockname()[1]
        self.listener = sock
        threading.Thread(target=self._accept, args=(sock,), daemon=True).start()

    def _accept(self, listener) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                if listener is not self.listener:  # stopped meanwhile
                    conn.close()
                    return
                self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn) -> None:
        try:
            self.on_connect(conn)
        except OSError:
            pass

    def live(self) -> list:
        with self.lock:
            return [c for c in self.conns if c.fileno() >= 0]

    def stop(self) -> None:
        """Close the listener and every connection."""
        with self.lock:
            listener, self.listener = self.listener, None
            conns, self.conns = self.conns, []
        if listener is not None:
            # shutdown wakes the thread blocked in accept(); close() alone would not, on Linux
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()


def read_lines(conn, on_message) -> None:
    """Decode what `conn` sends and call `on_message(conn, msg)` for each, until it closes."""
    decoder = protocol.Decoder()
    while True:
        try:
            data = conn.recv(65536)
        except OSError:
            return
        if not data:
            return
        for msg in decoder.feed(data):
            on_message(conn, msg)


def base_config(**changes) -> Config:
    """A config on free ports with a fresh book name, for one case."""
    ports = set()
    while len(ports) < 3:
        ports.add(free_port())
    price, news, order = sorted(ports)
    return Config(price_port=price, news_port=news, order_port=order,
                  shm_name=book.new_name()).replace(**changes)


# -- running cases ----------------------------------------------------------------------

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


def _wait(outcome: futures.Future, timeout: float) -> bool:
    """Whether `outcome` is done within `timeout` seconds. In slices: a signal that the kernel
    gives to another thread than the main one does not wake a wait, and the main thread runs
    the handler (`on_interrupt`) only when it wakes."""
    deadline = time.monotonic() + timeout
    while not outcome.done() and (left := deadline - time.monotonic()) > 0:
        futures.wait([outcome], min(left, 0.1))
    return outcome.done()


def _failure(outcome: futures.Future, case_: Case, ctx: Ctx) -> CaseFailed | None:
    """What went wrong in a case that had `case_.timeout` seconds: None if it passed."""
    if not _wait(outcome, case_.timeout):
        return CaseFailed(f"the case did not finish within {case_.timeout:g} s", log=ctx.log_end())
    exc = outcome.exception()
    if exc is None:
        return None
    if isinstance(exc, CaseFailed):
        return exc
    # A bug in the case, or a peer that met something unexpected: still a report line.
    return CaseFailed(f"{type(exc).__name__}: {exc}")


def _with_crash(failed: CaseFailed | None, ctx: Ctx) -> CaseFailed | None:
    """A failure of a case during which the process exited on its own is told as that: the
    exit explains it better than what the case saw next (no answer, a closed socket)."""
    code = ctx.crashed()
    if failed is None or code is None or failed.explains_exit:
        return failed
    crash = CaseFailed(f"{failed.seen}; meanwhile it exited with status {code}", hint=HINT_EXITED,
                       log=ctx.log_end())
    crash.explains_exit = True
    return crash


def run_case(role: str, case_: Case, command: list, kill_at_once: bool = False) -> Result:
    """Run one case within its timeout and return its `Result`; its world is torn down in
    every case (a pass, a failure, a timeout, an interrupt). `kill_at_once`: the process is
    known to ignore SIGTERM, so its teardown does not wait for it."""
    started = time.monotonic()
    ctx = Ctx(role, command, base_config(**case_.config), kill_at_once)
    outcome = None
    try:
        outcome = background(case_.run, ctx, name=f"conform {role} {case_.number}")
        failed = _with_crash(_failure(outcome, case_, ctx), ctx)
    finally:
        with shielded():
            ctx.close()
            if outcome is not None:  # its waits and sockets end with its world: let it finish
                _wait(outcome, JOIN_TIMEOUT)
    return _result(role, case_, ctx, failed, time.monotonic() - started)


def _result(role: str, case_: Case, ctx: Ctx, failed: CaseFailed | None, seconds: float) -> Result:
    notes = list(ctx.notes)
    left = ""
    if ctx.leftovers and not (failed is not None and failed.hint == HINT_LEFTOVERS):
        left = (f"when it was stopped it left {children.describe(ctx.leftovers)} running in its process "
                "group (stopped now)")
        if failed is None:
            failed = CaseFailed(left, hint=HINT_LEFTOVERS)
            left = ""
    if ctx.ignored_sigterm and not ctx.kill_at_once:
        notes.append(f"it did not exit within {STOP_TIMEOUT:g} s of SIGTERM and was killed; the later "
                     "cases kill it at once")
    r = Result(role, case_.number, case_.title, failed is None, seconds=round(seconds, 2),
               note="; ".join(notes), ignores_sigterm=ctx.ignored_sigterm)
    if failed is not None:
        r.seen = one_line(failed.seen, SEEN_LIMIT)
        if left:
            r.seen += f"; also, {left}"
        if failed.log:
            r.seen += f"; the end of its log: {end_of(failed.log, SEEN_LIMIT)}"
        r.hint = failed.hint or case_.hint
        r.not_ready = isinstance(failed, NotReady) and failed.first
    return r


def _not_run(role: str, case_: Case, why: str) -> Result:
    return Result(role, case_.number, case_.title, False, seen=why, ran=False)


def run_role(role: str, cases: list, command: list, only=None, out=print, time_limit: float = RUN_LIMIT) -> list:
    """Run `cases` (or only number `only`) and print one line per case as it ends; the
    `Result`s. Cases not started within `time_limit` seconds are not run, nor are those
    after a case where the process never became ready. Raises `Interrupted` (after tearing
    the running case down) when `on_interrupt` is the SIGINT or SIGTERM handler."""
    results, blocked, kill_at_once = [], None, False
    deadline = time.monotonic() + time_limit
    for c in cases:
        if only is not None and c.number != only:
            continue
        if blocked is not None:
            r = _not_run(role, c, blocked)
        elif time.monotonic() > deadline:
            r = _not_run(role, c, f"the run's time limit ({time_limit:g} s) was reached")
        else:
            try:
                r = run_case(role, c, command, kill_at_once)
            except KeyboardInterrupt as exc:
                raise Interrupted(getattr(exc, "signum", signal.SIGINT), role, c.number) from None
            if r.not_ready:
                blocked = f"it never became ready (case {r.number})"
            kill_at_once |= r.ignores_sigterm
        results.append(r)
        out(r.line())
    return results


def write_json(path: str, role: str, command: list, results: list) -> None:
    data = {"role": role, "command": command,
            "passed": sum(r.passed for r in results), "failed": sum(not r.passed for r in results),
            "cases": [r.__dict__ for r in results]}
    with open(path, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
