"""Lesson 03's checks: the book's footprint, and a seqlock read (scripted, then against a
real writer process)."""

from __future__ import annotations

import subprocess
import sys

from hftlab import book
from hftlab.checks.common import Verdict, Wrong, bounded, call, expect, run_cases

__all__ = ["check_footprint", "check_seqlock_read", "seqlock_against_a_writer", "SEQLOCK_LOOPS"]


def check_footprint(fn) -> Verdict:
    """fn(n_symbols, page_size) -> (bytes the book's layout uses, bytes mapped)."""
    cases = [(1, 4096), (4, 4096), (64, 4096), (4, 16384), (73, 64)]

    def judge(fn, case):
        n, page = case
        used = book.HEADER_DTYPE.itemsize + n * book.RECORD_DTYPE.itemsize
        want = (used, -(-used // page) * page)
        got = call(fn, n, page)
        if not (isinstance(got, tuple) and len(got) == 2):
            raise Wrong(f"footprint({n}, {page}) returned {got!r}: return a pair (used, mapped).")
        expect(got[0], want[0], f"footprint({n}, {page})[0]",
                "one header (HEADER_DTYPE.itemsize) plus one record (RECORD_DTYPE.itemsize) per symbol.")
        expect(got[1], want[1], f"footprint({n}, {page})[1]",
                "the kernel maps whole pages: round `used` UP to a multiple of page_size "
                "(a partly used page is still a whole page).")

    return run_cases("footprint", fn, cases, judge)


class _ScriptedRecord:
    """A record whose version and fields follow a script, as a busy writer would make them.

    `script` is a list of (version, fields) states; each call to load_version() or
    load_fields() sees the current state and then moves one step on (the writer does not
    wait for the reader), staying on the last state at the end.
    """

    def __init__(self, script):
        self.script, self.step = script, 0

    def _now(self):
        state = self.script[min(self.step, len(self.script) - 1)]
        self.step += 1
        return state

    def load_version(self):
        return self._now()[0]

    def load_fields(self):
        return self._now()[1]


def check_seqlock_read(fn) -> Verdict:
    """fn(load_version, load_fields) -> a consistent copy of the fields (seqlock reader)."""
    good, newer = (172.5, 7), (172.6, 8)
    cases = [
        ("a quiet record", [(2, good), (2, good), (2, good)], good,
         "read the version, copy the fields, read the version again; equal and even means done."),
        ("a writer in the middle of a write (odd version)",
         [(3, (172.6, 7)), (3, (172.6, 7)), (3, (172.6, 7)), (4, newer), (4, newer), (4, newer)], newer,
         "an odd version means a write is in progress: the fields may be half written. "
         "Try again until you read an even version."),
        ("a write that lands during the copy (version changes)",
         [(2, good), (2, (172.6, 7)), (4, newer), (4, newer), (4, newer), (4, newer)], newer,
         "read the version AFTER copying too: if it differs from the one before, the copy may "
         "mix old and new fields, so try again."),
    ]

    cases.append(("a real writer process", None, None, None))

    def judge(fn, case):
        what, script, want, hint = case
        if script is None:  # the last case: a real writer in another process
            return seqlock_against_a_writer(fn)
        record = _ScriptedRecord(script)
        got = bounded(fn, record.load_version, record.load_fields, hint=SEQLOCK_LOOPS)
        if got != want:
            raise Wrong(f"for {what} it returned {got!r}, expected {want!r}.\n  Hint: {hint}")

    return run_cases("seqlock_read", fn, cases, judge)


SEQLOCK_LOOPS = ("it never returned: your read probably never re-reads the version. Each try "
                 "must start by reading it anew: the writer finishes its write, but a number you "
                 "read before stays odd (or stale) for ever.")

_SLOW_WRITER = """import sys, time
from hftlab.book import open_untracked      # a reader of the check's segment: never unlinks it

shm = open_untracked(sys.argv[1])
words = shm.buf.cast("q")                   # version, four fields, done
print("ready", flush=True)
try:
    for k in range(1, int(sys.argv[2]) + 1):
        words[0] += 1                       # odd: a write is in progress
        for i in range(1, 5):
            words[i] = k                    # field by field, slowly: torn until the last one
            time.sleep(0.0002)
        words[0] += 1                       # even: whole again
        time.sleep(0.0002)
finally:
    words[5] = 1
    words.release()
    shm.close()
"""


def seqlock_against_a_writer(fn, rounds: int = 300, seconds: float = 30.0) -> int:
    """Run fn(load_version, load_fields) over and over against a real, slow writer process.

    The writer (another process) writes round k as four fields equal to k, one store at a
    time, with the seqlock's odd/even version around them, so it is in mid-write most of
    the time. Every copy fn returns must have four equal fields. Returns how many copies
    were read; raises Wrong on a torn copy, DidNotReturn if fn does not return.
    """
    shm = book.create_untracked(book.new_name(), 48)
    words = shm.buf.cast("q")
    writer = None
    try:
        for i in range(6):
            words[i] = 0
        writer = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, shm.name, str(rounds)],
                                  stdout=subprocess.PIPE, text=True)
        if writer.stdout.readline() != "ready\n":
            raise RuntimeError("the check's writer process did not start; run the cell again")

        def load_version():
            return words[0]

        def load_fields():
            return tuple(words[1:5])

        def read_until_done():
            copies = []
            while not words[5]:
                copies.append(fn(load_version, load_fields))
            return copies

        copies = bounded(read_until_done, seconds=seconds, hint=SEQLOCK_LOOPS)
        for got in copies:
            if not (isinstance(got, tuple) and len(got) == 4):
                raise Wrong(f"against a real writer it returned {got!r}: return what "
                             "load_fields() returned.")
            if len(set(got)) > 1:
                raise Wrong(f"against a real writer process it returned the torn copy {got!r} "
                             "(a whole record has four equal fields).\n  Hint: read the version "
                             "before AND after copying, and keep the copy only if both reads are "
                             "the same even number.")
        return len(copies)
    finally:
        if writer is not None:
            try:
                writer.wait(timeout=seconds)
            except subprocess.TimeoutExpired:
                writer.kill()
                writer.wait()
            writer.stdout.close()
        book.unlink_untracked(shm)  # the name goes first, whatever happens to the mapping
        try:
            words.release()
            shm.close()
        except BufferError:  # a runaway reader thread still holds a view: the GC unmaps it
            pass
