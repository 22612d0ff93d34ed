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

`parse` works on text, not files, so it can be tried on a string; it stops at the first bad
row with one sentence that names its line (`ReplayError`), so a replay never starts on a
file it would choke on halfway.
"""

from __future__ import annotations

import csv
import datetime as _dt
import math
import os
from typing import NamedTuple

__all__ = ["COLUMNS", "PRICE", "NEWS", "SAMPLE", "ReplayError", "Event", "format_time",
           "format_row", "parse", "load", "batches"]

COLUMNS = ("time", "kind", "symbol", "value")  # what `hftlab record` writes
PRICE, NEWS = "PRICE", "NEWS"
# A recording of `hftlab run --fast` (seed 42) that ships with the package: lesson 04 replays it.
SAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "sample_ticks.csv")
_HINT = "a tick file needs a header line with time,symbol,price (kind and value for news are optional)"


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


def parse(text: str, symbols, source: str = "the tick file") -> list:
    """The `Event`s of a tick file's text, checked; raises `ReplayError` at the first bad row."""
    symbols = tuple(symbols)
    rows = csv.reader(text.splitlines())
    header = None
    for fields in rows:
        if any(f.strip() for f in fields):
            header = [f.strip().lower() for f in fields]
            break
    if header is None:
        raise ReplayError(f"{source} is empty: {_HINT} and at least one row")
    where = f"{source} line {rows.line_num}"
    value_name = "value" if "value" in header else "price"
    missing = [name for name in ("time", "symbol", value_name) if name not in header]
    if missing:
        raise ReplayError(f"{where}: the header {','.join(header)!r} has no "
                          f"{' and no '.join(repr(m) for m in missing)} column; {_HINT}")
    col = {name: header.index(name) for name in ("time", "symbol", value_name, "kind") if name in header}
    events, first, last = [], None, None
    for fields in rows:
        if not any(f.strip() for f in fields):
            continue  # blank lines are allowed anywhere
        n = rows.line_num
        where = f"{source} line {n}"
        if len(fields) != len(header):
            raise ReplayError(f"{where} has {len(fields)} fields but the header has {len(header)}")
        get = lambda name: fields[col[name]].strip() if name in col else ""
        kind = get("kind").upper() or PRICE
        if kind not in (PRICE, NEWS):
            raise ReplayError(f"{where}: kind {get('kind')!r} is neither PRICE nor NEWS")
        at = _seconds(get("time"))
        if at is None:
            raise ReplayError(f"{where}: time {get('time')!r} is neither seconds (like 12.5) nor an "
                              "ISO 8601 date-time (like 2024-01-02T09:30:00.250)")
        if last is not None and at < last[0]:
            raise ReplayError(f"{where}: time {get('time')} is earlier than line {last[1]}'s; "
                              "the rows must be in time order")
        last = (at, n)
        first = at if first is None else first
        raw = get(value_name)
        if kind == PRICE:
            symbol = get("symbol").upper()
            if symbol not in symbols:
                raise ReplayError(f"{where}: symbol {get('symbol')!r} is not one of the lab's symbols "
                                  f"({','.join(symbols)}); pass --symbols with the file's symbols")
            try:
                value = float(raw)
            except ValueError:
                raise ReplayError(f"{where}: the price {raw!r} is not a number") from None
            if not (math.isfinite(value) and round(value, 2) > 0):
                raise ReplayError(f"{where}: the price {raw!r} must be a positive number (at least 0.01)")
        else:
            symbol = ""
            if not (raw.isdigit() and 0 <= int(raw) <= 100):
                raise ReplayError(f"{where}: the news sentiment {raw!r} must be a whole number 0..100")
            value = int(raw)
        events.append(Event(at - first, kind, symbol, value, n))
    if not events:
        raise ReplayError(f"{source} has a header but no rows: there is nothing to replay")
    return events


def load(path: str, symbols) -> list:
    """`parse` the file at `path`; a file that cannot be read is a `ReplayError` too."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ReplayError(f"cannot read the tick file {path}: {why}") from None
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
