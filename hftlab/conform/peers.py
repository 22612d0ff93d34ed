"""The harness's side of the sockets: scripted peers (`Server`), clients of the process under
test (`LineClient`), and what a process listens on (`listeners`, `is_loopback`)."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

from hftlab import protocol

__all__ = ["LineClient", "Server", "read_lines", "listeners", "is_loopback"]


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
        self.fills = []
        self.received = 0

    def connect(self, host: str, port: int) -> None:
        self.sock.connect((host, port))

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def next(self, timeout: float):
        """The next message (or ProtocolError); None after `timeout` s or if the connection closed.

        A FILL is set aside in `fills`, not returned: it follows an ACK, and the cases about
        answers (ACK, REJECT, POSITION) must pass an order manager that sends none, as they
        did before fills existed. The fill cases ask for it (`next_fill`)."""
        return self._take(timeout, fill=False)

    def next_fill(self, timeout: float):
        """The next FILL, or None after `timeout` s or if the connection closed; the other
        lines read meanwhile stay for `next`, in order."""
        return self._take(timeout, fill=True)

    def _take(self, timeout: float, fill: bool):
        deadline = time.monotonic() + timeout
        while True:
            self._set_fills_aside()
            queue = self.fills if fill else self.pending
            if queue:
                return queue.pop(0)
            if not self._read_more(deadline):
                return None

    def _set_fills_aside(self) -> None:
        self.fills += [m for m in self.pending if type(m) is protocol.Fill]
        self.pending = [m for m in self.pending if type(m) is not protocol.Fill]

    def _read_more(self, deadline: float) -> bool:
        """Read what has come into `pending`; False at `deadline` or if the connection closed."""
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        try:
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
        except (socket.timeout, OSError):
            return False
        if not data:
            return False
        self.received += len(data)
        self.pending.extend(self.decoder.feed(data))
        return True

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
