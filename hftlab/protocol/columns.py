"""The protocol's fast paths: PRICE lines decoded faster, with the same checks and the same results.

`hftlab.protocol` is the protocol; this module only makes its hottest case cheaper, and its
Decoder uses it. Read it after the rest, if at all. Two paths, both sans-IO (bytes in, values
out), both taking only the fields' rules (`hftlab.protocol.fields`):

- `price_parser` decodes one PRICE line's fields: the generic parser inlined.
- `price_columns` decodes a run of complete PRICE lines column by column, so that the loops run
  in C: one regex checks the syntax of every line at once, one split cuts every field, and a
  column is converted at a time (the integers by NumPy's text parser, the prices as integers
  of cents when they all have the gateway's two decimals, else by ``map(float, ...)``).
  ``Decoder.feed_columns`` hands such a chunk over as a `PriceColumns`, which the orderbook
  writes to the book without making a `Price` per tick. It is conservative: anything it does
  not take (another message, a bad field, a ``\\r``, a symbol not met before, an over-long digit
  string) makes it return None, and the line-by-line path decodes the chunk and reports each
  error where it belongs.

What each choice here was measured to be worth: docs/performance.md, "The fast PRICE paths".
"""

from __future__ import annotations

import re

import numpy as np

from hftlab.protocol.fields import NS_MAX, UINT_MAX, ProtocolError, decode_ns, decode_price, decode_uint

__all__ = ["COLUMNS_MAX_LINE", "COLUMNS_MIN_BYTES", "price_parser", "price_columns"]


def price_parser(make, met: dict, symbol, careful):
    """parse(parts) for one PRICE line's fields (``parts[0]`` is b"PRICE"): the message that
    `careful(parts)`, the generic parser, gives, the same errors, faster. `make(values)` builds
    the message; `met` holds the symbols the decoder has checked, and `symbol(raw, name)` checks
    (and remembers) a new one."""
    def parse(parts):
        if len(parts) != 5:
            raise ProtocolError(f"PRICE needs 5 fields; got {len(parts)}")
        _, seq, ts_ns, raw_symbol, price = parts
        try:
            values = (int(seq) if seq.isdigit() else decode_uint(seq, "seq"),
                      int(ts_ns) if ts_ns.isdigit() else decode_ns(ts_ns, "ts_ns"),
                      met.get(raw_symbol) or symbol(raw_symbol, "symbol"), decode_price(price, "price"))
        except ProtocolError:
            raise
        except ValueError:
            # int() refuses thousands of digits (sys.set_int_max_str_digits); only possible
            # with a huge max_line. The careful path says so.
            return careful(parts)
        if values[0] > UINT_MAX or values[1] > NS_MAX:
            return careful(parts)     # which says which is too big
        return make(values)
    return parse


# Every line of a chunk, at once: PRICE, seq, ts_ns, a symbol, a plain decimal, b"\n". Digit
# strings are bounded so that no line it takes is longer than COLUMNS_MAX_LINE, no seq or ts_ns
# overflows a uint64 (19 digits are below 10**19) and no price overflows a float (below
# 10**300); a longer one (a 20-digit seq, a seq with leading zeros) is valid but left to the
# line-by-line path, which gives the same answer. (No possessive quantifiers: Python 3.10 has
# none; docs/performance.md says what they were worth.)
_LINES_RE = re.compile(rb"(?:PRICE,[0-9]{1,19},[0-9]{1,19},[A-Z][A-Z0-9.]{0,7},"
                       rb"-?[0-9]{1,300}(?:\.[0-9]{1,300})?\n)*")
COLUMNS_MAX_LINE = len(b"PRICE,,,,.") + 19 + 19 + 8 + 300 + 300 + 1    # the + 1: a "-"

# The same lines when every price has the gateway's form, digits, a point and two decimals
# (what encode() writes for a price that is not negative): then the price column converts
# exactly as integers of cents (see _cents).
_CENTS_LINES_RE = re.compile(rb"(?:PRICE,[0-9]{1,19},[0-9]{1,19},[A-Z][A-Z0-9.]{0,7},"
                             rb"[0-9]{1,13}\.[0-9][0-9]\n)*")

# Decoder.feed_columns decodes fewer bytes than this line by line: the column-wise decoder costs
# about 10 us a chunk whatever its size, so it is slower for a few lines. A paced feed's chunk
# of one tick per symbol stays line by line.
COLUMNS_MIN_BYTES = 512


def _uints(column: list) -> list:
    # Digit strings of at most 19 digits (the regex checked them) as Python ints, by NumPy's
    # text parser (strtoul, exact for integers); tolist() gives Python ints back.
    return np.fromstring(b",".join(column), np.uint64, sep=",").tolist()


def _cents(column: list) -> list:
    # Prices of the form digits.dd (at most 15 digits) as floats, equal bit for bit to float()
    # of each: the digits without the point are an integer number of cents N below 2**53, so
    # exact as a float64, and IEEE division is correctly rounded, so N / 100 is the float
    # nearest to N/100, which is what float() returns for the text (CPython's float() is
    # correctly rounded too).
    return (np.fromstring(b",".join(column).replace(b".", b""), np.int64, sep=",") / 100).tolist()


def price_columns(body: bytes, symbols: dict) -> tuple | None:
    """Decode `body`, complete PRICE lines each ending in b"\\n", as four columns (seqs, ts_ns,
    symbols, prices), one item a line.

    Returns None unless every line is a valid PRICE line that is no longer than
    COLUMNS_MAX_LINE, whose seq and ts_ns have at most 19 digits and whose symbol is in
    `symbols` (raw bytes -> str: the symbols a Decoder has met and checked; the first line of a
    new symbol goes through the careful path); then the lines are decoded one by one, which
    gives the same messages and says what is wrong with a bad one. When it returns columns,
    they hold exactly what decoding each line gives (tests/test_protocol.py checks it).
    """
    cents = _CENTS_LINES_RE.fullmatch(body) is not None
    if not cents and not _LINES_RE.fullmatch(body):
        return None
    if not body:
        return [], [], [], []
    # b"\n" ends every line, so after the replace every field, the first of each line
    # included, ends in b","; the split's last item is the empty rest after the last one.
    fields = body.replace(b"\n", b",").split(b",")
    names = list(map(symbols.get, fields[3::5]))
    if None in names:
        return None
    stamps = _uints(fields[2::5])
    if max(stamps) > NS_MAX:
        return None
    prices = _cents(fields[4::5]) if cents else list(map(float, fields[4::5]))
    return _uints(fields[1::5]), stamps, names, prices
