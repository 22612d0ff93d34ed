"""Own a book and hammer update_index for SECONDS (or MAX_UPDATES).

Every field of an update derives from one counter k: price=float(k), seq=k,
ts_ns=k, and symbol k % n gets its updates-th update at k = i + (updates-1)*n.
Prints "ready", waits for a "go" line, sets the feed UP, hammers, sets the
feed DOWN, prints "done <k>" and keeps the book until stdin closes or says
"exit".
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from hftlab.book import FEED_DOWN, FEED_UP, SharedPriceBook  # noqa: E402

name, seconds, max_updates = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
symbols = ["S0", "S1", "S2", "S3"]
n = len(symbols)
with SharedPriceBook(symbols, name) as book:
    print("ready", flush=True)
    sys.stdin.readline()
    book.set_feed_state(FEED_UP, "stress")
    update = book.update_index
    k = 0
    deadline = time.perf_counter() + seconds
    while k < max_updates:
        for _ in range(1000):
            k += 1
            update(k % n, float(k), k, k)
        if time.perf_counter() > deadline:
            break
    book.set_feed_state(FEED_DOWN)
    print("done", k, flush=True)
    sys.stdin.readline()
