"""The order manager's journal: an append-only CSV file of booked orders and their fills.

A row counts as booked only once it is whole in the file (`Journal.append` writes the
complete row with one unbuffered ``os.write`` or cuts a short write back off and raises
`JournalFull`), so an ACK always names a row that is in the operating system, and with
``fsync=True`` on the disk. Order numbers count 1, 2, 3... over complete rows and continue
from the largest one after a restart; the ids, terms and fills of booked orders, and each
strategy's position, cash, fees and realized P&L (`hftlab.accounts`), are read back from
the file at start.

Each row is an order and its fill together: the order manager fills an order as it books
it (at the book's price then), so one row, written once, holds both. A journal written
before fills existed (`STRATEGY_JOURNAL_COLUMNS`) is upgraded in place when the order
manager opens it: its rows get empty fill columns and count as filled at their own price,
with no fee.

`read_journal` reads any journal as dicts of strings, for people and tests; the order
manager (`hftlab.order_manager`) is the only writer.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat

from typing import NamedTuple

from hftlab import accounts, process, protocol

__all__ = ["JOURNAL_COLUMNS", "STRATEGY_JOURNAL_COLUMNS", "OLD_JOURNAL_COLUMNS", "Filled", "JournalFull",
           "Journal", "read_all", "sync_directory", "file_kind", "terms", "read_journal"]

# fill_price: the book's price the order was filled at; fee: what the fill cost; book_seq and
# book_ts_ns: the seq and tick time of the book's record it was filled at (0: no price there,
# filled at the order's own price).
JOURNAL_COLUMNS = ("order_no,recv_ns,client,order_id,tick_ts_ns,side,qty,symbol,price,strategy,"
                   "fill_price,fee,book_seq,book_ts_ns")
# The header of journals written before fills: upgraded in place by `Journal`.
STRATEGY_JOURNAL_COLUMNS = "order_no,recv_ns,client,order_id,tick_ts_ns,side,qty,symbol,price,strategy"
# The header of journals written before orders carried a strategy's name: still readable
# by `read_journal`, but the order manager does not append to one (see `Journal`).
OLD_JOURNAL_COLUMNS = "order_no,recv_ns,client,order_id,tick_ts_ns,side,qty,symbol,price"


class Filled(NamedTuple):
    """How an order was filled: at `price`, costing `fee`, from the book's record of tick
    `book_seq` made at `book_ts_ns`."""
    price: float
    fee: float
    book_seq: int = 0
    book_ts_ns: int = 0


class JournalFull(Exception):
    """An order could not be written whole to the journal; it is not booked."""


class Journal:
    """Append-only CSV of booked orders, readable and writable by the user only.

    A row counts as booked only once it is whole in the file: `append` either writes the
    complete row or leaves the file as it was (a short write is cut off again) and raises
    `JournalFull`, so an order number is used only by a complete row and the next row is
    never glued onto a partial one. With ``fsync=True`` each row is also forced to the
    disk before `append` returns (survives a power loss, not only a crash of this process).
    """

    def __init__(self, path: str, fsync: bool = False):
        """Open the journal at `path` (made if need be), repair what a crash left, and read
        back its orders. A journal that cannot be used is a `process.Fatal`, one sentence."""
        self.path, self.fsync = path, fsync
        try:
            created = not os.path.exists(path)
            self.fd = self._open()
            data = self._repair(read_all(self.fd), created)
        except OSError as exc:
            raise process.Fatal(f"cannot use the journal {path}: {exc.strerror or exc} "
                                "(choose another with --journal)") from None
        self.size = len(data)  # the file's length up to its last whole row
        self.torn = False  # a failed row could not be cut off yet
        self.last_no = 0
        # order_id -> (order_no, what was ordered, how it was filled): the memory that makes
        # re-sends harmless (the same ACK and FILL again)
        self.booked = {}
        # strategy -> its Account (position, cash, fees, realized P&L): what a restarted
        # strategy asks for, and what a restarted order manager must not forget
        self.ledger = accounts.Ledger()
        self._load(data.decode("ascii", "replace").split("\n")[1:-1])

    def _open(self) -> int:
        """The journal's file descriptor: a regular file, the user's alone."""
        path = self.path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        if os.path.exists(path) and not stat.S_ISREG(os.stat(path).st_mode):
            raise process.Fatal(f"the journal {path} is {file_kind(os.stat(path).st_mode)}, not a "
                                "regular file; pass --journal with the path of a file")
        # O_NONBLOCK: a FIFO swapped in after the check must not block the open.
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK, 0o600)
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise process.Fatal(f"the journal {path} is {file_kind(mode)}, not a regular file; "
                                "pass --journal with the path of a file")
        if stat.S_IMODE(mode) & 0o077:
            # Made by an older version or by hand: it repeats orders and clients, so it is ours alone.
            with contextlib.suppress(PermissionError):  # someone else's file: theirs to decide
                os.fchmod(fd, 0o600)
        return fd

    def _repair(self, data: bytes, created: bool) -> bytes:
        """The journal's bytes once what a crash left is cut off, and the header written to a
        new one; a file that is not a journal of this version is a `process.Fatal`."""
        header = (JOURNAL_COLUMNS + "\n").encode()
        if data and header.startswith(data):
            data = b""  # a header cut short by a crash while the file was new
            os.ftruncate(self.fd, 0)
        elif data.startswith((STRATEGY_JOURNAL_COLUMNS + "\n").encode()):
            data = self._upgrade(data)
        elif data.startswith((OLD_JOURNAL_COLUMNS + "\n").encode()):
            raise process.Fatal(f"the journal {self.path} was written by an older hftlab (it has no "
                                "strategy column); move it away (its orders stay readable) or "
                                "pass another --journal")
        elif data and not data.startswith(header):
            # Checked before anything is cut off: this may be someone else's file.
            raise process.Fatal(f"the journal {self.path} does not start with the header line "
                                f"{JOURNAL_COLUMNS!r}, so it is not an hftlab journal or is damaged; "
                                "move it away or pass another --journal")
        if data and not data.endswith(b"\n"):
            # A row cut short by a crash mid-write: never ACKed (the ACK follows the write),
            # so the strategy will re-send it. Drop it, or the next row would be glued onto it.
            data = data[:data.rfind(b"\n") + 1]
            os.ftruncate(self.fd, len(data))
        if not data:
            if os.write(self.fd, header) != len(header):
                raise OSError(errno.ENOSPC, "the header did not fit")
            data = header
            if self.fsync:
                os.fsync(self.fd)
                if created:
                    sync_directory(self.path)
        return data

    def _upgrade(self, data: bytes) -> bytes:
        """A journal of the version before fills, rewritten with the fill columns (empty:
        filled at the order's own price, no fee): whole in a new file, then renamed over
        the old one, so a crash in between leaves one or the other, never half of each."""
        lines = data.split(b"\n")
        rows = [line + b",,,," for line in lines[1:-1] if line]
        new = b"\n".join([JOURNAL_COLUMNS.encode(), *rows]) + b"\n"
        tmp = f"{self.path}.upgrading"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            if os.write(fd, new) != len(new):
                raise OSError(errno.ENOSPC, "the upgraded journal did not fit")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        if self.fsync:
            sync_directory(self.path)
        os.close(self.fd)
        self.fd = self._open()
        return new

    def _load(self, rows: list) -> None:
        """Read the booked orders back (rows as text lines, the header left out)."""
        names = JOURNAL_COLUMNS.split(",")
        for line_no, line in enumerate(rows, start=2):
            parts = line.split(",")
            r = dict(zip(names, parts))
            try:
                no, qty, price = int(r["order_no"]), int(r["qty"]), float(r["price"])
                if len(parts) != len(names) or r["side"] not in ("BUY", "SELL") or no <= 0:
                    raise ValueError
                filled = _filled(r, price)
            except (KeyError, ValueError):
                raise process.Fatal(f"line {line_no} of the journal {self.path} is damaged; move the file "
                                    "away (its orders stay readable) or pass another --journal") from None
            # The largest number, not the count of rows: a row deleted by hand must not
            # make the next order reuse a number.
            self.last_no = max(self.last_no, no)
            self.booked[r["order_id"]] = (no, (r["side"], qty, r["symbol"], price), filled)
            self.ledger.fill(r["strategy"], r["side"], qty, r["symbol"], filled.price, filled.fee)

    def position(self, strategy: str, symbol: str) -> int:
        """The net quantity booked for `strategy` in `symbol` (BUYs minus SELLs)."""
        account = self.ledger.get(strategy)
        return account.position.get(symbol, 0) if account else 0

    def append(self, order: protocol.Order, client: str, recv_ns: int, strategy: str = "",
               filled: Filled | None = None) -> int:
        """Write the order and its fill (by default: at its own price, no fee) as one whole
        row and return its number; raises `JournalFull`."""
        o, order_no = order, self.last_no + 1
        filled = filled or Filled(o.price, 0.0)
        row = (f"{order_no},{recv_ns},{client},{o.order_id},{o.tick_ts_ns},{o.side},"
               f"{o.qty},{o.symbol},{o.price:.2f},{strategy},{filled.price:.2f},{filled.fee:.2f},"
               f"{filled.book_seq},{filled.book_ts_ns}\n").encode()
        if self.torn and not self._cut_back():
            raise JournalFull("journal unwritable (a partial row could not be removed): order not "
                              "booked; send it again later")
        try:
            written = os.write(self.fd, row)  # unbuffered: in the OS before the ACK
            while written < len(row):  # a short write: only a full disk (or a limit) does that
                more = os.write(self.fd, row[written:])
                if more == 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                written += more
            if self.fsync:
                os.fsync(self.fd)
        except OSError as exc:
            self._cut_back()
            raise JournalFull(f"journal unwritable ({exc.strerror or exc}): order not booked; "
                              "send it again later") from None
        self.size += len(row)
        self.last_no = order_no
        self.booked[o.order_id] = (order_no, terms(o), filled)
        self.ledger.fill(strategy, o.side, o.qty, o.symbol, filled.price, filled.fee)
        return order_no

    def _cut_back(self) -> bool:
        """Remove whatever part of a failed row reached the file; False if that failed too.

        The next row must start on a line of its own. Shrinking a file needs no space, so
        this works on a full disk; if it fails anyway, nothing more is written until it
        succeeds (`append` tries again first)."""
        try:
            os.ftruncate(self.fd, self.size)
        except OSError:
            self.torn = True
            return False
        self.torn = False
        return True

    def close(self) -> None:
        os.close(self.fd)


def _filled(r: dict, price: float) -> Filled:
    """A journal row's fill; a row from before fills (empty columns) was filled at its price."""
    if r["fill_price"] == "":
        return Filled(price, 0.0)
    return Filled(float(r["fill_price"]), float(r["fee"]), int(r["book_seq"]), int(r["book_ts_ns"]))


def read_all(fd: int) -> bytes:
    """Everything in the file open as `fd`, from its start."""
    chunks, offset = [], 0
    while chunk := os.pread(fd, 1 << 20, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def sync_directory(path: str) -> None:
    """fsync the directory holding `path`, so a new file's name survives a power loss too."""
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_kind(mode: int) -> str:
    """'a directory', 'a FIFO'...: what a path that is not a regular file is."""
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def terms(order: protocol.Order) -> tuple:
    """What an order asks for, as compared when its id comes again: the exact values."""
    return (order.side, order.qty, order.symbol, order.price)


def read_journal(path: str) -> list:
    """The journal's rows as dicts of strings (empty if there is no journal yet).

    The column names come from the file's own header line, so journals written before
    the ``strategy`` column was added read as well."""
    try:
        with open(path) as f:
            lines = f.read().split("\n")
    except FileNotFoundError:
        return []
    names = lines[0].split(",")
    # What follows the last newline is a row still being written (or nothing).
    return [dict(zip(names, line.split(","))) for line in lines[1:-1] if line]
