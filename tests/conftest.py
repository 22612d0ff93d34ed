"""Shared test fixtures: a whole system on free ports, a condition waiter, process finders."""

import contextlib
import os
import queue
import signal
import socket
import sys
import threading
import time

import pytest

from hftlab import children, net, protocol
from hftlab.config import FAST, Config
from hftlab.launcher import Launcher


def wait_for(condition, timeout=10.0, what="the condition"):
    """Poll `condition` until it returns something truthy; fail the test after `timeout` s."""
    try:
        return children.wait_for(condition, timeout, what)
    except TimeoutError as exc:
        pytest.fail(str(exc))


@pytest.fixture
def fast_config():
    return Config(**FAST)


@pytest.fixture
def lab(fast_config):
    """The four processes on free ports with a unique book, stopped after the test."""
    with Launcher(fast_config, free_ports=True) as launcher:
        yield launcher


class Client:
    """A test's TCP client that speaks the protocol: send messages, receive whole messages."""

    def __init__(self, port, host="127.0.0.1"):
        self.protocol = protocol
        self.sock = net.dial(host, port, timeout=5.0)
        self.decoder = protocol.Decoder()
        self.inbox = []
        self.fills = []

    def send(self, *msgs):
        self.sock.sendall(b"".join(m if isinstance(m, bytes) else self.protocol.encode(m) for m in msgs))

    def receive(self, n, timeout=10.0, fills=False):
        """Exactly the next n messages (or protocol errors), waiting at most `timeout`.

        The FILL that follows each ACK is set aside in `self.fills` unless `fills`: most
        tests are about the answer to an order (ACK or REJECT); tests/test_fills.py asks
        for the FILLs too, and checks that each follows its ACK."""
        deadline = time.monotonic() + timeout
        while len(self.inbox) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"timed out waiting for {n} messages; got {self.inbox}")
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                pytest.fail(f"connection closed after {self.inbox}")
            for item in self.decoder.feed(data):
                if not fills and isinstance(item, protocol.Fill):
                    self.fills.append(item)
                else:
                    self.inbox.append(item)
        out, self.inbox = self.inbox[:n], self.inbox[n:]
        return out

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Output:
    """A child's stdout, read by a thread, so the test can wait for lines with a deadline."""

    def __init__(self, popen):
        self.lines = queue.Queue()
        self.text = ""
        threading.Thread(target=lambda: [self.lines.put(l) for l in popen.stdout] + [self.lines.put(None)],
                         daemon=True).start()

    def until(self, done, timeout, what):
        """Read lines until done(all the text so far) is truthy; fail after `timeout` s."""
        deadline = time.monotonic() + timeout
        while not (found := done(self.text)):
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                pytest.fail(f"no {what} within {timeout} s; the output was:\n{self.text}")
            self.text += line
        return found


def with_sigint(disposition, command):
    """`command`, started with SIGINT at its default disposition or ignored.

    A background job of a non-interactive shell inherits SIGINT ignored, and exec keeps
    an ignored signal ignored; a small Python wrapper sets the disposition and execs the
    command, so "default" holds even when this test run itself inherited SIGINT ignored.
    """
    how = {"default": "SIG_DFL", "inherited ignored": "SIG_IGN"}[disposition]
    wrapper = (f"import os, signal, sys; signal.signal(signal.SIGINT, signal.{how}); "
               "os.execv(sys.argv[1], sys.argv[1:])")
    return [sys.executable, "-c", wrapper, *command]


class Said:
    """A log that keeps what it is told, as (level, text): to read back or compare."""

    def __init__(self):
        self.lines = []

    def info(self, text):
        self.lines.append(("info", text))

    def warning(self, text):
        self.lines.append(("warning", text))

    def count(self, part):
        return sum(part in text for _, text in self.lines)


MARKER = "HFTLAB_TEST_MARK"  # set to a token in a server's environment: its whole tree inherits it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def marked_pids(token: str) -> list:
    """Processes whose environment carries our marker: the server, its kernel, their children."""
    needle = f"{MARKER}={token}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    found.append(int(entry))
        except OSError:  # gone meanwhile, or not ours to read
            pass
    return found


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "(gone)"


def wait_until_gone(token: str, timeout: float = 20.0) -> list:
    """Wait for every marked process to exit; SIGKILL the stragglers (ours only); return them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = marked_pids(token)
        if not left:
            return []
        time.sleep(0.1)
    left = marked_pids(token)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left


@pytest.fixture(scope="session")
def peer():
    """A second, unprivileged user (tests/peer.py), or a skip that says why there is none."""
    from peer import peer_user
    with peer_user() as user:
        yield user


def peak_kb_until_exit(proc, limit: float, what: str) -> int:
    """Wait for `proc` (a Popen) to exit, at most `limit` seconds (then fail), and return the
    most memory it ever held, in kB (VmHWM, Linux's own peak: sampled, since it only grows)."""
    peak, started = 0, time.monotonic()
    while proc.poll() is None:
        try:
            with open(f"/proc/{proc.pid}/status") as f:
                peak = max(peak, next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")))
        except (OSError, StopIteration):  # it has just exited
            pass
        if time.monotonic() - started > limit:
            pytest.fail(f"{what} did not end within {limit:g} s")
        time.sleep(0.1)                   # sampling a peak that only grows, not waiting for it
    return peak
