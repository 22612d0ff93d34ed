"""The one TCP client of hftlab that reconnects: `Link`.

Three readers dial a server that may not be there yet, or may go away and come back:
the orderbook (the price feed), the strategy (the news feed and the order manager) and
the dashboard (the news feed). They all use this one client, with one policy:

- *Back-off.* A failed dial is tried again after 0.1 s, then 0.2 s, 0.4 s, ... at most
  2 s (`hftlab.net.Backoff`); a connection that was lost is dialled again the same way.
  Connecting resets the delay.
- *Silence.* A feed that sends heartbeats (``heartbeat`` seconds apart) and has been
  silent for `SILENCE_HEARTBEATS` of them is taken for dead: a server that hangs (stopped
  with SIGSTOP, a cable pulled on a real network) closes nothing, so only silence tells.
  The order manager sends no heartbeats: its link has no silence limit.
- *Said once.* "waiting for the X" is logged once per outage, not once per try; then
  "connected to the X" and "lost the X: why; reconnecting".

A link never blocks its caller longer than asked: `keep_up` dials with a short timeout (a
refused dial on loopback returns at once), and `recv` waits only as long as its
``timeout`` (a read that must not wait is made with MSG_DONTWAIT: a recv that waited in the
kernel, `_recv_blocking`, leaves the socket blocking). A caller with a selector gives it to
the link, which registers its socket there while connected, so one ``select`` can wait on
several links (the strategy's loop). Bytes arrive with `recv` (the orderbook feeds them to its own
decoder) or as whole messages with `messages`.
"""

from __future__ import annotations

import selectors
import socket
import struct
import time

from hftlab import net, protocol

__all__ = ["Link", "SILENCE_HEARTBEATS", "DIAL_TIMEOUT"]

SILENCE_HEARTBEATS = 3  # a feed silent this many heartbeat intervals is taken for dead
DIAL_TIMEOUT = 0.5  # seconds one dial may take (a refused dial on loopback fails at once)


class Link:
    """A client connection to `host:port` that reconnects with back-off and never blocks.

        news = Link("news feed", host, port, log, heartbeat=1.0)
        while True:
            news.keep_up()              # dial if down (when the back-off allows), drop if silent
            for msg in news.messages(0.1) or []:
                ...

    `name` is what the log calls the server ("the news feed"). `log` may be None (a
    notebook's background thread must not print): the link then says nothing.
    """

    def __init__(self, name: str, host: str, port: int, log=None, heartbeat: float | None = None,
                 selector: selectors.BaseSelector | None = None):
        self.name, self.host, self.port, self.log = name, host, port, log
        self.silence = SILENCE_HEARTBEATS * heartbeat if heartbeat else None
        self.selector = selector
        self.sock = None
        self.decoder = protocol.Decoder()
        self.backoff = net.Backoff()
        self.next_try = 0.0  # monotonic time of the next dial
        self.heard = 0.0  # monotonic time we last received something
        self.connects = 0  # how many times it has connected
        self.said_waiting = False
        self.rcvtimeo = 0.0  # the socket's SO_RCVTIMEO, in seconds (0: none)

    @property
    def up(self) -> bool:
        return self.sock is not None

    @property
    def address(self) -> str:
        return net.address(self.host, self.port)

    def retry_in(self) -> float:
        """Seconds until `keep_up` will dial again (0 if connected or due now)."""
        return 0.0 if self.sock is not None else max(0.0, self.next_try - time.monotonic())

    def keep_up(self) -> bool:
        """Drop the connection if it has been silent too long; dial if we have none and
        the back-off allows. True only if it has just connected."""
        now = time.monotonic()
        if self.sock is not None:
            if self._too_quiet():
                self.drop(f"silent for {self.silence:.1f} s")
            return False
        if now < self.next_try:
            return False
        try:
            sock = net.dial(self.host, self.port, timeout=DIAL_TIMEOUT)
        except OSError:
            self.next_try = now + self.backoff.next()
            if not self.said_waiting:
                self._say("info", f"waiting for the {self.name} at {self.address}")
                self.said_waiting = True
            return False
        sock.setblocking(False)
        self.sock = sock
        self.rcvtimeo = 0.0
        self.decoder = protocol.Decoder()  # a new stream: nothing half-read carries over
        self.backoff.reset()
        self.heard = now
        self.said_waiting = False
        self.connects += 1
        if self.selector is not None:
            self.selector.register(sock, selectors.EVENT_READ, self)
        self._say("info", f"connected to the {self.name} at {self.address}")
        return True

    def recv(self, timeout: float | None = 0.0) -> bytes | None:
        """The bytes that have arrived, waiting at most `timeout` seconds for some.

        b"" if none came in time; None if the link is down or just went down (closed by the
        other side, an error, or silent for too long). ``timeout=None`` waits until bytes
        come or the silence limit is reached (forever if the link has none).
        """
        if self.sock is None:
            return None
        wait = timeout
        if self.silence:
            left = max(0.0, self.heard + self.silence - time.monotonic())
            wait = left if wait is None else min(wait, left)
        try:
            if wait == 0.0:
                data = self.sock.recv(65536, socket.MSG_DONTWAIT)
            elif timeout is None and self.selector is None:
                data = self._recv_blocking(wait)
            else:
                # A socket timeout waits in C (poll, then recv): a wake-up 141 against
                # 161 us p50 for a select() from Python, in a variant of `hftlab bench --wakeups`.
                self.sock.settimeout(wait)
                try:
                    data = self.sock.recv(65536)
                finally:
                    self.sock.setblocking(False)
        except (BlockingIOError, TimeoutError):
            return self._nothing()
        except OSError as exc:
            self.drop(exc.strerror or str(exc))
            return None
        if not data:
            self.drop("closed by the other side")
            return None
        self.heard = time.monotonic()
        return data

    def _recv_blocking(self, wait: float | None) -> bytes:
        """Sleep in the recv itself, at most `wait` seconds (None: no limit), the socket
        in blocking mode with a kernel timeout (SO_RCVTIMEO): one system call a chunk,
        where a socket timeout takes four (switch to a timeout, poll, recv, switch back);
        what that was worth: docs/performance.md, round 4. The kernel timeout is set again
        only when `wait` has changed: while the feed flows, each wait is the silence limit."""
        if self.sock.gettimeout() is not None:  # non-blocking (or a timeout): make it blocking
            self.sock.setblocking(True)
        wait = wait or 0.0
        if abs(wait - self.rcvtimeo) > 0.01:
            micros = max(1, round(wait * 1e6)) if wait else 0  # 0 is "no limit": never round to it
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                                 struct.pack("ll", micros // 1_000_000, micros % 1_000_000))
            self.rcvtimeo = wait
        return self.sock.recv(65536)  # BlockingIOError (EAGAIN) when the kernel timeout passes

    def _nothing(self) -> bytes | None:
        """Nothing has arrived: b"", or None if that makes the link silent for too long."""
        if self._too_quiet():
            self.drop(f"silent for {self.silence:.1f} s")
            return None
        return b""

    def messages(self, timeout: float | None = 0.0) -> list | None:
        """Whole messages now available (see `recv` for `timeout`); None if the link is down."""
        data = self.recv(timeout)
        return None if data is None else self.decoder.feed(data)

    def send(self, data: bytes) -> bool:
        """Send all of `data`; False (and the link dropped) if it could not."""
        if self.sock is None:
            return False
        try:
            # Blocking for this one write (a non-blocking sendall could stop halfway
            # through a line); on loopback a full send buffer drains in microseconds.
            self.sock.settimeout(1.0)
            self.sock.sendall(data)
            self.sock.setblocking(False)
            return True
        except OSError as exc:
            self.drop(str(exc) or "could not send for 1 s")
            return False

    def drop(self, why: str) -> None:
        """Close the connection, say why, and dial again after the back-off."""
        if self.sock is None:
            return
        self._say("warning", f"lost the {self.name}: {why}; reconnecting")
        self._close()
        self.next_try = time.monotonic() + self.backoff.next()

    def close(self) -> None:
        """Close the connection for good (no log line: the caller is stopping)."""
        self._close()

    def _too_quiet(self) -> bool:
        return bool(self.silence) and time.monotonic() - self.heard >= self.silence

    def _close(self) -> None:
        if self.sock is not None:
            if self.selector is not None:
                self.selector.unregister(self.sock)
            self.sock.close()
            self.sock = None

    def _say(self, level: str, text: str) -> None:
        if self.log is not None:
            getattr(self.log, level)(text)
