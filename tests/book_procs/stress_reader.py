"""Attach to the stress writer's book and look for torn reads.

Reads with read() and snapshot() as fast as it can until the writer sets the
feed DOWN (or a deadline passes), and, as a negative control, also copies
the records raw, without the seqlock.  Prints "ready" once attached and the
figures as one JSON line at the end.
"""
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from hftlab.book import FEED_DOWN, SharedPriceBook  # noqa: E402

name, deadline_s = sys.argv[1], float(sys.argv[2])
book = SharedPriceBook.attach(name)
n = len(book.symbols)
print("ready", flush=True)


def consistent(i, price, seq, ts_ns, updates):
    # symbol i gets its u-th update at k = i + (u - 1) * n (i == 0 -> k = n u)
    k = seq
    return (price == float(k) and ts_ns == k and k % n == i
            and updates == (k - i) // n + (1 if i else 0))


stats = dict(reads=0, snapshots=0, raw_copies=0, torn_read=0,
             torn_snapshot=0, snapshot_not_coherent=0, torn_raw=0,
             distinct_seen=0, went_backwards=0, version_went_backwards=0)
last = [0] * n
# A version word only ever grows; seeing it shrink means that it is not
# written with single 8-byte stores (struct.pack_into zero-fills first).
u64, vword = book._u64, book._vword
last_version = [0] * n
raw_view = book._records           # the bare records, no seqlock
deadline = time.perf_counter() + deadline_s
try:
    while time.perf_counter() < deadline:
        for _ in range(50):
            for i, s in enumerate(book.symbols):
                v = u64[vword[i]]
                if v < last_version[i]:
                    stats["version_went_backwards"] += 1
                last_version[i] = v
                q = book.read(s)
                stats["reads"] += 1
                if q is None:
                    continue
                if not consistent(i, q.price, q.seq, q.ts_ns, q.updates):
                    stats["torn_read"] += 1
                if q.seq != last[i]:
                    if q.seq < last[i]:
                        stats["went_backwards"] += 1
                    stats["distinct_seen"] += 1
                    last[i] = q.seq
            # tolist(): tuples (version, symbol, price, seq, ts_ns,
            # written_ns, updates) of plain Python values, fast to check
            snap = book.snapshot().tolist()
            stats["snapshots"] += 1
            seqs = [r[3] for r in snap]
            for i, r in enumerate(snap):
                if r[3] and not consistent(i, r[2], r[3], r[4], r[6]):
                    stats["torn_snapshot"] += 1
            # Taken between two updates, a snapshot holds n consecutive k.
            if min(seqs) > 0 and max(seqs) - min(seqs) != n - 1:
                stats["snapshot_not_coherent"] += 1
            raw = raw_view.copy().tolist()    # one memcpy, no seqlock
            stats["raw_copies"] += 1
            for i, r in enumerate(raw):
                if r[3] and not consistent(i, r[2], r[3], r[4], r[6]):
                    stats["torn_raw"] += 1
        if book.header()["feed_state"] == FEED_DOWN:
            break
    stats["retries"] = book.retries
    stats["writer_updates"] = book.header()["updates"]
finally:
    raw_view = u64 = None
    book.close()
print(json.dumps(stats), flush=True)
