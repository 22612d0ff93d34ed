"""Lesson 01's check: a length-prefixed framer, fed the stream in every chunking."""

from __future__ import annotations

from hftlab.checks.common import Verdict, Wrong, bounded, call, run_cases

__all__ = ["check_make_length_framer"]


def _within_seconds(seconds, judge, fn, case):
    """judge(fn, case) under `bounded`: a learner's loop that never ends is a hint, not a hang."""
    bounded(judge, fn, case, seconds=seconds, what="your framer",
            hint="it probably loops forever: each pass of a loop must either take a whole frame "
                 "out of the buffer or stop (return) until more bytes arrive.")


def _length_frame(payload: bytes) -> bytes:
    """A length-prefixed frame: the payload's length as 4 bytes, big-endian, then the payload."""
    return len(payload).to_bytes(4, "big") + payload


def check_make_length_framer(make) -> Verdict:
    """make() -> feed; feed(data) -> the payloads of the frames completed so far, in order."""
    mixed = [b"ACK,a1,1", b"", b"line one\nline two", b"y" * 300, b"HB,2,200"]
    cases = [
        ("three frames in one chunk", [b"ACK,a1,1", b"ACK,a2,2", b"HB,2,200"], "whole",
         "one recv() can hold several frames: after one frame, read the next header from "
         "what is left, until fewer bytes than a whole frame remain."),
        ("an empty payload between two others", [b"A", b"", b"B"], "whole",
         "a length of 0 is a frame whose payload is b'': return it, then go on."),
        ("payloads that contain newlines and commas", [b"line one\nline two", b"a,b\n"], "whole",
         "the payload may hold any bytes, b'\\n' too: find frames by their length, never "
         "by a delimiter."),
        ("a 300-byte payload", [b"x" * 300], "whole",
         "the length is 4 bytes, big-endian: int.from_bytes(header, 'big'); 300 does not fit "
         "in one byte, and little-endian reads it as another number."),
        ("the mixed stream one byte at a time", mixed, "bytes",
         "a chunk can end inside the 4-byte header: keep the bytes, and read a length only "
         "once all 4 bytes are there."),
        ("the mixed stream split in two at every position", mixed, "every split",
         "a chunk can end inside a payload: keep the bytes until header + length of them "
         "have arrived, then cut the frame off and keep the rest."),
    ]

    def chunkings(stream, how):
        if how == "whole":
            return [[stream]]
        if how == "bytes":
            return [[stream[i:i + 1] for i in range(len(stream))]]
        return [[stream[:cut], stream[cut:]] for cut in range(1, len(stream))]

    def judge(make, case):
        what, payloads, how, hint = case
        stream = b"".join(_length_frame(p) for p in payloads)
        for chunks in chunkings(stream, how):
            feed = call(make)
            if not callable(feed):
                raise Wrong(f"make_length_framer() returned {feed!r}: return the feed function.")
            got = []
            for chunk in chunks:
                try:
                    out = call(feed, chunk)
                except Wrong as crash:
                    raise Wrong(f"fed {what}, {crash}.\n  Hint: {hint}") from None
                if not isinstance(out, list):
                    raise Wrong(f"feed({chunk[:20]!r}...) returned {out!r}: return a list of "
                                 "payloads (bytes), [] when no frame is complete yet.")
                got += out
            if got != payloads:
                cut = f" (cut after byte {len(chunks[0])})" if how == "every split" else ""
                shown = [p if len(p) < 30 else p[:12] + b"..." for p in got]
                raise Wrong(f"fed {what}{cut}, it gave {shown!r}; expected "
                             f"{[p if len(p) < 30 else p[:12] + b'...' for p in payloads]!r}."
                             f"\n  Hint: {hint}")

    return run_cases("make_length_framer", make, cases,
                lambda make, case: _within_seconds(5, judge, make, case))
