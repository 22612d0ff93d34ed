"""TCP, the lab's way: dial with Nagle off, say a taken port in one sentence, back off
between tries. Used by the one reconnecting client (`hftlab.link.Link`) and by the servers
(gateway, order manager): the small facts about sockets every process shares."""

from __future__ import annotations

import contextlib
import errno
import logging
import socket

from hftlab import config as _config
from hftlab.process import Fatal

__all__ = ["address", "peer", "no_delay", "listen_error", "warn_if_exposed", "Backoff", "dial", "free_port"]


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


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on now (the kernel's pick; free until someone binds it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
