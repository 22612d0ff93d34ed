"""Wire protocol of the hftlab toy trading system.

Every process in the lab (price gateway, news feed, strategy, order
manager, the notebooks) talks the same line protocol: ASCII text, one
message per line ending in b'\\n', fields separated by b',', the first field
naming the message type.  docs/protocol.md is the specification for humans;
this module is the one implementation of it.

The module is sans-IO in the manner of h11: it never touches a socket.
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

import math
import operator
import re
from itertools import repeat
from typing import NamedTuple, Union

__all__ = [
    "MAX_LINE", "UINT_MAX", "NS_MAX", "ProtocolError",
    "Hello", "Price", "News", "Heartbeat", "Order", "Ack", "Reject", "Error",
    "PositionQuery", "Position",
    "Message", "MESSAGE_TYPES", "wire_type", "encode", "decode",
    "clean_reason", "LineFramer", "Decoder", "PriceColumns", "SYMBOL_RE", "SYMBOL_RULE", "is_symbol",
]

# Longest line in bytes, not counting its b'\n' nor a tolerated b'\r'.
# It bounds the memory a misbehaving peer can make us hold per connection.
MAX_LINE = 1024

_REASON_MAX = 200    # clean_reason() truncates to this many characters
_SHOW_MAX = 40       # how much of a bad field an error message quotes


def clean_reason(text: str) -> str:
    """Map any text to a valid reason field for REJECT and ERROR.

    Commas become ';', anything that is not printable ASCII becomes '?',
    the result is cut to 200 characters and an empty text becomes
    'unspecified'.  Useful for exception messages, which can contain anything.
    """
    if not isinstance(text, str):
        text = str(text)
    text = text[:_REASON_MAX]
    if not (text.isascii() and text.isprintable() and "," not in text):
        text = "".join(
            ";" if c == "," else c if " " <= c <= "~" else "?" for c in text)
    return text or "unspecified"


class ProtocolError(ValueError):
    """A line or a message that does not follow the protocol.

    .reason (== str(exc)) says what was wrong.  It is passed through
    clean_reason() so it can be sent back as is in an ERROR or REJECT.
    """

    def __init__(self, reason):
        reason = clean_reason(reason)
        super().__init__(reason)
        self.reason = reason


def _show(value):
    # Quote (part of) a bad field in an error message.  ascii() keeps the
    # reason printable ASCII whatever the field holds, and a comma is
    # written as an escape too, so that the reason stays a valid field.
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("ascii", "backslashreplace")
    elif not isinstance(value, str):
        return type(value).__name__
    shown = ascii(value[:_SHOW_MAX]).replace(",", "\\x2c")
    return shown + "..." if len(value) > _SHOW_MAX else shown


# -- messages --------------------------------------------------------------

class Hello(NamedTuple):
    feed: str               # 'PRICE' or 'NEWS'
    session: str            # new on every gateway start


class Price(NamedTuple):
    seq: int
    ts_ns: int
    symbol: str
    price: float


class News(NamedTuple):
    seq: int
    ts_ns: int
    sentiment: int          # 0..100


class Heartbeat(NamedTuple):
    last_seq: int
    ts_ns: int


class Order(NamedTuple):
    order_id: str
    tick_ts_ns: int
    side: str               # 'BUY' or 'SELL'
    qty: int                # any integer; the order manager judges the value
    symbol: str
    price: float


class Ack(NamedTuple):
    order_id: str
    order_no: int


class Reject(NamedTuple):
    order_id: str
    reason: str


class Error(NamedTuple):
    reason: str


class PositionQuery(NamedTuple):
    # Client to order manager: "I am `strategy`; what is my position in `symbol`?"
    # It also names the connection: ORDERs that follow on it are booked for `strategy`.
    strategy: str
    symbol: str


class Position(NamedTuple):
    # Order manager to client: the net quantity booked for `strategy` in `symbol`
    # (BUYs minus SELLs, from the journal); negative is short.
    strategy: str
    symbol: str
    qty: int


Message = Union[Hello, Price, News, Heartbeat, Order, Ack, Reject, Error,
                PositionQuery, Position]

MESSAGE_TYPES = {
    "HELLO": Hello,
    "PRICE": Price,
    "NEWS": News,
    "HB": Heartbeat,
    "ORDER": Order,
    "ACK": Ack,
    "REJECT": Reject,
    "ERROR": Error,
    "POSQUERY": PositionQuery,
    "POSITION": Position,
}

_WIRE_TYPES = {cls: name for name, cls in MESSAGE_TYPES.items()}


def wire_type(msg: Message) -> str:
    """Return the wire type of a message ('PRICE', 'HB', ...)."""
    try:
        return _WIRE_TYPES[type(msg)]
    except KeyError:
        for cls, name in _WIRE_TYPES.items():
            if isinstance(msg, cls):
                return name
        raise TypeError(
            f"not a protocol message: {type(msg).__name__}") from None


# -- fields ----------------------------------------------------------------
#
# Each kind of field is a pair (decode, encode):
#     decode(raw: bytes, name) -> value    raw is ASCII and free of b','
#     encode(value, name) -> str           the field's text on the wire
# Both raise ProtocolError.  The table _FIELDS further down drives both
# directions, so encode() and decode() cannot disagree about a message.

_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
_SESSION_RE = re.compile(r"[A-Za-z0-9_-]{1,16}")    # the book stores 16 bytes
# The one symbol rule of the lab: the configuration and the book check symbols
# with it too, so that every symbol a book holds can travel in a PRICE line.
# At most 8 characters: the book's symbol field is 8 bytes.
SYMBOL_RE = re.compile(r"[A-Z][A-Z0-9.]{0,7}")
_TOKEN_RE_B = re.compile(_TOKEN_RE.pattern.encode())
_SESSION_RE_B = re.compile(_SESSION_RE.pattern.encode())
_SYMBOL_RE_B = re.compile(SYMBOL_RE.pattern.encode())
# The same rules in words (no commas: they end up in a reason field).
_TOKEN_RULE = "must be 1-32 of A-Z a-z 0-9 _ -"
_SESSION_RULE = "must be 1-16 of A-Z a-z 0-9 _ -"

# Every integer field fits the 64-bit fields that hold it (the book, numpy, C):
# a uint is at most 2**64 - 1, a timestamp in ns (time.time_ns(), a signed 64-bit
# value in the book) at most 2**63 - 1, which is in the year 2262.
UINT_MAX = 2**64 - 1
NS_MAX = 2**63 - 1
SYMBOL_RULE = "must be A-Z then up to 7 of A-Z 0-9 ."


def is_symbol(value) -> bool:
    """Does `value` follow the symbol rule (SYMBOL_RE, said in words by SYMBOL_RULE)?"""
    return isinstance(value, str) and SYMBOL_RE.fullmatch(value) is not None


def _dec_uint(raw, name, most=UINT_MAX):
    # isdigit() accepts only ASCII digits on bytes, so no sign, space or
    # underscore gets through to int(), which would allow them.
    if raw.isdigit():
        try:
            value = int(raw)
        except ValueError:      # more digits than int() converts
            pass
        else:
            if value <= most:
                return value
            raise ProtocolError(f"{name} is above {most}: {_show(raw)}")
    raise ProtocolError(f"{name} is not a non-negative integer: {_show(raw)}")


def _enc_uint(value, name, most=UINT_MAX):
    n = _enc_int(value, name)
    if n[0] == "-":
        raise ProtocolError(f"{name} must be non-negative; got {n}")
    if int(n) > most:
        raise ProtocolError(f"{name} must be at most {most}; got {n}")
    return n


def _dec_ns(raw, name):
    return _dec_uint(raw, name, NS_MAX)


def _enc_ns(value, name):
    return _enc_uint(value, name, NS_MAX)


def _dec_int(raw, name):
    digits = raw[1:] if raw[:1] == b"-" else raw
    if digits.isdigit():
        try:
            return int(raw)
        except ValueError:
            pass
    raise ProtocolError(f"{name} is not an integer: {_show(raw)}")


def _enc_int(value, name):
    # operator.index() takes ints and numpy integers but not floats or str.
    try:
        return str(operator.index(value))
    except TypeError:
        raise ProtocolError(
            f"{name} must be an integer; got {_show(value)}") from None


def _dec_price(raw, name):
    # A plain decimal: -?digits(.digits)?  Checked by hand because float()
    # would also take 'nan', '1e5', '1_0', '+1' and surrounding spaces.
    whole, dot, frac = (raw[1:] if raw[:1] == b"-" else raw).partition(b".")
    if whole.isdigit() and (frac.isdigit() or not dot):
        value = float(raw)
        if math.isfinite(value):    # 400 digits overflow to inf
            return value
        raise ProtocolError(f"{name} out of range: {_show(raw)}")
    raise ProtocolError(f"{name} is not a plain decimal: {_show(raw)}")


def _enc_price(value, name):
    if isinstance(value, (str, bytes, bytearray)):
        raise ProtocolError(f"{name} must be a number; got {_show(value)}")
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ProtocolError(
            f"{name} must be a number; got {_show(value)}") from None
    if not math.isfinite(value):
        raise ProtocolError(f"{name} must be finite; got {value}")
    return f"{value:.2f}"


def _dec_sentiment(raw, name):
    value = _dec_uint(raw, name)
    if value > 100:
        raise ProtocolError(f"{name} must be 0..100; got {value}")
    return value


def _enc_sentiment(value, name):
    text = _enc_int(value, name)
    if not 0 <= int(text) <= 100:
        raise ProtocolError(f"{name} must be 0..100; got {text}")
    return text


# Symbols repeat on every tick, so remember the ones already checked: a dict
# hit is cheaper than a regex match and hands out one shared str per symbol.
# Bounded so that a peer inventing symbols cannot grow it forever.
_symbols = {}
_SYMBOLS_MAX = 4096


def _dec_symbol(raw, name):
    symbol = _symbols.get(raw)
    if symbol is None:
        if not _SYMBOL_RE_B.fullmatch(raw):
            raise ProtocolError(f"{name} {SYMBOL_RULE}; got {_show(raw)}")
        symbol = raw.decode("ascii")
        if len(_symbols) < _SYMBOLS_MAX:
            _symbols[raw] = symbol
    return symbol


def _enc_symbol(value, name):
    if not is_symbol(value):
        raise ProtocolError(f"{name} {SYMBOL_RULE}; got {_show(value)}")
    return value


def _dec_token(raw, name):
    if not _TOKEN_RE_B.fullmatch(raw):
        raise ProtocolError(f"{name} {_TOKEN_RULE}; got {_show(raw)}")
    return raw.decode("ascii")


def _enc_token(value, name):
    if not (isinstance(value, str) and _TOKEN_RE.fullmatch(value)):
        raise ProtocolError(f"{name} {_TOKEN_RULE}; got {_show(value)}")
    return value


def _dec_session(raw, name):
    if not _SESSION_RE_B.fullmatch(raw):
        raise ProtocolError(f"{name} {_SESSION_RULE}; got {_show(raw)}")
    return raw.decode("ascii")


def _enc_session(value, name):
    if not (isinstance(value, str) and _SESSION_RE.fullmatch(value)):
        raise ProtocolError(f"{name} {_SESSION_RULE}; got {_show(value)}")
    return value


def _choice(*allowed):
    # A field that is one of a few fixed words (feed name, order side).
    by_bytes = {word.encode("ascii"): word for word in allowed}
    words = " or ".join(allowed)

    def dec(raw, name):
        try:
            return by_bytes[raw]
        except KeyError:
            raise ProtocolError(
                f"{name} must be {words}; got {_show(raw)}") from None

    def enc(value, name):
        if isinstance(value, str) and value in allowed:
            return value
        raise ProtocolError(f"{name} must be {words}; got {_show(value)}")

    return dec, enc


def _dec_reason(raw, name):
    if not raw:
        raise ProtocolError(f"{name} is empty")
    text = raw.decode("ascii")     # the whole line was checked for ASCII
    if not text.isprintable():
        raise ProtocolError(f"{name} is not printable ASCII: {_show(raw)}")
    return text


def _enc_reason(value, name):
    if not isinstance(value, str):
        raise ProtocolError(f"{name} must be a str; got {_show(value)}")
    if not value:
        raise ProtocolError(f"{name} is empty")
    if "," in value:
        raise ProtocolError(f"{name} contains a comma: {_show(value)}")
    if not (value.isascii() and value.isprintable()):
        raise ProtocolError(f"{name} is not printable ASCII: {_show(value)}")
    return value


_UINT = (_dec_uint, _enc_uint)
_NS = (_dec_ns, _enc_ns)
_SESSION = (_dec_session, _enc_session)
_INT = (_dec_int, _enc_int)
_PRICE = (_dec_price, _enc_price)
_SENTIMENT = (_dec_sentiment, _enc_sentiment)
_SYMBOL = (_dec_symbol, _enc_symbol)
_TOKEN = (_dec_token, _enc_token)
_FEED = _choice("PRICE", "NEWS")
_SIDE = _choice("BUY", "SELL")
_REASON = (_dec_reason, _enc_reason)

_FIELDS = {
    Hello: (_FEED, _SESSION),
    Price: (_UINT, _NS, _SYMBOL, _PRICE),
    News: (_UINT, _NS, _SENTIMENT),
    Heartbeat: (_UINT, _NS),
    Order: (_TOKEN, _NS, _SIDE, _INT, _SYMBOL, _PRICE),
    Ack: (_TOKEN, _UINT),
    Reject: (_TOKEN, _REASON),
    Error: (_REASON,),
    PositionQuery: (_TOKEN, _SYMBOL),
    Position: (_TOKEN, _SYMBOL, _INT),
}


# -- encode ----------------------------------------------------------------

def encode(msg: Message) -> bytes:
    """Encode one message as one line of bytes ending in b'\\n'.

    Raises ProtocolError if a field cannot be encoded (a comma in a reason,
    a lower-case symbol, a NaN price...) so that nothing we send can break
    the framing or be refused by decode().
    """
    wire = wire_type(msg)
    parts = [wire]
    for (_, enc), name, value in zip(_FIELDS[MESSAGE_TYPES[wire]],
                                     msg._fields, msg):
        parts.append(enc(value, name))
    line = ",".join(parts)
    if len(line) > MAX_LINE:
        raise ProtocolError(f"line longer than {MAX_LINE} bytes")
    return line.encode("ascii") + b"\n"


# -- decode ----------------------------------------------------------------

def _parser(cls, wire):
    fields = tuple(zip(cls._fields, (dec for dec, _ in _FIELDS[cls])))
    n = len(fields) + 1
    new = cls._make

    def parse(parts):
        if len(parts) != n:
            raise ProtocolError(f"{wire} needs {n} fields; got {len(parts)}")
        return new([dec(raw, name)
                    for (name, dec), raw in zip(fields, parts[1:])])

    return parse


_parsers = {name.encode("ascii"): _parser(cls, name)
            for name, cls in MESSAGE_TYPES.items()}
def _parse(line):
    # decode() minus the '\r' and length handling, which the framer does.
    if not line:
        raise ProtocolError("empty line")
    if not line.isascii():
        raise ProtocolError("line is not ASCII")
    parts = line.split(b",")
    parse = _parsers.get(parts[0])
    if parse is None:
        raise ProtocolError(f"unknown message type {_show(parts[0])}")
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
    return _parse(line)


# -- streams ---------------------------------------------------------------

class LineFramer:
    """Cut a byte stream into lines.

    feed() takes whatever recv() returned and gives back the complete lines
    (without b'\\n' and a trailing b'\\r') and, in their place, a
    ProtocolError for each line longer than max_line.  Such a line is
    reported as soon as it is known to be too long and then skipped up to
    its b'\\n', so one line never holds more than max_line + 1 bytes (the
    + 1 being room for a b'\\r' whose b'\\n' has not arrived yet).
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
        if type(data) is not bytes:
            data = bytes(data)
        out = []
        if self._skipping:
            end = data.find(b"\n")
            if end < 0:
                return out
            data = data[end + 1:]
            self._skipping = False
        if self._buf:
            data = self._buf + data
        # One split per chunk rather than a loop over bytes: the C code
        # does the scanning.
        lines = data.split(b"\n")
        tail = lines.pop()
        limit = self.max_line
        for line in lines:
            if line[-1:] == b"\r":
                line = line[:-1]
            out.append(line if len(line) <= limit else self._too_long())
        if len(tail) > limit and (len(tail) > limit + 1
                                  or tail[-1:] != b"\r"):
            out.append(self._too_long())
            self._skipping = True
            tail = b""
        self._buf = tail
        return out

    def _too_long(self):
        return ProtocolError(f"line longer than {self.max_line} bytes")


class PriceColumns(NamedTuple):
    """A run of PRICE messages column by column, as `Decoder.feed_columns` returns them.

    Row k is ``Price(seqs[k], ts_ns[k], symbols[k], prices[k])``; the four lists have one item
    per line, in stream order. A reader of a busy feed (the orderbook in a burst) can check and
    use a whole column at once instead of making and unpacking one Price per tick.
    """
    seqs: list
    ts_ns: list
    symbols: list
    prices: list

    def messages(self) -> list:
        """The same run as a list of Price messages, what `Decoder.feed` returns."""
        return list(map(tuple.__new__, repeat(Price), zip(*self)))


class Decoder:
    """Framing plus decode: bytes in, messages out.

    feed() returns Message and ProtocolError instances in stream order and
    never raises, whatever bytes come in, so that one bad line never loses
    the good lines around it.
    """

    def __init__(self, max_line: int = MAX_LINE):
        self._framer = LineFramer(max_line)

    @property
    def buffered(self) -> int:
        """Bytes held waiting for a newline."""
        return self._framer.buffered

    def feed(self, data: bytes) -> list:
        got = self.feed_columns(data)
        return got if type(got) is list else got.messages()

    def feed_columns(self, data: bytes, min_bytes: int | None = None):
        """Like feed(), but a chunk that completes two or more lines, all of them valid PRICE
        lines, comes back as one PriceColumns instead of a list of Price.

        Anything else is returned as feed() returns it, a list. Both carry the same messages,
        so a caller may always use ``got if type(got) is list else got.messages()``. The
        columns come from `hftlab.protocol_fast`, which takes only what it can check at once.
        Complete lines shorter than `min_bytes` in all (default
        ``protocol_fast.COLUMNS_MIN_BYTES``) go line by line, which is faster for a few.
        """
        framer = self._framer
        limit = framer.max_line
        if not framer._skipping and limit >= _fast.COLUMNS_MAX_LINE:
            if type(data) is not bytes:
                data = bytes(data)
            buf = framer._buf + data if framer._buf else data
            end = buf.rfind(b"\n") + 1
            # enough bytes, two lines or more, and a tail the framer keeps
            if end >= (_fast.COLUMNS_MIN_BYTES if min_bytes is None else min_bytes) and \
                    buf.find(b"\n") + 1 < end and len(buf) - end <= limit:
                columns = _fast.price_columns(buf if end == len(buf) else buf[:end])
                if columns is not None:
                    framer._buf = buf[end:]
                    return columns
        out = framer.feed(data)
        for i, line in enumerate(out):
            if type(line) is bytes:
                try:
                    out[i] = _parse(line)
                except ProtocolError as exc:
                    out[i] = exc
        return out


# The fast paths (a faster PRICE parser, installed into _parsers, and the column-wise decoder)
# have their own module; imported last, because it builds on everything above.
from hftlab import protocol_fast as _fast  # noqa: E402
