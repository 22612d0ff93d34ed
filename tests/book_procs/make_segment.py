"""Leave a segment behind, as a writer that died without cleaning up would.

    make_segment.py NAME stale      a valid book whose writer_pid is this
                                    process (dead once it has exited)
    make_segment.py NAME badmagic   a segment that is not a book

A book is never registered with a resource tracker, so it outlives this
process by itself; the plain segment is unregistered so that it does too.
The test that asked for it removes it.
"""
import sys
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from hftlab.book import SharedPriceBook  # noqa: E402

name, kind = sys.argv[1], sys.argv[2]
if kind == "stale":
    book = SharedPriceBook(["AAA", "BBB"], name)
    book.update("AAA", 42.0)
    book.close()
elif kind == "badmagic":
    shm = SharedMemory(name, create=True, size=4096)
    shm.buf[:8] = b"NOTABOOK"
    shm.close()
    # plain SharedMemory registered it: keep our tracker from removing it
    resource_tracker.unregister(shm._name, "shared_memory")
else:
    sys.exit(f"unknown kind {kind!r}")
print("made", flush=True)
