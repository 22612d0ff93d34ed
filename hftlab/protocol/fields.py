"""The protocol's fields: what each kind of field may hold, and its bytes on the wire.

Each kind of field is a `Codec`, a pair of functions:

    decode(raw: bytes, name) -> value     raw is ASCII and free of b","
    encode(value, name) -> str            the field's text on the wire

Both raise `ProtocolError`, whose reason names the field (`name`) and quotes what was wrong.
The message table (`hftlab.protocol.messages.FIELDS`) says which codecs make up each message,
and drives both directions, so encode() and decode() cannot disagree about a message.

This is also where the lab's one symbol rule lives (`SYMBOL_RE`): the configuration and the
shared-memory book check symbols with it too, so every symbol a book holds fits a PRICE line.
"""

from __future__ import annotations

import math
import operator
import re
from typing import NamedTuple

__all__ = [
    "UINT_MAX", "NS_MAX", "REASON_MAX", "ProtocolError", "clean_reason", "show",
    "SYMBOL_RE", "SYMBOL_RULE", "is_symbol", "SYMBOLS_MAX",
    "Codec", "UINT", "NS", "INT", "PRICE", "SENTIMENT", "SYMBOL", "TOKEN", "SESSION", "FEED", "SIDE",
    "REASON", "decode_uint", "decode_ns", "decode_price", "symbol_codec",
]

# Every integer field fits the 64-bit fields that hold it (the book, numpy, C): a uint is at
# most 2**64 - 1, a timestamp in ns (time.time_ns(), a signed 64-bit value in the book) at most
# 2**63 - 1, which is in the year 2262.
UINT_MAX = 2**64 - 1
NS_MAX = 2**63 - 1
REASON_MAX = 200     # clean_reason() cuts a reason to this many characters
_SHOW_MAX = 40       # how much of a bad field an error message quotes


def clean_reason(text: str) -> str:
    """Map any text to a valid reason field for REJECT and ERROR.

    Commas become ';', anything that is not printable ASCII becomes '?',
    the result is cut to 200 characters and an empty text becomes
    'unspecified'.  Useful for exception messages, which can contain anything.
    """
    if not isinstance(text, str):
        text = str(text)
    text = text[:REASON_MAX]
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


def show(value) -> str:
    """(Part of) a bad field, quoted for an error message.  ascii() keeps the reason printable
    ASCII whatever the field holds, and a comma is written as an escape too, so that the
    reason stays a valid field."""
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("ascii", "backslashreplace")
    elif not isinstance(value, str):
        return type(value).__name__
    shown = ascii(value[:_SHOW_MAX]).replace(",", "\\x2c")
    return shown + "..." if len(value) > _SHOW_MAX else shown


class Codec(NamedTuple):
    decode: object   # decode(raw: bytes, name) -> value
    encode: object   # encode(value, name) -> str


# -- numbers ---------------------------------------------------------------

def decode_uint(raw, name, most=UINT_MAX):
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
            raise ProtocolError(f"{name} is above {most}: {show(raw)}")
    raise ProtocolError(f"{name} is not a non-negative integer: {show(raw)}")


def _encode_int(value, name):
    # operator.index() takes ints and numpy integers but not floats or str.
    try:
        return str(operator.index(value))
    except TypeError:
        raise ProtocolError(f"{name} must be an integer; got {show(value)}") from None


def _encode_uint(value, name, most=UINT_MAX):
    n = _encode_int(value, name)
    if n[0] == "-":
        raise ProtocolError(f"{name} must be non-negative; got {n}")
    if int(n) > most:
        raise ProtocolError(f"{name} must be at most {most}; got {n}")
    return n


def decode_ns(raw, name):
    return decode_uint(raw, name, NS_MAX)


def _encode_ns(value, name):
    return _encode_uint(value, name, NS_MAX)


def _decode_int(raw, name):
    digits = raw[1:] if raw[:1] == b"-" else raw
    if digits.isdigit():
        try:
            return int(raw)
        except ValueError:
            pass
    raise ProtocolError(f"{name} is not an integer: {show(raw)}")


def decode_price(raw, name):
    # A plain decimal: -?digits(.digits)?  Checked by hand because float()
    # would also take 'nan', '1e5', '1_0', '+1' and surrounding spaces.
    whole, dot, frac = (raw[1:] if raw[:1] == b"-" else raw).partition(b".")
    if whole.isdigit() and (frac.isdigit() or not dot):
        value = float(raw)
        if math.isfinite(value):    # 400 digits overflow to inf
            return value
        raise ProtocolError(f"{name} out of range: {show(raw)}")
    raise ProtocolError(f"{name} is not a plain decimal: {show(raw)}")


def _encode_price(value, name):
    if isinstance(value, (str, bytes, bytearray)):
        raise ProtocolError(f"{name} must be a number; got {show(value)}")
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ProtocolError(f"{name} must be a number; got {show(value)}") from None
    if not math.isfinite(value):
        raise ProtocolError(f"{name} must be finite; got {value}")
    return f"{value:.2f}"


def _decode_sentiment(raw, name):
    value = decode_uint(raw, name)
    if value > 100:
        raise ProtocolError(f"{name} must be 0..100; got {value}")
    return value


def _encode_sentiment(value, name):
    text = _encode_int(value, name)
    if not 0 <= int(text) <= 100:
        raise ProtocolError(f"{name} must be 0..100; got {text}")
    return text


UINT = Codec(decode_uint, _encode_uint)
NS = Codec(decode_ns, _encode_ns)
INT = Codec(_decode_int, _encode_int)
PRICE = Codec(decode_price, _encode_price)
SENTIMENT = Codec(_decode_sentiment, _encode_sentiment)


# -- words -------------------------------------------------------------------

def _word(pattern: str, rule: str) -> Codec:
    """A field of a few characters that must match `pattern` whole (said in words by `rule`)."""
    text_re, bytes_re = re.compile(pattern), re.compile(pattern.encode())

    def decode(raw, name):
        if not bytes_re.fullmatch(raw):
            raise ProtocolError(f"{name} {rule}; got {show(raw)}")
        return raw.decode("ascii")

    def encode(value, name):
        if not (isinstance(value, str) and text_re.fullmatch(value)):
            raise ProtocolError(f"{name} {rule}; got {show(value)}")
        return value

    return Codec(decode, encode)


TOKEN = _word(r"[A-Za-z0-9_-]{1,32}", "must be 1-32 of A-Z a-z 0-9 _ -")      # an order_id
SESSION = _word(r"[A-Za-z0-9_-]{1,16}", "must be 1-16 of A-Z a-z 0-9 _ -")    # the book stores 16 bytes

# The one symbol rule of the lab: at most 8 characters, since the book's symbol field is 8 bytes.
SYMBOL_RE = re.compile(r"[A-Z][A-Z0-9.]{0,7}")
SYMBOL_RULE = "must be A-Z then up to 7 of A-Z 0-9 ."
SYMBOL = _word(SYMBOL_RE.pattern, SYMBOL_RULE)


def is_symbol(value) -> bool:
    """Does `value` follow the symbol rule (SYMBOL_RE, said in words by SYMBOL_RULE)?"""
    return isinstance(value, str) and SYMBOL_RE.fullmatch(value) is not None


# A Decoder remembers the symbols it has checked (a dict hit is cheaper than a regex match,
# and hands out one shared str per symbol), at most this many, so that a peer inventing
# symbols cannot grow it for ever.
SYMBOLS_MAX = 4096


def symbol_codec(met: dict | None = None) -> Codec:
    """The symbol's codec; with `met` (raw bytes -> str), one that remembers what it checked."""
    if met is None:
        return SYMBOL
    check = SYMBOL.decode

    def decode(raw, name):
        symbol = met.get(raw)
        if symbol is None:
            symbol = check(raw, name)
            if len(met) < SYMBOLS_MAX:
                met[raw] = symbol
        return symbol

    return Codec(decode, SYMBOL.encode)


def _choice(*allowed) -> Codec:
    """A field that is one of a few fixed words (a feed's name, an order's side)."""
    by_bytes = {word.encode("ascii"): word for word in allowed}
    words = " or ".join(allowed)

    def decode(raw, name):
        try:
            return by_bytes[raw]
        except KeyError:
            raise ProtocolError(f"{name} must be {words}; got {show(raw)}") from None

    def encode(value, name):
        if isinstance(value, str) and value in allowed:
            return value
        raise ProtocolError(f"{name} must be {words}; got {show(value)}")

    return Codec(decode, encode)


FEED = _choice("PRICE", "NEWS")
SIDE = _choice("BUY", "SELL")


def _decode_reason(raw, name):
    if not raw:
        raise ProtocolError(f"{name} is empty")
    text = raw.decode("ascii")     # the whole line was checked for ASCII
    if not text.isprintable():
        raise ProtocolError(f"{name} is not printable ASCII: {show(raw)}")
    return text


def _encode_reason(value, name):
    if not isinstance(value, str):
        raise ProtocolError(f"{name} must be a str; got {show(value)}")
    if not value:
        raise ProtocolError(f"{name} is empty")
    if "," in value:
        raise ProtocolError(f"{name} contains a comma: {show(value)}")
    if not (value.isascii() and value.isprintable()):
        raise ProtocolError(f"{name} is not printable ASCII: {show(value)}")
    return value


REASON = Codec(_decode_reason, _encode_reason)
