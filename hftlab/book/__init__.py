"""The book: the latest price of every symbol, in one shared-memory segment.

The orderbook process owns (creates, writes, unlinks) a POSIX shared-memory
segment; the strategy, the order manager, notebooks and tests attach to it by
name and read.  One idea per module, each with its part of the story:

- `hftlab.book.layout`: what the segment's bytes are (header, records,
  constants), the names and symbols a book accepts, the errors.
- `hftlab.book.seqlock`: `SharedPriceBook`, one writer and many readers
  under a seqlock, and why a seqlock rather than a lock.
- `hftlab.book.opening`: creating a book's segment (taking a dead writer's
  name over) and checking that a segment is a book this code can read.
- `hftlab.book.untracked`: opening, creating and unlinking a segment without
  multiprocessing's resource tracker, which would otherwise destroy the book
  when its first reader exits (cpython issue 82300).
- `hftlab.book.stale`: who removes a book, and removing a dead writer's book
  without ever removing a live one.
- `hftlab.book.follow`: `Follower`, following a book across orderbook restarts;
  every long-lived reader reads through it.

- `hftlab.book.doorbell`: `Doorbell`, for a reader that sleeps until the
  writer has news rather than polling: a "somebody is asleep" word in the
  header, a UNIX datagram socket per sleeping reader, rung by
  `SharedPriceBook.ring` after each write or batch, and the order of arming,
  looking and sleeping that loses no wake-up (section "Waking on the doorbell"
  of its docstring).

Everything is importable from here, as ``from hftlab.book import SharedPriceBook``.
"""

from hftlab.book.doorbell import (Doorbell, UnsafeFolder, bell_dir, bells_root, checked_folder,
                                  remove_dead_bells, ring_bells, sweep_bells)
from hftlab.book.follow import Follower
from hftlab.book.layout import (FEED_DOWN, FEED_NEVER, FEED_STATES, FEED_UP, HEADER_DTYPE, LAYOUT_VERSION,
                                MAGIC, MAX_NAME_LEN, MAX_SYMBOLS, RECORD_DTYPE, BookBusy,
                                BookEmpty, BookError, BookInUse, BookNotFound, LayoutMismatch, NotYours,
                                Quote, check_name, check_symbols, field_offset, layout_nbytes,
                                new_name, pid_alive, user_name)
from hftlab.book.seqlock import MAX_RETRIES, SharedPriceBook
from hftlab.book.stale import CREATION_GRACE, remove_stale, sweep_orphan_bells
from hftlab.book.untracked import (create_untracked, open_untracked, shm_open, shm_unlink,
                                   tracker_disabled, unlink_untracked)

__all__ = [
    # layout
    "HEADER_DTYPE", "RECORD_DTYPE", "FEED_NEVER", "FEED_UP", "FEED_DOWN", "FEED_STATES",
    "MAGIC", "LAYOUT_VERSION", "MAX_SYMBOLS", "MAX_NAME_LEN", "field_offset",
    "BookError", "BookNotFound", "BookEmpty", "BookInUse", "NotYours", "LayoutMismatch", "BookBusy",
    "Quote", "new_name", "check_name", "check_symbols", "layout_nbytes", "pid_alive", "user_name",
    # the seqlocked book
    "SharedPriceBook", "MAX_RETRIES",
    # without the resource tracker
    "tracker_disabled", "open_untracked", "create_untracked", "unlink_untracked",
    "shm_open", "shm_unlink",
    # stale books
    "CREATION_GRACE", "remove_stale", "sweep_orphan_bells",
    # following a book
    "Follower",
    # sleeping until the writer rings
    "Doorbell", "UnsafeFolder", "bells_root", "bell_dir", "checked_folder", "ring_bells",
    "sweep_bells", "remove_dead_bells",
]
