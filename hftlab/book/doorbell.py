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

A shared temp folder, safely.  The bells live in ``$TMPDIR/hftlab-bells-UID/<book>/``, and
on a course server ``$TMPDIR`` is ``/tmp``, where every user may make folders.  Another
user who made ``hftlab-bells-UID`` first could point a book's folder anywhere (a symbolic
link), and the writer, which removes every dead bell it finds, would then remove files of
yours there.  So, as ssh-agent and tmux treat their folders in ``/tmp``: the folders are made
mode 0700, and checked with ``lstat`` (a symbolic link is never followed) every time they are
used: a real folder, yours, that nobody else can write in; anything else is refused with
one sentence (`UnsafeFolder`), and one that others could only read is closed to them.
Inside a folder that is yours alone nobody else can add, rename or remove an entry, and a
writer removes only an entry it can tell is a dead bell: named ``PID-TOKEN``, a socket,
yours, refusing a datagram.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import select
import socket
import stat
import tempfile

from hftlab.book.layout import BookError, check_name, pid_alive, user_name

__all__ = ["UnsafeFolder", "bells_root", "bell_dir", "checked_folder", "Doorbell", "ring_bells",
           "sweep_bells", "remove_dead_bells", "BELL_NAME"]

# A bell's name in its folder: the reader's pid and a random token (`Doorbell`).
BELL_NAME = re.compile(r"([0-9]+)-[0-9a-f]{6}\Z")


class UnsafeFolder(BookError):
    """A bells folder that is not a real folder of this user's alone: never used."""


def bells_root() -> str:
    """The folder of every book's bell folders: per user (the uid in its name)."""
    return os.path.join(tempfile.gettempdir(), f"hftlab-bells-{os.geteuid()}")


def bell_dir(name: str) -> str:
    """The folder of the bells of book `name`, one socket per sleeping reader.

    Per user and per book; short enough for the 104-byte limit of a UNIX socket path on
    macOS. Only a path: `checked_folder` says whether it may be used."""
    return os.path.join(bells_root(), check_name(name))


def _check(path: str, st: os.stat_result) -> None:
    """UnsafeFolder unless `st` (an lstat of `path`) is a real folder, ours, closed to others."""
    if not stat.S_ISDIR(st.st_mode):
        what = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a folder"
        raise UnsafeFolder(f"the doorbell folder {path} is {what}, so it was not made by hftlab; "
                           "it is not used (remove it, or set TMPDIR to a folder of your own)")
    if st.st_uid != os.geteuid():
        raise UnsafeFolder(f"the doorbell folder {path} belongs to user {user_name(st.st_uid)}, not to you, "
                           "so it is not used: another user made it (remove it as its owner or root, "
                           "or set TMPDIR to a folder of your own)")
    if st.st_mode & 0o022:  # others could have put anything in it
        raise UnsafeFolder(f"the doorbell folder {path} can be written by other users (mode "
                           f"{stat.S_IMODE(st.st_mode):o}), so it is not used: remove it")
    if st.st_mode & 0o077:
        # Ours, and nobody else could write in it (older hftlab versions made it 0755): close it.
        os.chmod(path, 0o700)


def checked_folder(path: str, create: bool = False) -> str:
    """`path` once it is checked to be a real folder of ours alone (`_check`), made first
    (mode 0700) if `create`; FileNotFoundError if it is not there, UnsafeFolder if it may
    not be used. Checked with lstat, so a symbolic link is never followed."""
    if create:
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        else:
            os.chmod(path, 0o700)  # whatever the umask took away: it is ours, 0700
    _check(path, os.lstat(path))
    return path


def _book_folder(name: str, create: bool = False) -> str:
    """The bell folder of book `name`, and the root above it, both checked (`checked_folder`)."""
    checked_folder(bells_root(), create)
    return checked_folder(bell_dir(name), create)


def ring_bells(name: str, sender: socket.socket) -> int:
    """Send one byte to every bell of book `name`; return how many were rung.

    Never blocks and never raises for a reader's sake: a full bell already has a ring
    pending; a bell nobody listens on any more (its reader died) is removed. A folder that
    is not ours alone (`UnsafeFolder`) is not rung at all, and an entry that is not named
    like a bell is left alone."""
    try:
        folder = _book_folder(name)
        entries = os.listdir(folder)
    except (OSError, UnsafeFolder):  # no folder (nobody ever slept on this book), or not ours
        return 0
    rung = 0
    for entry in entries:
        if not BELL_NAME.match(entry):
            continue
        path = os.path.join(folder, entry)
        try:
            sender.sendto(b"!", path)
            rung += 1
        except BlockingIOError:
            rung += 1        # its socket is full: a ring is pending already
        except (ConnectionRefusedError, FileNotFoundError):
            _remove_bell(path)  # a dead reader's bell: so that nobody sends there again
        except OSError:
            pass             # not a bell we can send to: leave it
    return rung


def _remove_bell(path: str) -> None:
    """Remove `path` if it is a socket of ours: never anything else, whatever its name."""
    try:
        st = os.lstat(path)
        if stat.S_ISSOCK(st.st_mode) and st.st_uid == os.geteuid():
            os.unlink(path)
    except OSError:
        pass


def remove_dead_bells(name: str) -> int:
    """Remove the bells of book `name` whose reader's pid is no longer running, without
    ringing the live ones; then the folder, if that left it empty. Returns how many went.

    For whoever reaps a reader (the launcher): a reader killed in its sleep leaves its bell,
    and its book may be gone already, so that no writer will ever ring (and remove) it."""
    try:
        folder = _book_folder(name)
        entries = os.listdir(folder)
    except (OSError, UnsafeFolder):
        return 0
    removed = 0
    for entry in entries:
        m = BELL_NAME.match(entry)
        if m and not pid_alive(int(m.group(1))):
            _remove_bell(os.path.join(folder, entry))
            removed += 1
    with contextlib.suppress(OSError):  # not empty: a live reader still has its bell here
        os.rmdir(folder)
    return removed


def sweep_bells(name: str) -> None:
    """Ring every bell of book `name` once, then remove the book's bell folder if no bell
    is left in it: for whoever removes the book (its owner, or a remover of a stale one).

    A reader killed in its sleep (SIGKILL) leaves its bell's path behind, and a ring removes
    such a bell (its socket refuses), so it does not keep the folder after the book is gone.
    A live reader wakes to find the book going."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
        sender.setblocking(False)
        ring_bells(name, sender)
    try:
        folder = _book_folder(name)
    except (OSError, UnsafeFolder):
        return
    with contextlib.suppress(OSError):  # not empty: a live reader still has its bell here
        os.rmdir(folder)


class Doorbell:
    """A reader's bell for book `name`: a socket to sleep on until the writer rings.

    ``wait(book, changed, timeout)`` is the whole protocol (arm, look again, sleep);
    a reader that sleeps in its own ``select()`` with other sockets registers
    ``fileno()`` there and calls ``arm(book)`` and its own look before sleeping, and
    ``drain()`` when the bell is readable."""

    def __init__(self, name: str):
        """Make this reader's bell; `UnsafeFolder` (one sentence) if the bells folder is not
        this user's alone."""
        self.name = check_name(name)
        self.path = os.path.join(bell_dir(name), f"{os.getpid()}-{secrets.token_hex(3)}")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            try:
                _book_folder(name, create=True)
                self.sock.bind(self.path)
            except FileNotFoundError:  # another reader's last bell just took the folder away
                _book_folder(name, create=True)
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
