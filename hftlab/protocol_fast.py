"""The protocol's fast paths: PRICE lines decoded faster, with the same checks and the same results.

`hftlab.protocol` is the protocol; this module only makes its hottest case cheaper and
`protocol` installs it when it is imported, so ``from hftlab import protocol`` is all anyone
needs. Read it after the rest, if at all. Two paths, both sans-IO (bytes in, values out):

- `_parse_price` replaces the generic PRICE parser of one line (``decode``, and the
  line-by-line path of ``Decoder.feed``): the generic parser inlined.
- `price_columns` decodes a run of complete PRICE lines column by column, so that the loops run
  in C: one regex checks the syntax of every line at once, one split cuts every field, and
  a column is converted at a time (the integers by NumPy's text parser, the prices as
  integers of cents when they all have the gateway's two decimals, else by
  ``map(float, ...)``). ``Decoder.feed_columns`` hands
  such a chunk over as a `protocol.PriceColumns`, which the orderbook writes to the book without
  making a `Price` per tick. It is conservative: anything it does not take (another message, a
  bad field, a ``\\r``, a symbol not met before, an over-long digit string) makes it return None
  and the line-by-line path decodes the chunk and reports each error where it belongs.
"""

import re

import numpy as np

from hftlab.protocol import (NS_MAX, UINT_MAX, Price, PriceColumns, ProtocolError, _dec_ns, _dec_price,
                             _dec_symbol, _dec_uint, _parsers, _symbols)

__all__ = ["COLUMNS_MAX_LINE", "COLUMNS_MIN_BYTES", "price_columns"]

_parse_price_slowly = _parsers[b"PRICE"]
_new_tuple = tuple.__new__      # skips Price.__new__'s Python-level frame


def _parse_price(parts):
    # The hot path of one line: the generic parser inlined, same checks, same errors.
    # Measured with timeit on CPython 3.11: decode() of the example PRICE line takes about
    # 0.9 us this way and 1.3 us through the generic parser.
    if len(parts) != 5:
        raise ProtocolError(f"PRICE needs 5 fields; got {len(parts)}")
    _, seq, ts_ns, symbol, price = parts
    try:
        msg = _new_tuple(Price, (
            int(seq) if seq.isdigit() else _dec_uint(seq, "seq"),
            int(ts_ns) if ts_ns.isdigit() else _dec_ns(ts_ns, "ts_ns"),
            _symbols.get(symbol) or _dec_symbol(symbol, "symbol"),
            _dec_price(price, "price")))
    except ProtocolError:
        raise
    except ValueError:
        # int() refuses thousands of digits (sys.set_int_max_str_digits);
        # only possible with a huge max_line.  The careful path says so.
        return _parse_price_slowly(parts)
    if msg[0] > UINT_MAX or msg[1] > NS_MAX:
        return _parse_price_slowly(parts)     # which says which is too big
    return msg


_parsers[b"PRICE"] = _parse_price


# Every line of a chunk, at once: PRICE, seq, ts_ns, a symbol, a plain decimal, b"\n". (No
# possessive quantifiers, though they never backtrack and made this regex about 1.5x as fast:
# Python 3.10 has none, and 3.11.2's took "PRICE,3,1,AAPL,1.\n", a price the protocol refuses;
# the literal "," and "\n" keep backtracking to a few steps a line.) Digit strings are
# bounded so that no line it takes is longer than COLUMNS_MAX_LINE, no seq or ts_ns overflows
# a uint64 (19 digits are below 10**19) and no price overflows a float (below 10**300); a
# longer one (a 20-digit seq, a seq with leading zeros) is valid but left to the line-by-line
# path, which gives the same answer.
_LINES_RE = re.compile(rb"(?:PRICE,[0-9]{1,19},[0-9]{1,19},[A-Z][A-Z0-9.]{0,7},"
                       rb"-?[0-9]{1,300}(?:\.[0-9]{1,300})?\n)*")
COLUMNS_MAX_LINE = len(b"PRICE,,,,.") + 19 + 19 + 8 + 300 + 300 + 1    # the + 1: a "-"


# The same lines when every price has the gateway's form, digits, a point and two decimals
# (what encode() writes for a price that is not negative): then the price column converts
# exactly as integers of cents (see _cents).
_CENTS_LINES_RE = re.compile(rb"(?:PRICE,[0-9]{1,19},[0-9]{1,19},[A-Z][A-Z0-9.]{0,7},"
                             rb"[0-9]{1,13}\.[0-9][0-9]\n)*")


# Decoder.feed_columns decodes fewer bytes than this line by line: the column-wise decoder costs
# about 10 us a chunk whatever its size (a regex, a split, three NumPy calls), so it is slower
# for a few lines (timeit, CPython 3.11: 4 lines 15 us against 12, 16 lines 12 against 23,
# 64 lines 32 against 92). A paced feed's chunk of one tick per symbol stays line by line.
COLUMNS_MIN_BYTES = 512


def _uints(column: list) -> list:
    # Digit strings of at most 19 digits (the regex checked them) as Python ints. NumPy's text
    # parser (strtoul, exact for integers) takes about 35 ns a number where map(int, ...) takes
    # 70-80; tolist() gives Python ints back.
    return np.fromstring(b",".join(column), np.uint64, sep=",").tolist()


def _cents(column: list) -> list:
    # Prices of the form digits.dd (at most 15 digits) as floats, equal bit for bit to float()
    # of each: the digits without the point are an integer number of cents N below 2**53, so
    # exact as a float64, and IEEE division is correctly rounded, so N / 100 is the float
    # nearest to N/100, which is what float() returns for the text (CPython's float() is
    # correctly rounded too). About 60 ns a price where map(float, ...) takes 170.
    return (np.fromstring(b",".join(column).replace(b".", b""), np.int64, sep=",") / 100).tolist()


def price_columns(body: bytes) -> PriceColumns | None:
    """Decode `body`, complete PRICE lines each ending in b"\\n", as one `PriceColumns`.

    Returns None unless every line is a valid PRICE line that is no longer than
    COLUMNS_MAX_LINE, whose seq and ts_ns have at most 19 digits and whose symbol was decoded
    before (the symbol cache: the first line of a new symbol goes through the careful path);
    then `Decoder.feed` decodes the lines one by one, which gives the same messages and says
    what is wrong with a bad one. When it returns columns, they hold exactly what decoding each
    line gives (tests/test_protocol.py checks it).
    """
    cents = _CENTS_LINES_RE.fullmatch(body) is not None
    if not cents and not _LINES_RE.fullmatch(body):
        return None
    if not body:
        return PriceColumns([], [], [], [])
    # b"\n" ends every line, so after the replace every field, the first of each line
    # included, ends in b","; the split's last item is the empty rest after the last one.
    fields = body.replace(b"\n", b",").split(b",")
    symbols = list(map(_symbols.get, fields[3::5]))
    if None in symbols:
        return None
    stamps = _uints(fields[2::5])
    if max(stamps) > NS_MAX:
        return None
    prices = _cents(fields[4::5]) if cents else list(map(float, fields[4::5]))
    return PriceColumns(_uints(fields[1::5]), stamps, symbols, prices)


# A NumPy decoder of whole chunks (every field checked and converted as arrays) was tried
# against the column-wise decoder of PRICE lines: with the same output, it took 1.0x its time a
# line for 64 KiB chunks, 1.1x for 32 KiB and 1.3-1.4x for 16 KiB (median of 200 runs, CPython
# 3.11, 2 shared vCPUs), its fixed cost of a few dozen arrays eating what it saves. Not used,
# then; it is in the history (git log -S _parse_prices_numpy) to measure again.
