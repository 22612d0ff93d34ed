"""Wire protocol of the hftlab toy trading system.

Every process in the lab (price gateway, news feed, strategy, order
manager, the notebooks) talks the same line protocol: ASCII text, one
message per line ending in b'\\n', fields separated by b',', the first field
naming the message type.  docs/protocol.md is the specification for humans;
this package is the one implementation of it:

- `hftlab.protocol.fields`: what each kind of field may hold, and its bytes
  (the codecs, the symbol rule, ProtocolError);
- `hftlab.protocol.messages`: the messages, and the fields each is made of;
- this module, the package's face: encode(), decode(), LineFramer and Decoder;
- `hftlab.protocol.columns`: the fast paths for PRICE lines, which the
  Decoder uses; the same answers, sooner.

The package is sans-IO in the manner of h11: it never touches a socket.
encode() and decode() are pure functions between message tuples and bytes,
LineFramer cuts an arbitrary byte stream into lines and Decoder combines the
two.  That is so a notebook can step through messages without a network,
the tests can split a stream at every byte position, and every process
reuses the same code instead of growing its own slightly different parser.

Two error conventions, on purpose:

- encode() and decode() raise ProtocolError: the caller handed over one
  thing and it was bad.
- LineFramer.feed() and Decoder.feed() return ProtocolError instances among
  their results, in stream order.  A stream goes on after a bad line, and
  raising would lose the good lines that arrived in the same chunk.

A ProtocolError's reason is always a valid wire reason (short printable
ASCII without commas), so a server can answer encode(Error(exc.reason)).
"""

from __future__ import annotations

from hftlab.protocol import columns
from hftlab.protocol.fields import (NS_MAX, SYMBOL, SYMBOL_RE, SYMBOL_RULE, UINT_MAX, ProtocolError,
                                    clean_reason, is_symbol, show, symbol_codec)
from hftlab.protocol.messages import (FIELDS, MESSAGE_TYPES, Ack, Error, Fill, Heartbeat, Hello, Message, News,
                                      Order, Position, PositionQuery, Price, PriceColumns, Reject, wire_type)

__all__ = [
    "MAX_LINE", "UINT_MAX", "NS_MAX", "ProtocolError",
    "Hello", "Price", "News", "Heartbeat", "Order", "Ack", "Fill", "Reject", "Error",
    "PositionQuery", "Position",
    "Message", "MESSAGE_TYPES", "wire_type", "encode", "decode", "parsers",
    "clean_reason", "LineFramer", "Decoder", "PriceColumns", "SYMBOL_RE", "SYMBOL_RULE", "is_symbol",
]

# Longest line in bytes, not counting its b'\n' nor a tolerated b'\r'.
# It bounds the memory a misbehaving peer can make us hold per connection.
MAX_LINE = 1024


# -- encode ----------------------------------------------------------------

def encode(msg: Message) -> bytes:
    """Encode one message as one line of bytes ending in b'\\n'.

    Raises ProtocolError if a field cannot be encoded (a comma in a reason,
    a lower-case symbol, a NaN price...) so that nothing we send can break
    the framing or be refused by decode().
    """
    wire = wire_type(msg)
    parts = [wire]
    for codec, name, value in zip(FIELDS[MESSAGE_TYPES[wire]], msg._fields, msg):
        parts.append(codec.encode(value, name))
    line = ",".join(parts)
    if len(line) > MAX_LINE:
        raise ProtocolError(f"line longer than {MAX_LINE} bytes")
    return line.encode("ascii") + b"\n"


# -- decode ----------------------------------------------------------------

def _parser(cls, wire: str, codecs):
    """parse(parts) -> a `cls` message from a line's fields, checked by `codecs`."""
    names = cls._fields
    n = len(codecs) + 1
    new = cls._make

    def parse(parts):
        if len(parts) != n:
            raise ProtocolError(f"{wire} needs {n} fields; got {len(parts)}")
        return new([codec.decode(raw, name) for codec, name, raw in zip(codecs, names, parts[1:])])

    return parse


def parsers(met: dict | None = None) -> dict:
    """The parser of each message type, by its wire name as bytes: parse(parts) -> message.

    With `met`, a dict that the parsers fill with the symbols they have checked (a Decoder's
    memory), PRICE lines take the fast path (`hftlab.protocol.columns.price_parser`)."""
    symbol = symbol_codec(met)
    table = {}
    for wire, cls in MESSAGE_TYPES.items():
        codecs = tuple(symbol if codec is SYMBOL else codec for codec in FIELDS[cls])
        table[wire.encode("ascii")] = _parser(cls, wire, codecs)
    if met is not None:
        make = tuple.__new__          # skips Price.__new__'s Python-level frame
        table[b"PRICE"] = columns.price_parser(lambda values: make(Price, values), met, symbol.decode,
                                               table[b"PRICE"])
    return table


_PARSERS = parsers()   # decode()'s: one line at a time, no memory


def parse_line(line: bytes, table: dict = _PARSERS) -> Message:
    """decode() minus the b'\\r' and length handling, which a LineFramer does."""
    if not line:
        raise ProtocolError("empty line")
    if not line.isascii():
        raise ProtocolError("line is not ASCII")
    parts = line.split(b",")
    parse = table.get(parts[0])
    if parse is None:
        raise ProtocolError(f"unknown message type {show(parts[0])}")
    return parse(parts)


def decode(line: bytes) -> Message:
    """Decode one line (without its b'\\n') into a message.

    A trailing b'\\r' is stripped.  Raises ProtocolError.
    """
    if type(line) is not bytes:
        line = bytes(line)
    if line[-1:] == b"\r":
        line = line[:-1]
    if len(line) > MAX_LINE:
        raise ProtocolError(f"line longer than {MAX_LINE} bytes")
    return parse_line(line)


# -- streams ---------------------------------------------------------------

class LineFramer:
    """Cut a byte stream into lines.

    feed() takes whatever recv() returned and gives back the complete lines
    (without b'\\n' and a trailing b'\\r') and, in their place, a
    ProtocolError for each line longer than max_line.  Such a line is
    reported as soon as it is known to be too long and then skipped up to
    its b'\\n', so one line never holds more than max_line + 1 bytes (the
    + 1 being room for a b'\\r' whose b'\\n' has not arrived yet).

    feed() is three steps, each public: take() the complete lines' bytes,
    cut() them into lines, and overflow(), the error for a line still open
    that is too long already.
    """

    def __init__(self, max_line: int = MAX_LINE):
        self.max_line = max_line
        self._buf = b""
        self._skipping = False     # inside a too-long line, reported already

    @property
    def buffered(self) -> int:
        """Bytes held waiting for a newline."""
        return len(self._buf)

    def feed(self, data: bytes) -> list:
        return self.cut(self.take(data)) + self.overflow()

    def take(self, data: bytes) -> bytes:
        """The bytes of the lines that `data` completes (b"" if none), each ending in b'\\n';
        the rest is kept for the next call. The rest of a line reported too long is skipped."""
        if type(data) is not bytes:
            data = bytes(data)
        if self._skipping:
            end = data.find(b"\n")
            if end < 0:
                return b""
            data = data[end + 1:]
            self._skipping = False
        if self._buf:
            data = self._buf + data
        end = data.rfind(b"\n") + 1
        self._buf = data[end:]
        return data[:end]

    def cut(self, body: bytes) -> list:
        """Complete lines, as take() gives them, cut into lines (one split per chunk: the C
        code does the scanning); an error in place of each line longer than max_line."""
        lines = body.split(b"\n")
        lines.pop()             # the empty rest after the last b'\n'
        limit = self.max_line
        for i, line in enumerate(lines):
            if line[-1:] == b"\r":
                line = lines[i] = line[:-1]
            if len(line) > limit:
                lines[i] = self._too_long()
        return lines

    def overflow(self) -> list:
        """[an error] if the line kept for later is too long already (its rest is then
        skipped), else []."""
        tail, limit = self._buf, self.max_line
        if len(tail) > limit and (len(tail) > limit + 1 or tail[-1:] != b"\r"):
            self._buf, self._skipping = b"", True
            return [self._too_long()]
        return []

    def _too_long(self):
        return ProtocolError(f"line longer than {self.max_line} bytes")


class Decoder:
    """Framing plus decode: bytes in, messages out.

    feed() returns Message and ProtocolError instances in stream order and
    never raises, whatever bytes come in, so that one bad line never loses
    the good lines around it.  Each Decoder remembers the symbols it has
    checked (`symbols`), at most `hftlab.protocol.fields.SYMBOLS_MAX`.
    """

    def __init__(self, max_line: int = MAX_LINE):
        self.framer = LineFramer(max_line)
        self.symbols = {}                  # raw bytes -> str, for each symbol met and checked
        self.parsers = parsers(self.symbols)

    @property
    def buffered(self) -> int:
        """Bytes held waiting for a newline."""
        return self.framer.buffered

    def feed(self, data: bytes) -> list:
        framer = self.framer
        return self._parse(framer.cut(framer.take(data))) + framer.overflow()

    def feed_columns(self, data: bytes, min_bytes: int | None = None) -> list:
        """Like feed(), except that a chunk whose complete lines are two or more valid PRICE
        lines, `min_bytes` at least (default ``columns.COLUMNS_MIN_BYTES``), comes back as
        one PriceColumns item in the list instead of one Price per line.

        ``PriceColumns.messages()`` gives those Price. The columns come from
        `hftlab.protocol.columns`, which takes only what it can check at once; fewer bytes go
        line by line, which is faster for a few."""
        framer = self.framer
        body = framer.take(data)
        least = columns.COLUMNS_MIN_BYTES if min_bytes is None else min_bytes
        if len(body) >= least and body.find(b"\n") + 1 < len(body) and \
                framer.max_line >= columns.COLUMNS_MAX_LINE:
            got = columns.price_columns(body, self.symbols)
            if got is not None:
                return [PriceColumns(*got)] + framer.overflow()
        return self._parse(framer.cut(body)) + framer.overflow()

    def _parse(self, lines: list) -> list:
        table = self.parsers
        for i, line in enumerate(lines):
            if type(line) is bytes:
                try:
                    lines[i] = parse_line(line, table)
                except ProtocolError as exc:
                    lines[i] = exc
        return lines
