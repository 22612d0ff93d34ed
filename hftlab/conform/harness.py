"""What every role's cases share: the process under test, scripted peers, the runner.

A case is a numbered function that gets a `Ctx`: a fresh `Config` (free ports, a fresh
book name, a temporary run folder) and the learner's command, which it starts in its
role through `hftlab.launcher.Launcher` (so exactly as ``hftlab run --strategy-cmd``
would: same flags, environment, log, ready wait and stop). A case fails by raising
`CaseFailed` with what it saw. Every wait has a deadline, and the runner gives each case
at most `Case.timeout` seconds: a case still running then fails, and its process and
peers are torn down. Nothing is left behind: the launcher stops the process, the peers
close their sockets, and a book the process may have left is removed.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from dataclasses import dataclass

from hftlab import book, children, protocol
from hftlab.config import Config
from hftlab.launcher import LaunchError, Launcher
from hftlab.net import free_port

READY_TIMEOUT = 20.0   # seconds a process gets to write its ready line (a loaded machine is slow to import numpy)
STOP_TIMEOUT = 5.0     # seconds a process gets to exit after SIGTERM


class CaseFailed(AssertionError):
    """A case saw something its role must not do; the message says what was seen."""


class NotReady(CaseFailed):
    """The process never wrote its ready line (or exited before)."""


@dataclass(frozen=True)
class Case:
    number: int
    title: str      # what is checked, one line
    hint: str       # what to look at when it fails
    run: object     # run(ctx) -> None; raises CaseFailed
    timeout: float = 60.0


@dataclass
class Result:
    role: str
    number: int
    title: str
    passed: bool
    seen: str = ""
    hint: str = ""
    seconds: float = 0.0
    not_ready: bool = False

    def line(self) -> str:
        head = f"{self.role} {self.number:>2}  {'pass' if self.passed else 'FAIL'}  {self.title}"
        if self.passed:
            return head
        return f"{head}  -- seen: {self.seen}  -- hint: {self.hint}"


def one_line(text: str, limit: int = 400) -> str:
    """Text on one line (a log tail quoted in a report line), cut to `limit` characters."""
    flat = " | ".join(part.strip() for part in text.strip().splitlines() if part.strip())
    return flat if len(flat) <= limit else flat[:limit - 3] + "..."


class Ctx:
    """One case's world: its config, the learner's process (`start`, `stop`) and cleanup."""

    def __init__(self, role: str, command: list, config: Config):
        self.role, self.command, self.config = role, command, config
        self.launcher = Launcher(config, names=(role,), commands={role: command},
                                 ready_timeout=READY_TIMEOUT, max_restarts=0)
        self._cleanups = []

    def on_cleanup(self, fn) -> None:
        self._cleanups.append(fn)

    def start(self) -> None:
        """Start the process in its role and wait for its ready line."""
        try:
            self.launcher.start_one(self.role)
        except LaunchError as exc:
            raise NotReady(one_line(str(exc))) from None
        self.config = self.launcher.config  # the ports it was given

    def running(self) -> bool:
        child = self.launcher.children.get(self.role)
        return child is not None and child.running()

    def sigterm(self) -> None:
        """SIGTERM the process; CaseFailed unless it exits with status 0 within STOP_TIMEOUT
        (every role's contract: SIGTERM is a clean exit)."""
        child = self.launcher.children[self.role]
        if not child.running():
            raise CaseFailed(f"it had already exited with status {child.popen.returncode}; "
                             f"log: {self.log_tail()}")
        child.popen.send_signal(signal.SIGTERM)
        try:
            code = child.popen.wait(STOP_TIMEOUT)
        except Exception:
            raise CaseFailed(f"still running {STOP_TIMEOUT:g} s after SIGTERM") from None
        child.cut_lifeline()
        if code != 0:
            raise CaseFailed(f"exit status {code} after SIGTERM; log: {self.log_tail()}")

    def alive(self, what: str = "") -> None:
        """CaseFailed if the process has died."""
        child = self.launcher.children[self.role]
        if not child.running():
            raise CaseFailed(f"the process exited with status {child.popen.returncode}"
                             f"{' ' + what if what else ''}; log: {self.log_tail()}")

    def log_tail(self, lines: int = 4) -> str:
        if self.role not in self.launcher.children:
            return "(never started)"
        return one_line(self.launcher.log(self.role, lines), 300) or "(empty)"

    def close(self) -> None:
        for fn in reversed(self._cleanups):
            try:
                fn()
            except Exception:
                pass
        self.launcher.close()
        book.remove_stale(self.config.shm_name)  # a book the process left behind


def wait_until(condition, timeout: float, interval: float = 0.01):
    """`condition()`'s first truthy value within `timeout` seconds, else None (a case
    then says what did not happen; `children.wait_for` would raise TimeoutError)."""
    try:
        return children.wait_for(condition, timeout, interval=interval)
    except TimeoutError:
        return None


# -- scripted peers and clients ---------------------------------------------------------

class LineClient:
    """A client connection read line by line with `hftlab.protocol.Decoder`."""

    def __init__(self, host: str, port: int, rcvbuf: int | None = None, timeout: float = 3.0):
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect((host, port))
        except OSError as exc:
            self.sock.close()
            raise CaseFailed(f"could not connect to {host}:{port}: {exc.strerror or exc}") from None
        self.decoder = protocol.Decoder()
        self.pending = []

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def next(self, timeout: float):
        """The next message (or ProtocolError); None after `timeout` s or if the connection closed."""
        deadline = time.monotonic() + timeout
        while not self.pending:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except (socket.timeout, OSError):
                return None
            if not data:
                return None
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

    def send_all(self, data: bytes) -> None:
        for conn in self.live():
            try:
                conn.sendall(data)
            except OSError:
                pass

    def stop(self) -> None:
        """Close the listener and every connection."""
        if self.listener is not None:
            try:  # wakes the thread blocked in accept(); close() alone would not, on Linux
                self.listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.listener.close()
            self.listener = None
        with self.lock:
            conns, self.conns = self.conns, []
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()


def read_lines(conn, on_message) -> None:
    """Decode what `conn` sends and call `on_message(msg)` for each, until it closes."""
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

def run_case(role: str, case: Case, command: list) -> Result:
    """Run one case within its timeout; always tears its world down."""
    box = {}
    ctx_box = {}

    def body():
        try:
            case.run(command, ctx_box)
        except CaseFailed as exc:
            box["failed"] = exc
            box["not_ready"] = isinstance(exc, NotReady)
        except Exception as exc:  # a bug in the case or an unexpected peer: still a report
            box["failed"] = CaseFailed(f"{type(exc).__name__}: {exc}")
        box["done"] = True

    started = time.monotonic()
    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    thread.join(case.timeout)
    ctx = ctx_box.get("ctx")
    if "done" not in box:
        tail = ctx.log_tail() if ctx is not None else "(never started)"
        box["failed"] = CaseFailed(f"the case did not finish within {case.timeout:g} s; log: {tail}")
    if ctx is not None:
        ctx.close()
    thread.join(5.0)  # its sockets are closed now: it ends
    failed = box.get("failed")
    hint = case.hint
    if box.get("not_ready"):
        hint = "it must write a line containing ': ready: ' once it is ready (docs/roles.md)"
    return Result(role, case.number, case.title, failed is None,
                  one_line(str(failed), 300) if failed else "", hint if failed else "",
                  round(time.monotonic() - started, 2), bool(box.get("not_ready")))


def case(number: int, title: str, hint: str, timeout: float = 60.0, **config):
    """Decorator: a case function ``fn(ctx)`` run in a fresh `Ctx` with `config` changes."""
    def wrap(fn):
        def run(command, box):
            ctx = Ctx(ROLE_OF[fn.__module__], command, base_config(**config))
            box["ctx"] = ctx
            fn(ctx)
        return Case(number, title, hint, run, timeout)
    return wrap


ROLE_OF = {"hftlab.conform.gateway": "gateway", "hftlab.conform.orderbook": "orderbook",
           "hftlab.conform.strategy": "strategy", "hftlab.conform.order_manager": "order_manager"}


def run_role(role: str, cases: list, command: list, only=None, out=print) -> list:
    """Run `cases` (or only number `only`), print one line per case as it ends."""
    results = []
    never_ready = None
    for c in cases:
        if only is not None and c.number != only:
            continue
        if never_ready is not None:
            r = Result(role, c.number, c.title, False,
                       f"not run: the process never became ready in case {never_ready.number} "
                       f"({never_ready.seen})", "make it write its ready line first (docs/roles.md)",
                       not_ready=True)
        else:
            r = run_case(role, c, command)
            if r.not_ready:
                never_ready = r
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
