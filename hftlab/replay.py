"""Tick files for replay: read and check a CSV of prices (and news), sans-IO.

``hftlab record`` writes what a running lab's feeds send, one row per message::

    time,kind,symbol,value
    1764087000.123456789,PRICE,AAPL,172.53
    1764087000.373456789,NEWS,,72

and ``hftlab gateway --replay FILE`` (or ``hftlab run --replay FILE``) sends it again. A
learner's own tick file needs only three columns, in any order, with a header line::

    time,symbol,price
    2024-01-02T09:30:00.000,AAPL,185.64
    2024-01-02T09:30:00.250,MSFT,370.87

- ``time``: seconds (``12.5``, or Unix time ``1764087000.12``) or an ISO 8601 date-time.
  Only the differences matter: the replay keeps the file's pace. Rows must be in time order.
- ``symbol``: one of the lab's symbols (``--symbols``).
- ``price`` (or ``value``): a positive number, sent with 2 decimals.
- ``kind`` (optional): ``PRICE`` (the default) or ``NEWS``; a NEWS row's value is the
  sentiment, a whole number 0..100, and its symbol is left empty.

Other columns are ignored. The file is UTF-8 text (a byte-order mark at its start, as a
spreadsheet writes, is fine), one row per line, lines ending in ``\\n``, ``\\r\\n`` or ``\\r``;
a field may be quoted (``"185.64"``) but must end on its line. Limits, far above what a real
tick file needs, so that a wrong file is refused in one sentence rather than filling memory or
waiting for ever: the file is a regular file (not a directory, device or pipe) of at most
100 MiB (`MAX_FILE_BYTES`); a line has at most 4096 characters (`MAX_LINE`); a price is at most
1,000,000,000 (`MAX_PRICE`); two consecutive rows are at most a day apart (`MAX_GAP`).

`parse` works on text, not files, so it can be tried on a string; it stops at the first bad
row with one sentence that names its line (`ReplayError`), so a replay never starts on a
file it would choke on halfway.
"""

from __future__ import annotations

import csv
import datetime as _dt
import math
import os
import re
import stat
from typing import NamedTuple

__all__ = ["COLUMNS", "PRICE", "NEWS", "SAMPLE", "MAX_FILE_BYTES", "MAX_LINE", "MAX_PRICE", "MAX_GAP",
           "ReplayError", "Event", "format_time", "format_row", "describe_file", "parse", "load", "batches"]

COLUMNS = ("time", "kind", "symbol", "value")  # what `hftlab record` writes
PRICE, NEWS = "PRICE", "NEWS"
# A recording of `hftlab run --fast` (seed 42) that ships with the package: lesson 04 replays it.
SAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "sample_ticks.csv")
_HINT = "a tick file needs a header line with time,symbol,price (kind and value for news are optional)"

# A row is about 40 bytes and parses into about 300 bytes of memory, so 100 MiB is some 2.5
# million rows and about a gigabyte once parsed: over 8 hours of a --fast recording, weeks at
# the default pace. The whole file is read and checked before the replay starts, so a larger
# one would take the memory a lab needs, or all of it (/dev/zero never ends).
MAX_FILE_BYTES = 100 * 2**20
# A row is about 40 characters; this leaves room for a spreadsheet's extra columns, and a longer
# line is not a row of ticks (the csv module's own limit, 128 KiB, would fail with no line number).
MAX_LINE = 4096
# The dearest share traded (Berkshire Hathaway A) costs under a million. Up to a billion, a
# price keeps its cents through a float and the wire's fast path (13 digits before the point),
# and a PRICE line stays short; a larger one is a wrong column or a wrong unit, not a price.
MAX_PRICE = 1_000_000_000
# The replay waits out every gap at the file's pace: a longer one (a time in the wrong unit,
# a typo like 1e300) would look like a hang. A night between two sessions is shorter than this.
MAX_GAP = 24 * 3600.0
_LINE_END = re.compile(r"\r\n|\r|\n")  # what a text file's lines may end in, whoever saved it


class ReplayError(ValueError):
    """A tick file that cannot be replayed; the message names the line and what to do."""


class Event(NamedTuple):
    at: float  # seconds after the file's first row
    kind: str  # PRICE or NEWS
    symbol: str  # "" for NEWS
    value: float | int  # the price, or the sentiment 0..100
    line: int  # where it is in the file, for messages


def format_time(ts_ns: int) -> str:
    """A ts_ns as exact decimal seconds, as `hftlab record` writes it."""
    return f"{ts_ns // 1_000_000_000}.{ts_ns % 1_000_000_000:09d}"


def format_row(ts_ns: int, kind: str, symbol: str, value) -> str:
    """One CSV line (with its newline) in the `COLUMNS` that `hftlab record` writes."""
    shown = f"{value:.2f}" if kind == PRICE else str(int(value))
    return f"{format_time(ts_ns)},{kind},{symbol},{shown}\n"


def _seconds(text: str) -> float | None:
    """Seconds from a number or an ISO 8601 date-time (naive ones taken as UTC); None if neither."""
    try:
        value = float(text)
        return value if math.isfinite(value) else None
    except ValueError:
        pass
    try:
        # fromisoformat takes a trailing Z only from Python 3.11 on.
        when = _dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    return when.timestamp()


def _rows(text: str, source: str):
    """(line number, fields) of each line that is not blank: one row per line, checked."""
    for n, line in enumerate(_LINE_END.split(text.removeprefix("\ufeff")), 1):
        if len(line) > MAX_LINE:
            raise ReplayError(f"{source} line {n} is {len(line)} characters long, more than the {MAX_LINE} "
                              "a tick file's line may have; is it a tick file (one row of time,symbol,price "
                              "per line)?")
        if "\0" in line:  # the csv module refuses NUL before Python 3.11, with no line number
            raise ReplayError(f"{source} line {n} has a NUL character; a tick file is text: save it as CSV")
        if '"' not in line:
            fields = line.split(",")  # what the csv module makes of such a line, sooner
        else:
            # The line alone, with its end: a quoted field left open keeps that "\n" (the csv
            # module, given all the lines, would read on into the next line and glue them).
            fields = next(csv.reader([line + "\n"]), [])
            if any("\n" in f for f in fields):
                raise ReplayError(f"{source} line {n}: a quoted field does not end on its line (its closing "
                                  "quote is missing, or it holds a line break); a tick file has one row per "
                                  "line, so close each quote on the line it opens")
        if any(f.strip() for f in fields):  # blank lines are allowed anywhere
            yield n, fields


def parse(text: str, symbols, source: str = "the tick file") -> list:
    """The `Event`s of a tick file's text, checked; raises `ReplayError` at the first bad row."""
    symbols = tuple(symbols)
    rows = _rows(text, source)
    n, header = next(rows, (0, None))
    if header is None:
        raise ReplayError(f"{source} is empty: {_HINT} and at least one row")
    col = _columns([f.strip().lower() for f in header], f"{source} line {n}")
    events, first, last = [], None, None
    for n, fields in rows:
        where = f"{source} line {n}"
        if len(fields) != len(header):
            raise ReplayError(f"{where} has {len(fields)} fields but the header has {len(header)}")
        get = lambda name: fields[col[name]].strip() if name in col else ""
        kind = get("kind").upper() or PRICE
        if kind not in (PRICE, NEWS):
            raise ReplayError(f"{where}: kind {get('kind')!r} is neither PRICE nor NEWS")
        at = _time(get("time"), last, where)
        last = (at, n)
        first = at if first is None else first
        if kind == PRICE:
            symbol, value = _symbol(get("symbol"), symbols, where), _price(get("value"), where)
        else:
            symbol, value = "", _sentiment(get("value"), where)
        events.append(Event(at - first, kind, symbol, value, n))
    if not events:
        raise ReplayError(f"{source} has a header but no rows: there is nothing to replay")
    return events


def _columns(header: list, where: str) -> dict:
    """{"time", "symbol", "value", maybe "kind"} -> the header's index of each (the value
    column may be called price)."""
    value_name = "value" if "value" in header else "price"
    missing = [name for name in ("time", "symbol", value_name) if name not in header]
    if missing:
        raise ReplayError(f"{where}: the header {','.join(header)!r} has no "
                          f"{' and no '.join(repr(m) for m in missing)} column; {_HINT}")
    col = {name: header.index(name) for name in ("time", "symbol", "kind") if name in header}
    col["value"] = header.index(value_name)
    return col


def _time(raw: str, last, where: str) -> float:
    """A row's time in seconds, checked against the last row's (time, line), if any."""
    at = _seconds(raw)
    if at is None:
        raise ReplayError(f"{where}: time {raw!r} is neither seconds (like 12.5) nor an "
                          "ISO 8601 date-time (like 2024-01-02T09:30:00.250)")
    if last is not None and at < last[0]:
        raise ReplayError(f"{where}: time {raw} is earlier than line {last[1]}'s; the rows must be in time order")
    if last is not None and at - last[0] > MAX_GAP:
        raise ReplayError(f"{where}: time {raw} is more than a day after line {last[1]}'s, and the replay "
                          "would wait that long; give times in seconds (or ISO 8601), and cut the file at "
                          "the gap or close it")
    return at


def _symbol(raw: str, symbols: tuple, where: str) -> str:
    symbol = raw.upper()
    if symbol not in symbols:
        raise ReplayError(f"{where}: symbol {raw!r} is not one of the lab's symbols "
                          f"({','.join(symbols)}); pass --symbols with the file's symbols")
    return symbol


def _price(raw: str, where: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ReplayError(f"{where}: the price {raw!r} is not a number") from None
    if not (math.isfinite(value) and round(value, 2) > 0):
        raise ReplayError(f"{where}: the price {raw!r} must be a positive number (at least 0.01)")
    if value > MAX_PRICE:
        raise ReplayError(f"{where}: the price {raw!r} is more than {MAX_PRICE:,}, the most a tick "
                          "file's price may be; is this column the price, in dollars?")
    return value


def _sentiment(raw: str, where: str) -> int:
    # isascii: isdigit() is also true of "²", which int() refuses.
    if not (raw.isascii() and raw.isdigit() and int(raw) <= 100):
        raise ReplayError(f"{where}: the news sentiment {raw!r} must be a whole number 0..100")
    return int(raw)


def describe_file(mode: int) -> str:
    """What a file of this st_mode is, in words: "a regular file", "a directory", "a socket"..."""
    for test, words in ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a directory"),
                        (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
                        (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return words
    return "a special file"


def _too_large(path: str, size: int) -> ReplayError:
    return ReplayError(f"cannot read the tick file {path}: it has {size:,} bytes, more than a tick file may "
                       f"have ({MAX_FILE_BYTES:,}, about 2.5 million rows); replay a part of it")


def _check(path: str, st) -> None:
    """Refuse what is not a regular file of at most MAX_FILE_BYTES, before reading it."""
    if not stat.S_ISREG(st.st_mode):
        raise ReplayError(f"cannot read the tick file {path}: it is {describe_file(st.st_mode)}, not a file; "
                          "give the path of a CSV file of ticks")
    if st.st_size > MAX_FILE_BYTES:
        raise _too_large(path, st.st_size)


def _read(path: str) -> bytes:
    """The bytes of the regular file at `path`; a `ReplayError` for anything else."""
    _check(path, os.stat(path))  # so that a device is not even opened
    # O_NONBLOCK: a FIFO swapped in since that check opens at once instead of waiting for a
    # writer, and fstat then refuses it. (A regular file's reads ignore the flag.)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    with open(fd, "rb") as f:
        _check(path, os.fstat(fd))
        data = f.read(MAX_FILE_BYTES + 1)  # not more, should it have grown since
    if len(data) > MAX_FILE_BYTES:
        raise _too_large(path, len(data))
    return data


def load(path: str, symbols) -> list:
    """`parse` the file at `path`; a file that cannot be read, or is no tick file, is a `ReplayError` too."""
    try:
        data = _read(path)
    except OSError as exc:
        raise ReplayError(f"cannot read the tick file {path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = len(_LINE_END.split(data[:exc.start].decode("utf-8")))
        raise ReplayError(f"cannot read the tick file {path}: line {line} is not UTF-8 text (byte "
                          f'0x{data[exc.start]:02x}); save it as UTF-8 ("CSV UTF-8" in a spreadsheet)') from None
    return parse(text, symbols, source=path)


def batches(events) -> list:
    """The events grouped into what the gateway sends in one write: same time, same kind."""
    out = []
    for event in events:
        if out and out[-1][0].at == event.at and out[-1][0].kind == event.kind:
            out[-1].append(event)
        else:
            out.append([event])
    return out
