"""The wire tap: one message at a time off a socket, its raw bytes beside what they decode to.

The tap reads a feed (or the order port, or bytes recorded earlier) the way a subscriber
does, but one message per step: a learner sees that a message is a line of ASCII bytes,
and that `hftlab.protocol` turns those exact bytes into the fields shown beside them.
"""

from __future__ import annotations

import html
import select
import socket
import threading
import time
from collections import deque
from typing import NamedTuple

import ipywidgets as W

from hftlab import net, protocol
from hftlab.widgets.live import Live
from hftlab.widgets.view import View, config_of, html_table, styled

__all__ = ["WireTap", "Step", "hexdump", "fields_of", "summary_line"]


class Step(NamedTuple):
    """One message off the wire: its number, its exact bytes and what they decode to."""
    n: int
    raw: bytes  # the whole line, b'\n' included
    msg: object  # a protocol message, or a protocol.ProtocolError


def hexdump(data: bytes, width: int = 16) -> str:
    """Offset, hex and printable text, `width` bytes a line (non-printables as '.')."""
    lines = []
    for off in range(0, len(data), width):
        chunk = data[off:off + width]
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{off:04x}  {chunk.hex(' '):<{width * 3 - 1}}  {text}")
    return "\n".join(lines)


def summary_line(step: Step) -> str:
    """One line for a step: its number, its type and its bytes as text (the tap's history)."""
    kind = "ERROR?" if isinstance(step.msg, protocol.ProtocolError) else protocol.wire_type(step.msg)
    return f"#{step.n:<3} {kind:<6} {step.raw.decode('ascii', 'backslashreplace').rstrip()}"


def fields_of(msg) -> list:
    """[(field, value)] of a decoded message, or of the error in its place."""
    if isinstance(msg, protocol.ProtocolError):
        return [("error", msg.reason)]
    return [("type", protocol.wire_type(msg)), *zip(msg._fields, msg)]


class WireTap(View):
    """Read a feed (or any byte source) one message at a time, raw bytes beside decoded.

        tap = WireTap.connect(host, port)   # subscribe to a feed, or dial the order port
        step = tap.next()                   # Step(n, raw, msg); the "next" button does this
        tap.send(protocol.Order(...))       # on the order port: then tap.next() is the reply

    Bytes that arrive while nobody steps wait in the socket's receive buffer (and then in
    the gateway's buffer for us, which drops a subscriber more than 1 MiB behind).
    `WireTap.replay(data)` steps through recorded bytes instead of a socket.
    """

    def __init__(self, sock: socket.socket | None = None, data: bytes = b"", label: str = "",
                 keep: int = 8):
        self.sock = sock
        self.label = label or (f"{sock.getpeername()[0]}:{sock.getpeername()[1]}" if sock else "bytes")
        self._buf = bytearray(data)
        self._decoder = protocol.Decoder()
        self._lock = threading.Lock()
        self.eof = sock is None
        self.count = 0
        self.sent = []  # raw lines sent with send()
        self.current: Step | None = None
        self.recent = deque(maxlen=keep)
        self.next_button = W.Button(description="next", icon="step-forward", button_style="primary",
                                    tooltip="read the next message off the wire",
                                    layout=W.Layout(width="90px"))
        self.next_button.on_click(self._on_next)
        self.note = W.HTML()
        self.raw_box = styled(W.HTML(), "hftlab-tap-raw")
        self.decoded_box = styled(W.HTML(), "hftlab-tap-decoded")
        self.history_box = W.HTML()
        self.live = Live(self._follow_one, 0.2, "wire tap", on_stop=self._followed)
        self.widget = W.VBox([
            W.HTML(f"<b>Wire tap</b> <code>{html.escape(self.label)}</code>"),
            W.HBox([self.next_button, self.note]),
            W.HBox([W.VBox([W.HTML("<i>raw bytes</i>"), self.raw_box]),
                    W.VBox([W.HTML("<i>decoded</i>"), self.decoded_box])],
                   layout=W.Layout(grid_gap="24px")),
            self.history_box,
        ])
        self._show()

    @classmethod
    def connect(cls, host, port=None, label: str = "", timeout: float = 5.0) -> "WireTap":
        """Dial `host:port`, or one of a Config's ports: 'price', 'news' or 'orders'
        (`host` a Config or a launcher: ``WireTap.connect(lab, "price")``)."""
        if not isinstance(host, str):
            cfg = config_of(host)
            port_of = {"price": cfg.price_port, "news": cfg.news_port, "orders": cfg.order_port}
            if port not in port_of:
                raise ValueError(f"tap which port? say 'price', 'news' or 'orders', not {port!r}")
            label = label or f"{port} {net.address(cfg.host, port_of[port])}"
            host, port = cfg.host, port_of[port]
        return cls(net.dial(host, port, timeout), label=label)

    @classmethod
    def replay(cls, data: bytes, label: str = "recorded bytes") -> "WireTap":
        """Step through bytes already recorded (no socket)."""
        return cls(None, bytes(data), label)

    # -- stepping ------------------------------------------------------------------

    def _line(self, timeout: float) -> bytes | None:
        deadline = time.monotonic() + timeout
        while True:
            end = self._buf.find(b"\n")
            if end >= 0:
                raw = bytes(self._buf[:end + 1])
                del self._buf[:end + 1]
                return raw
            if len(self._buf) > protocol.MAX_LINE + 1:
                raw = bytes(self._buf)  # the decoder reports it too long and skips the rest
                self._buf.clear()
                return raw
            if self.eof:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no complete message from {self.label} within {timeout:g} s")
            ready, _, _ = select.select([self.sock], [], [], left)
            if ready:
                data = self.sock.recv(65536)
                if data:
                    self._buf += data
                else:
                    self.eof = True

    def next(self, timeout: float = 5.0) -> Step:
        """Read the next message; returns Step(n, raw, msg).

        Raises EOFError at the end of the stream, TimeoutError if none comes in time.
        """
        with self._lock:
            raw = self._line(timeout)
            if raw is None:
                self.note.value = "<i>end of stream</i>"
                raise EOFError(f"{self.label}: no more messages (the other side closed, or "
                               "the recorded bytes are all read)")
            items = self._decoder.feed(raw)
            msg = items[0] if items else protocol.ProtocolError("rest of a line that was too long")
            self.count += 1
            self.current = Step(self.count, raw, msg)
            self.recent.append(self.current)
            self._show()  # under the lock: the button and a follow loop may both step
            return self.current

    def next_of(self, kind, timeout: float = 5.0, limit: int = 10_000) -> Step:
        """Step until a message of type `kind` (a class like protocol.Heartbeat, or 'HB')."""
        cls = protocol.MESSAGE_TYPES[kind] if isinstance(kind, str) else kind
        deadline = time.monotonic() + timeout
        for _ in range(limit):
            step = self.next(max(0.0, deadline - time.monotonic()))
            if isinstance(step.msg, cls):
                return step
        raise TimeoutError(f"no {cls.__name__} in the next {limit} messages from {self.label}")

    def send(self, msg) -> bytes:
        """Send a message (or raw bytes, to see what a bad line gets); returns the bytes sent."""
        if self.sock is None:
            raise ValueError("this tap replays recorded bytes; it has no socket to send on")
        raw = msg if isinstance(msg, (bytes, bytearray)) else protocol.encode(msg)
        self.sock.sendall(raw)
        self.sent.append(bytes(raw))
        return bytes(raw)

    def _on_next(self, _button) -> None:
        try:
            self.next(timeout=2.0)
        except (EOFError, TimeoutError, OSError) as exc:
            self.note.value = f"<i>{html.escape(str(exc))}</i>"

    def _follow_one(self) -> None:
        try:
            self.next(timeout=1.0)
        except TimeoutError:
            pass

    def follow(self, duration: float | None = None, frames: int | None = None) -> "WireTap":
        """Step by itself, a few messages a second, in the background (stop button).

        The next button is off meanwhile: one thread at a time updates the widget.
        """
        self.widget.children = (*self.widget.children[:4], self.live.box)
        self.next_button.disabled = True
        return self.start(duration, frames)

    def _followed(self) -> None:
        self.next_button.disabled = self.eof and not self._buf  # closed, or all read

    # -- showing -------------------------------------------------------------------

    def _show(self) -> None:
        step = self.current
        if step is None:
            self.raw_box.value = "<i>no message yet: press next</i>"
            self.decoded_box.value = ""
        else:
            self.raw_box.value = f"<pre style='margin:0'>{html.escape(self._raw_text(step))}</pre>"
            self.decoded_box.value = html_table(("field", "value"), [
                (html.escape(k), html.escape(repr(v))) for k, v in fields_of(step.msg)])
            self.note.value = f"message #{step.n}, {len(step.raw)} bytes"
        self.history_box.value = "<pre style='margin:0;font-size:85%'>" + html.escape(
            "\n".join(summary_line(s) for s in self.recent)) + "</pre>"

    @staticmethod
    def _raw_text(step: Step) -> str:
        return f"{hexdump(step.raw)}\ntext: {step.raw!r}"

    def text(self) -> str:
        """The current message: hex dump, bytes and decoded fields."""
        step = self.current
        if step is None:
            return f"WireTap {self.label}: no message yet (press next or call .next())"
        decoded = "\n".join(f"  {k:<10} {v!r}" for k, v in fields_of(step.msg))
        return (f"message #{step.n}, {len(step.raw)} bytes from {self.label}\n"
                f"{self._raw_text(step)}\ndecoded:\n{decoded}")

    def describe(self) -> str:
        if self.sock is None:  # recorded bytes: the same every run
            return self.text()
        return (f"WireTap on {self.label}: {self.count} messages read (live: press next or call "
                ".next(); .text() shows the current one)")

    def close(self) -> None:
        self.live.stop()
        if self.sock is not None:
            self.sock.close()
            self.eof = True
        self.next_button.disabled = True
