"""Shared memory without the resource tracker: open, create and unlink a segment safely.

The resource tracker trap (cpython issue 82300)
-----------------------------------------------
Before Python 3.13, ``SharedMemory(name)`` registers the segment with the
calling process's resource tracker even when it only attaches, and the
tracker unlinks every registered segment when that process exits: the first
reader to exit would destroy the book.  3.13 added ``track=False``.  Readers
here never register: on 3.13+ they pass ``track=False``; before, they replace
``resource_tracker.register`` with a no-op while the segment is opened (under
a module-level lock; shared_memory.py looks the function up on the module at
call time; unregister is muted the same way when such a handle removes a
stale segment).  Unregistering afterwards is not an option: the tracker keeps a
set of names, so that would also cancel the registration of a segment of the
same name that this same process owns.

The owner does not register with the tracker either: the tracker of a
SIGKILLed owner would unlink the segment *by name* some milliseconds later,
and by then that name may belong to the fresh book of a restarted orderbook.
Who removes a book instead is `hftlab.book.stale`'s subject.

Everything here works on plain segments and knows nothing of the book's
layout, so a lesson or a bench can use it on any segment.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from multiprocessing import resource_tracker, shared_memory
from multiprocessing.shared_memory import SharedMemory

from hftlab.book.layout import BookEmpty

__all__ = ["tracker_disabled", "open_untracked", "create_untracked", "unlink_untracked",
           "shm_open", "shm_unlink"]

_tracker_lock = threading.Lock()


@contextlib.contextmanager
def tracker_disabled():
    """Within this block, SharedMemory neither registers nor unregisters with the tracker.

    Only needed before 3.13 (which has ``track=False``).  Another thread of this process
    creating a SharedMemory at this very moment would be muted too: the lock only orders
    our own calls."""
    with _tracker_lock:
        saved = resource_tracker.register, resource_tracker.unregister
        resource_tracker.register = resource_tracker.unregister = \
            lambda name, rtype: None
        try:
            yield
        finally:
            resource_tracker.register, resource_tracker.unregister = saved


def open_untracked(name) -> SharedMemory:
    """Attach to an existing segment without registering it; FileNotFoundError if there
    is none, BookEmpty if it has no size yet."""
    try:
        if sys.version_info >= (3, 13):
            return SharedMemory(name, track=False)
        with tracker_disabled():
            return SharedMemory(name)
    except ValueError:      # mmap of a 0-byte segment: not sized yet, or creator died
        raise BookEmpty(f"shared memory {name!r} exists but is still empty: is an "
                        "orderbook starting?") from None


def create_untracked(name, size) -> SharedMemory:
    """Create a new segment that no resource tracker will ever unlink."""
    if sys.version_info >= (3, 13):
        return SharedMemory(name, create=True, size=size, track=False)
    with tracker_disabled():
        return SharedMemory(name, create=True, size=size)


def unlink_untracked(shm: SharedMemory) -> None:
    """Remove the segment of a handle from open_untracked or create_untracked, leaving
    the tracker alone (it never heard of it)."""
    if sys.version_info >= (3, 13):
        shm.unlink()        # track=False: unlink leaves the tracker alone
    else:
        with tracker_disabled():
            shm.unlink()


# The one place that calls CPython's private _posixshmem module (the C half of
# multiprocessing.shared_memory; it has been there, with these two functions, since
# 3.8).  Removing a stale book needs what SharedMemory does not offer: a file
# descriptor to flock and fstat without mapping the segment, and an unlink by name of a
# segment that cannot even be mapped (an empty one).  os.open on /dev/shm would do on
# Linux only; macOS has no such directory.

def shm_open(name, flags, mode=0o600) -> int:
    """A file descriptor for segment `name` (without the leading slash); the caller
    closes it.  FileNotFoundError if there is none (without os.O_CREAT)."""
    return shared_memory._posixshmem.shm_open("/" + name, flags, mode)


def shm_unlink(name) -> None:
    """Remove segment `name` by name alone; FileNotFoundError if there is none."""
    shared_memory._posixshmem.shm_unlink("/" + name)

