"""The exchange's event file: one CSV row per order booked, fill and reject.

The order manager writes it when given ``--events FILE`` (`hftlab match` does); the
match's scoreboard, the lesson on the match and anyone's own analysis read it back with
`read_events`. The row is formatted (`row`) and parsed (`parse`) here, side by side:
change one, change the other (tests/test_events.py holds the round trip).

Columns (`COLUMNS`)::

    time_ns      when the order manager handled it (time.time_ns(); the order's receive time)
    strategy     the connection's name (its first POSQUERY), "" if it never gave one
    kind         order | fill | reject
    order_id     the strategy's id for the order
    side, qty, symbol, price    as the ORDER line gave them
    fill_price   fill: the book's price it was filled at; empty otherwise
    fee          fill: what it cost; empty otherwise
    reason       reject: why; empty otherwise (commas are never in a reason)
    order_no     order and fill: the order's number; empty for a reject
    tick_ts_ns   the ORDER's tick_ts_ns: the tick that decided it (tick-to-trade = time_ns - tick_ts_ns)
    book_seq     fill: the seq of the book's record it was filled at (0: the book had no price)
    book_ts_ns   fill: that record's tick time

Rows are written after the replies to the read that caused them, off the orders' path,
and the file is the user's alone (0600), like the journal.
"""

from __future__ import annotations

import os
from typing import NamedTuple

__all__ = ["COLUMNS", "ORDER", "FILL", "REJECT", "Event", "row", "parse", "read_events", "EventFile"]

COLUMNS = ("time_ns,strategy,kind,order_id,side,qty,symbol,price,fill_price,fee,reason,"
           "order_no,tick_ts_ns,book_seq,book_ts_ns")
ORDER, FILL, REJECT = "order", "fill", "reject"


class Event(NamedTuple):
    time_ns: int
    strategy: str
    kind: str
    order_id: str
    side: str
    qty: int
    symbol: str
    price: float
    fill_price: float | None = None
    fee: float | None = None
    reason: str = ""
    order_no: int | None = None
    tick_ts_ns: int = 0
    book_seq: int | None = None
    book_ts_ns: int | None = None


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def row(event: Event) -> str:
    """The event as one CSV line (with its newline)."""
    return ",".join(_text(v) for v in event) + "\n"


def _number(kind, text: str):
    return kind(text) if text != "" else None


def parse(line: str) -> Event:
    """One line `row` wrote back as an Event; ValueError if it is not one."""
    p = line.rstrip("\n").split(",")
    if len(p) != len(Event._fields):
        raise ValueError(f"an event row has {len(Event._fields)} fields; got {len(p)}: {line!r}")
    return Event(int(p[0]), p[1], p[2], p[3], p[4], int(p[5]), p[6], float(p[7]),
                 _number(float, p[8]), _number(float, p[9]), p[10], _number(int, p[11]),
                 int(p[12]), _number(int, p[13]), _number(int, p[14]))


def read_events(path: str) -> list:
    """Every whole row of the event file at `path` as Events ([] if there is none yet);
    a row still being written (no newline yet) is left for the next read."""
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return []
    lines = text.split("\n")
    if lines[0] != COLUMNS:
        raise ValueError(f"{path} is not an hftlab event file (its first line is not {COLUMNS!r})")
    return [parse(line) for line in lines[1:-1] if line]


class EventFile:
    """Appends rows to the event file (made with its header line if new); OSError if it
    cannot be opened.

    It is not the record (the journal is): a row that cannot be written (a full disk) is
    lost, never an error for the orders, and `log` hears of it once, and again when rows
    can be written once more."""

    def __init__(self, path: str, log=None):
        self.path, self.log, self.failing = path, log, False
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        if os.fstat(self.fd).st_size == 0:
            os.write(self.fd, (COLUMNS + "\n").encode())

    def write(self, events) -> None:
        """Append `events` with one write (whole rows: a reader never sees half of one
        but at the very end, which `read_events` leaves for later)."""
        if not events:
            return
        try:
            os.write(self.fd, "".join(row(e) for e in events).encode())
        except OSError as exc:
            if not self.failing and self.log is not None:
                self.log.error(f"cannot write the event file {self.path}: {exc.strerror or exc}; its rows "
                               "are lost until it can be written again (the journal has every order)")
            self.failing = True
        else:
            if self.failing and self.log is not None:
                self.log.info(f"the event file {self.path} can be written again")
            self.failing = False

    def close(self) -> None:
        os.close(self.fd)
