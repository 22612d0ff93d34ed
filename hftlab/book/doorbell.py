"""The doorbell: a reader sleeps until the writer has news, at no idle CPU.

Waking on the doorbell
----------------------
A reader that polls the book must choose between sleeping (a tick waits, on average,
half the sleep) and spinning (a whole core, all the time).  A doorbell removes the
choice: the reader sleeps in ``select()`` on a socket of its own, and the writer rings
it after a write, but only if somebody said they are asleep, so that a writer nobody
waits for pays one 8-byte load per batch and no system call (the futex idea).

The parts:

- The ``sleepers`` word of the book's header (`hftlab.book.layout`).  A reader stores 1
  there before it sleeps; the writer, after each write or batch of writes, loads it and,
  if it is not 0, stores 0 and rings every bell of the book (`SharedPriceBook.ring`).
- A bell per sleeping reader: a UNIX datagram socket bound to a path derived from the
  book's name, ``bell_dir(name)/PID-TOKEN``.  The writer sends one byte to every path in
  that folder, non-blocking, and ignores what fails: a full socket (the reader has a ring
  pending already) or a dead reader's socket (its path is removed, so the writer never
  sends there again).  The writer neither blocks nor crashes because of a reader.
- The bell is keyed by the book's name, not by one book object: a reader keeps its bell
  across orderbook restarts and re-arms it on whichever book is current.

Why a datagram socket: eventfd and futex are Linux-only.  A FIFO and a UNIX datagram
socket both work on Linux and macOS, and cost about the same to ring: measured on the lab's
2-vCPU Linux machine while a benchmark ran beside it, send to a child process asleep in
``select()`` until it reads the clock, p50 28-42 us with a FIFO, 48-49 us with a datagram
socket, p99 about 100 us for both (docs/performance.md has the command).  The socket wins
on what goes wrong: the writer needs no open file per reader (a FIFO's writer must open
each FIFO, and that open fails with ENXIO or blocks when its reader is gone), ``sendto``
on a non-blocking socket never blocks, and a dead reader shows up as
``ConnectionRefusedError`` on the next ring, so its bell can be removed.

The lost wake-up, and the order that prevents it.  A reader that looked at the book,
found nothing and then went to sleep could miss a write that landed between its look and
its sleep: the writer saw nobody asleep and did not ring, and the reader sleeps through
the news.  So the reader (`Doorbell.wait`):

1. stores 1 in ``sleepers`` (arm),
2. looks at the book again (has anything changed since it last looked?), and returns at
   once if so,
3. only then sleeps on its socket, with a long safety timeout.

The writer writes, then loads ``sleepers``.  Either the writer's load sees the reader's
1 (it rings; the ring waits in the socket even if the reader is not yet in ``select``), or
the reader's look in step 2 comes after the write and sees it.  In C this needs a full
fence between the store and the load on each side (x86-64 may let a load pass an earlier
store); CPython cannot issue one, and we rely, as the seqlock does, on the microseconds of
interpreter work between them.  If that ever failed, the safety timeout bounds the damage:
the reader looks again after at most ``timeout`` seconds.

Readers that never sleep on a doorbell (notebooks, ``hftlab status``, the widgets) are not
affected: they never set the word, so nothing is ever rung for them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import select
import socket
import tempfile

from hftlab.book.layout import check_name

__all__ = ["bell_dir", "Doorbell", "ring_bells", "sweep_bells"]


def bell_dir(name: str) -> str:
    """The folder of the bells of book `name`, one socket per sleeping reader.

    Per user (the uid in the name) and per book; short enough for the 104-byte limit
    of a UNIX socket path on macOS."""
    return os.path.join(tempfile.gettempdir(), f"hftlab-bells-{os.getuid()}", check_name(name))


def ring_bells(name: str, sender: socket.socket) -> int:
    """Send one byte to every bell of book `name`; return how many were rung.

    Never blocks and never raises for a reader's sake: a full bell already has a ring
    pending; a bell nobody listens on any more (its reader died) is removed."""
    folder = bell_dir(name)
    try:
        entries = os.listdir(folder)
    except OSError:          # no folder: nobody ever slept on this book
        return 0
    rung = 0
    for entry in entries:
        path = os.path.join(folder, entry)
        try:
            sender.sendto(b"!", path)
            rung += 1
        except BlockingIOError:
            rung += 1        # its socket is full: a ring is pending already
        except (ConnectionRefusedError, FileNotFoundError):
            # a dead reader's bell: remove it, so that nobody sends there again
            with contextlib.suppress(OSError):
                os.unlink(path)
        except OSError:
            pass             # not a socket of ours (e.g. another user's file): leave it
    return rung


def sweep_bells(name: str) -> None:
    """Ring every bell of book `name` once, then remove the book's bell folder if no bell
    is left in it: for whoever removes the book (its owner, or a remover of a stale one).

    A reader killed in its sleep (SIGKILL) leaves its bell's path behind, and a ring removes
    such a bell (its socket refuses), so it does not keep the folder after the book is gone.
    A live reader wakes to find the book going."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
        sender.setblocking(False)
        ring_bells(name, sender)
    with contextlib.suppress(OSError):  # not empty: a live reader still has its bell here
        os.rmdir(bell_dir(name))


class Doorbell:
    """A reader's bell for book `name`: a socket to sleep on until the writer rings.

    ``wait(book, changed, timeout)`` is the whole protocol (arm, look again, sleep);
    a reader that sleeps in its own ``select()`` with other sockets registers
    ``fileno()`` there and calls ``arm(book)`` and its own look before sleeping, and
    ``drain()`` when the bell is readable."""

    def __init__(self, name: str):
        self.name = check_name(name)
        folder = bell_dir(name)
        self.path = os.path.join(folder, f"{os.getpid()}-{secrets.token_hex(3)}")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            try:
                os.makedirs(folder, mode=0o700, exist_ok=True)
                self.sock.bind(self.path)
            except FileNotFoundError:  # another reader's last bell just took the folder away
                os.makedirs(folder, mode=0o700, exist_ok=True)
                self.sock.bind(self.path)
            self.sock.setblocking(False)
        except BaseException:
            self.sock.close()
            raise
        self.rings = 0   # rings drained

    def fileno(self) -> int:
        return self.sock.fileno()

    @staticmethod
    def arm(book) -> None:
        """Say "somebody is asleep" in `book`'s header (step 1 of the protocol)."""
        book.set_sleeping()

    def drain(self) -> int:
        """Read every pending ring; return how many there were."""
        n = 0
        while True:
            try:
                n += len(self.sock.recv(4096))
            except (BlockingIOError, InterruptedError):
                break
        self.rings += n
        return n

    def wait(self, book, changed, timeout: float) -> bool:
        """Arm, look again (``changed()``), then sleep until rung or `timeout` seconds.

        True if rung or if the look found a change, False on the timeout."""
        self.arm(book)
        if changed():
            return True
        readable, _, _ = select.select([self.sock], [], [], timeout)
        return bool(readable) and self.drain() > 0

    def close(self) -> None:
        """Close the socket and remove its path (the writer skips it from now on), and the
        book's bell folder if this was its last bell: books come and go by the thousand
        (every test, every bench run has its own name), and their folders must not pile up."""
        if self.sock.fileno() != -1:
            self.sock.close()
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            with contextlib.suppress(OSError):  # not empty: another reader still sleeps here
                os.rmdir(os.path.dirname(self.path))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
