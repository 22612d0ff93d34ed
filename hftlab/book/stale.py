"""Who removes a book, and removing a dead writer's book without ever removing a live one.

Only the owner unlinks, on a clean exit (``unlink()``, or leaving a ``with``
block); no resource tracker does (see `hftlab.book.untracked`).  A segment left
behind by a writer that died is instead detected through ``writer_pid`` and
replaced by the next owner, or removed by ``remove_stale()`` (``hftlab clean``;
the launcher does it when it reaps an orderbook it had to kill).

Removing a stale book must never remove a live one, and two races make that
hard.  (1) A creator makes the segment (empty), sizes it (all zeros) and only
then writes its pid: for those microseconds a segment being born looks like
one whose creator died.  A segment that is still unclaimed (empty, or zero
magic and zero pid) is therefore left alone until it is CREATION_GRACE seconds
old (by its inode's change time).  (2) Unlinking goes by name: a remover that
examined a stale book, then unlinked the name after a new orderbook had
replaced that book, would remove the new one.  So every remover (``remove_stale``
and a creator taking a name over) holds an exclusive ``flock`` on the segment
it examined while it checks that the name still refers to that very segment
and unlinks it; removers of one segment take turns, and the name can change
under a remover only by the hands of the segment's live owner.  Readers that
are still mapped keep the old, unlinked segment: when ``writer_alive()``
turns false they should close() and attach() again (`hftlab.book.Follower`
does that for them).
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import time

import numpy as np

from hftlab.book.doorbell import UnsafeFolder, bells_root, checked_folder, sweep_bells
from hftlab.book.layout import HEADER_DTYPE, LAYOUT_VERSION, MAGIC, NotYours, check_name, pid_alive, user_name
from hftlab.book.untracked import shm_open, shm_unlink

__all__ = ["CREATION_GRACE", "remove_stale", "remove_unless_live", "owner_name", "segment_owner",
           "sweep_orphan_bells"]

# A segment nobody has claimed yet (empty, or no pid in its header) is taken for
# one being created, and never removed, until it is this many seconds old.
CREATION_GRACE = 10.0


def remove_stale(name) -> int | None:
    """Remove the segment `name` if its writer is dead or it is not a book.

    Returns the dead writer's pid (0 if the segment was not a valid book),
    or None if nothing was removed: no such segment, its writer is alive, or
    it is younger than CREATION_GRACE and not claimed yet (being created).
    `NotYours` if it belongs to another user: that is never removed.
    """
    outcome, pid, valid = remove_unless_live(check_name(name))
    if outcome == "foreign":
        raise NotYours(f"it belongs to {owner_name(pid)}, not to you")
    if outcome != "removed":
        return None
    return pid if valid else 0


def owner_name(uid) -> str:
    """'user alice (uid 1001)', or 'another user' where the owner cannot be told."""
    return "another user" if uid is None else f"user {user_name(uid)}"


def remove_unless_live(name, mine_is_stale=False):
    """Unlink segment `name` unless a live process claims it or it may still be
    being created.  Returns (outcome, pid, valid): outcome "absent", "alive"
    (pid claims it), "young" (unclaimed and younger than CREATION_GRACE),
    "foreign" (another user's, whatever it holds: pid is that user's uid, or
    None where it cannot be told) or "removed" (pid: its dead writer, valid:
    whether it was a book).
    `mine_is_stale`: a segment claimed by this very process counts as stale.
    """
    try:
        fd = shm_open(name, os.O_RDWR)
    except FileNotFoundError:
        return "absent", 0, False
    except PermissionError:             # another user's, closed to us
        return "foreign", segment_owner(name), False
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid():   # another user's that we could open (we are root)
            return "foreign", st.st_uid, False
        # Removers take turns on this segment (see the module docstring).
        # Where flock is not supported on shared memory, the race is narrower
        # but not closed.
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        if not _still_named(name, st):
            return "absent", 0, False   # removed or replaced meanwhile
        pid, valid = _writer(fd, st)
        if pid is None:
            return "young", 0, False
        if pid_alive(pid) and not (mine_is_stale and pid == os.getpid()):
            return "alive", pid, valid
        try:
            shm_unlink(name)
        except FileNotFoundError:
            return "absent", 0, False
        sweep_bells(name)  # the bells its dead readers left, and their folder
        return "removed", pid, valid
    finally:
        os.close(fd)                    # releases the flock


def _writer(fd: int, st) -> tuple:
    """(the pid that claims the segment open as `fd`, or 0; whether it is a valid book), or
    (None, False) for one not claimed yet and younger than CREATION_GRACE (being created)."""
    header = None
    if st.st_size >= HEADER_DTYPE.itemsize:
        with mmap.mmap(fd, HEADER_DTYPE.itemsize, prot=mmap.PROT_READ) as m:
            header = np.frombuffer(m[:HEADER_DTYPE.itemsize], HEADER_DTYPE)[0]
    if header is None and st.st_size > 0:
        return 0, False                 # too small to be a book
    if header is None or (header["magic"] == b"" and int(header["writer_pid"]) == 0):
        # Unclaimed: being created, or left by a creator that died right there.
        return (None, False) if time.time() - st.st_ctime < CREATION_GRACE else (0, False)
    return _claimed(header)


def _claimed(h):
    """(writer pid or 0, is a valid book) for a segment's header record.

    A book of another layout version still names its writer at the same offset: while that
    writer runs, its book is live and must not be removed (an older or newer hftlab's)."""
    valid = h["magic"] == MAGIC and h["layout_version"] == LAYOUT_VERSION
    if h["magic"] in (MAGIC, b""):
        return int(h["writer_pid"]), valid
    return 0, False


def segment_owner(name) -> int | None:
    """The uid owning segment `name`, where the system shows segments as files (Linux)."""
    try:
        return os.stat(os.path.join("/dev/shm", name)).st_uid
    except OSError:
        return None


def _still_named(name, st) -> bool:
    """Does `name` still refer to the segment whose fstat is `st`?"""
    try:
        fd = shm_open(name, os.O_RDONLY)
    except (FileNotFoundError, PermissionError):
        return False
    try:
        now = os.fstat(fd)
    finally:
        os.close(fd)
    return (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)


def sweep_orphan_bells() -> list:
    """Sweep the bell folders of books that no longer exist (removed by hand, say, while a
    reader slept); return their names. For ``hftlab clean``: nobody else ever looks there."""
    try:
        names = os.listdir(checked_folder(bells_root()))
    except (OSError, UnsafeFolder):
        return []
    swept = []
    for name in sorted(names):
        try:
            os.close(shm_open(check_name(name), os.O_RDONLY))
        except FileNotFoundError:
            sweep_bells(name)
            swept.append(name)
        except (OSError, ValueError):   # another user's book, or not a book's name: not ours to judge
            pass
    return swept
