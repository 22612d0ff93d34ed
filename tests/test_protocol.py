"""Tests for hftlab.protocol: the wire format, framing and error reasons."""

import math
import re
import secrets
import struct

import pytest
from hypothesis import given, settings, strategies as st

from hftlab.protocol import (
    MAX_LINE, MESSAGE_TYPES, Ack, Decoder, Error, Fill, Heartbeat, Hello,
    LineFramer, News, Order, Position, PositionQuery, Price, PriceColumns, ProtocolError,
    Reject, clean_reason, decode, encode, wire_type,
)
from hftlab.protocol.columns import COLUMNS_MAX_LINE, COLUMNS_MIN_BYTES, price_columns

TS = 1764087000123456789

# One of each message type, with the bytes encode() must produce.
KNOWN = [
    (Hello("PRICE", "gw-20251125_a"), b"HELLO,PRICE,gw-20251125_a\n"),
    (Hello("NEWS", "s1"), b"HELLO,NEWS,s1\n"),
    (Price(17, TS, "AAPL", 172.53),
     b"PRICE,17,1764087000123456789,AAPL,172.53\n"),
    (Price(0, 0, "BRK.B", 0.5), b"PRICE,0,0,BRK.B,0.50\n"),
    (News(3, TS, 100), b"NEWS,3,1764087000123456789,100\n"),
    (Heartbeat(17, TS), b"HB,17,1764087000123456789\n"),
    (Order("a1", TS, "BUY", 10, "AAPL", 172.53),
     b"ORDER,a1,1764087000123456789,BUY,10,AAPL,172.53\n"),
    (Order("x_-9", TS, "SELL", -5, "MSFT", -1.0),
     b"ORDER,x_-9,1764087000123456789,SELL,-5,MSFT,-1.00\n"),
    (Ack("a1", 1), b"ACK,a1,1\n"),
    (Fill("a1", 1, "BUY", 10, "AAPL", 172.55, 0.17, 812), b"FILL,a1,1,BUY,10,AAPL,172.55,0.17,812\n"),
    (Reject("a1", "qty must be positive; got 0"),
     b"REJECT,a1,qty must be positive; got 0\n"),
    (Error("unknown message type"), b"ERROR,unknown message type\n"),
    (PositionQuery("strategy", "AAPL"), b"POSQUERY,strategy,AAPL\n"),
    (Position("strategy", "AAPL", -10), b"POSITION,strategy,AAPL,-10\n"),
]


def norm(items):
    """Make feed() results comparable: errors compare by reason."""
    return [("error", x.reason) if isinstance(x, ProtocolError) else x
            for x in items]


# -- messages and round trips ----------------------------------------------

def test_message_types_table():
    assert list(MESSAGE_TYPES) == [
        "HELLO", "PRICE", "NEWS", "HB", "ORDER", "ACK", "FILL", "REJECT", "ERROR",
        "POSQUERY", "POSITION"]
    assert MESSAGE_TYPES["HB"] is Heartbeat
    for name, cls in MESSAGE_TYPES.items():
        sample = next(m for m, _ in KNOWN if type(m) is cls)
        assert wire_type(sample) == name


@pytest.mark.parametrize("msg,line", KNOWN)
def test_known_bytes(msg, line):
    assert encode(msg) == line
    assert decode(line[:-1]) == msg


@pytest.mark.parametrize("msg,line", KNOWN)
def test_round_trip(msg, line):
    back = decode(encode(msg).rstrip(b"\n"))
    assert back == msg and type(back) is type(msg)


def test_decoded_types():
    p = decode(b"PRICE,17,1764087000123456789,AAPL,172.53")
    assert [type(v) for v in p] == [int, int, str, float]
    o = decode(b"ORDER,a1,1,SELL,-5,AAPL,172")
    assert o.qty == -5 and o.price == 172.0 and type(o.price) is float
    assert decode(b"ORDER,a1,1,BUY,0,AAPL,1.5").qty == 0


def test_price_encoded_with_two_decimals():
    assert encode(Price(1, 2, "A", 172.5)) == b"PRICE,1,2,A,172.50\n"
    assert encode(Price(1, 2, "A", 7)) == b"PRICE,1,2,A,7.00\n"
    assert encode(Price(1, 2, "A", 0.125)) == b"PRICE,1,2,A,0.12\n"


def test_carriage_return_is_stripped():
    assert decode(b"HB,1,2\r") == Heartbeat(1, 2)
    with pytest.raises(ProtocolError):      # only one is tolerated
        decode(b"HB,1,2\r\r")


def test_numpy_scalars_encode():
    np = pytest.importorskip("numpy")
    msg = Price(np.int64(5), np.uint64(TS), "AAPL", np.float64(1.25))
    assert encode(msg) == b"PRICE,5,1764087000123456789,AAPL,1.25\n"


# -- decode errors ---------------------------------------------------------

BAD_LINES = [
    (b"", "empty line"),
    (b"\r", "empty line"),
    (b"PRICE,1,2,AAPL,1.00\xff", "line is not ASCII"),
    (b"NEWS,1,2,\xc3\xa9", "line is not ASCII"),
    (b"HB,1," + b"1" * MAX_LINE, "line longer than 1024 bytes"),
    (b"PRICE,1,2", "PRICE needs 5 fields; got 3"),
    (b"PRICE,1,2,AAPL,1.00,x", "PRICE needs 5 fields; got 6"),
    (b"HB", "HB needs 3 fields; got 1"),
    (b"ORDER,a1,1,BUY,10,AAPL", "ORDER needs 7 fields; got 6"),
    (b"ERROR,a,b", "ERROR needs 2 fields; got 3"),
    (b"FOO,1", "unknown message type 'FOO'"),
    (b"price,1,2,AAPL,1.00", "unknown message type 'price'"),
    (b",", "unknown message type ''"),
    (b"PRICE,x1,2,AAPL,1.00", "seq is not a non-negative integer: 'x1'"),
    (b"PRICE,-1,2,AAPL,1.00", "seq is not a non-negative integer: '-1'"),
    (b"PRICE,1, 2,AAPL,1.00", "ts_ns is not a non-negative integer: ' 2'"),
    (b"PRICE,1,1_0,AAPL,1.00", "ts_ns is not a non-negative integer: '1_0'"),
    (b"PRICE,1,,AAPL,1.00", "ts_ns is not a non-negative integer: ''"),
    (b"HB,+1,2", "last_seq is not a non-negative integer: '+1'"),
    (b"ACK,a1,1.0", "order_no is not a non-negative integer: '1.0'"),
    (b"ORDER,a1,1,BUY,1.5,AAPL,1", "qty is not an integer: '1.5'"),
    (b"ORDER,a1,1,BUY,-,AAPL,1", "qty is not an integer: '-'"),
    (b"ORDER,a1,1,BUY,+5,AAPL,1", "qty is not an integer: '+5'"),
    (b"NEWS,1,2,101", "sentiment must be 0..100; got 101"),
    (b"NEWS,1,2,-1", "sentiment is not a non-negative integer: '-1'"),
    (b"ORDER,a1,1,HOLD,10,AAPL,1.00", "side must be BUY or SELL; got 'HOLD'"),
    (b"ORDER,a1,1,buy,10,AAPL,1.00", "side must be BUY or SELL; got 'buy'"),
    (b"HELLO,FOO,s1", "feed must be PRICE or NEWS; got 'FOO'"),
    (b"HELLO,PRICE,", "session must be 1-16 of A-Z a-z 0-9 _ -; got ''"),
    (b"HELLO,PRICE,a b", "session must be 1-16 of A-Z a-z 0-9 _ -; got 'a b'"),
    (b"ACK," + b"a" * 33 + b",1",
     "order_id must be 1-32 of A-Z a-z 0-9 _ -; got '%s'" % ("a" * 33)),
    (b"ERROR,", "reason is empty"),
    (b"REJECT,a1,tab\there", "reason is not printable ASCII: 'tab\\there'"),
    (b"ERROR,cr\rhere", "reason is not printable ASCII: 'cr\\rhere'"),
    (b"POSQUERY,strategy", "POSQUERY needs 3 fields; got 2"),
    (b"POSQUERY,a b,AAPL", "strategy must be 1-32 of A-Z a-z 0-9 _ -; got 'a b'"),
    (b"POSITION,s,AAPL,1.5", "qty is not an integer: '1.5'"),
]

BAD_SYMBOLS = [
    (b"aapl", "'aapl'"), (b"1AB", "'1AB'"), (b"ABCDEFGHI", "'ABCDEFGHI'"),
    (b"", "''"), (b".A", "'.A'"), (b"A-B", "'A-B'"),
]
BAD_SYMBOL_REASON = "symbol must be A-Z then up to 7 of A-Z 0-9 .; got "

BAD_PRICES = [b"nan", b"NaN", b"inf", b"-inf", b"1e5", b"1E5", b"1_0", b"+1",
              b"", b"1.", b".5", b"-", b"--1", b" 1", b"1 ", b"0x10", b"1.2.3",
              b"-.5", b"\xd9\xa1"]


@pytest.mark.parametrize("line,reason", BAD_LINES)
def test_decode_error_reasons(line, reason):
    with pytest.raises(ProtocolError) as info:
        decode(line)
    assert info.value.reason == reason == str(info.value)


@pytest.mark.parametrize("symbol,shown", BAD_SYMBOLS)
def test_bad_symbols(symbol, shown):
    for line in (b"PRICE,1,2,%s,1.00" % symbol,
                 b"ORDER,a1,1,BUY,1,%s,1.00" % symbol):
        with pytest.raises(ProtocolError) as info:
            decode(line)
        assert info.value.reason == BAD_SYMBOL_REASON + shown


def test_good_symbols():
    for symbol in ["A", "AAPL", "BRK.B", "ABCDEFGH", "X1", "A."]:
        assert decode(b"PRICE,1,2,%s,1" % symbol.encode()).symbol == symbol


@pytest.mark.parametrize("price", BAD_PRICES)
def test_bad_prices(price):
    for line in (b"PRICE,1,2,AAPL," + price,
                 b"ORDER,a1,1,BUY,1,AAPL," + price):
        with pytest.raises(ProtocolError) as info:
            decode(line)
        if price.isascii():
            assert info.value.reason == (
                f"price is not a plain decimal: {price.decode()!r}")
        else:
            assert info.value.reason == "line is not ASCII"


def test_good_prices():
    for text, value in [(b"0", 0.0), (b"-0", 0.0), (b"007.50", 7.5),
                        (b"-1.5", -1.5), (b"172.53", 172.53),
                        (b"1.123456", 1.123456)]:
        assert decode(b"PRICE,1,2,A," + text).price == value


def test_huge_price_is_refused():
    with pytest.raises(ProtocolError, match="price out of range"):
        decode(b"PRICE,1,2,A," + b"9" * 400)


def test_long_bad_field_is_quoted_short():
    with pytest.raises(ProtocolError) as info:
        decode(b"HB," + b"x" * 900 + b",1")
    assert len(info.value.reason) < 100
    assert info.value.reason.endswith("...")


def test_protocol_error_is_value_error_with_clean_reason():
    exc = ProtocolError("bad, very\nbad")
    assert isinstance(exc, ValueError)
    assert exc.reason == str(exc) == "bad; very?bad"


# -- encode errors ---------------------------------------------------------

BAD_MESSAGES = [
    (Reject("a1", "bad, very"), "reason contains a comma: 'bad\\x2c very'"),
    (Error("a,b"), "reason contains a comma: 'a\\x2cb'"),
    (Error("two\nlines"), "reason is not printable ASCII: 'two\\nlines'"),
    (Error("caf\xe9"), "reason is not printable ASCII: 'caf\\xe9'"),
    (Error(""), "reason is empty"),
    (Error(None), "reason must be a str; got NoneType"),
    (Price(1, 2, "A,B", 1.0),
     "symbol must be A-Z then up to 7 of A-Z 0-9 .; got 'A\\x2cB'"),
    (Price(1, 2, "A\n", 1.0),
     "symbol must be A-Z then up to 7 of A-Z 0-9 .; got 'A\\n'"),
    (Price(1, 2, "aapl", 1.0),
     "symbol must be A-Z then up to 7 of A-Z 0-9 .; got 'aapl'"),
    (Hello("PRICE", "s\n1"),
     "session must be 1-16 of A-Z a-z 0-9 _ -; got 's\\n1'"),
    (Hello("TRADES", "s1"), "feed must be PRICE or NEWS; got 'TRADES'"),
    (Order("a,1", 1, "BUY", 1, "A", 1.0),
     "order_id must be 1-32 of A-Z a-z 0-9 _ -; got 'a\\x2c1'"),
    (Order("a1", 1, "HOLD", 1, "A", 1.0),
     "side must be BUY or SELL; got 'HOLD'"),
    (Order("a1", 1, "BUY", 1.5, "A", 1.0),
     "qty must be an integer; got float"),
    (Price(-1, 2, "A", 1.0), "seq must be non-negative; got -1"),
    (Price("1", 2, "A", 1.0), "seq must be an integer; got '1'"),
    (Price(1, 2, "A", math.nan), "price must be finite; got nan"),
    (Price(1, 2, "A", math.inf), "price must be finite; got inf"),
    (Price(1, 2, "A", "1.00"), "price must be a number; got '1.00'"),
    (News(1, 2, 101), "sentiment must be 0..100; got 101"),
    (News(1, 2, -1), "sentiment must be 0..100; got -1"),
    (Error("x" * 1100), "line longer than 1024 bytes"),
]


@pytest.mark.parametrize("msg,reason", BAD_MESSAGES)
def test_encode_refuses(msg, reason):
    with pytest.raises(ProtocolError) as info:
        encode(msg)
    assert info.value.reason == reason


def test_encode_refuses_non_messages():
    with pytest.raises(TypeError):
        encode(("PRICE", 1, 2, "A", 1.0))
    with pytest.raises(TypeError):
        wire_type("HB")


# -- clean_reason ----------------------------------------------------------

@pytest.mark.parametrize("text,reason", [
    ("fine", "fine"),
    ("a,b,c", "a;b;c"),
    ("", "unspecified"),
    ("tab\there\nnewline\r", "tab?here?newline?"),
    ("caf\xe9 \u20ac", "caf? ?"),
    ("x" * 500, "x" * 200),
    (ValueError("qty must be > 0, got -5"), "qty must be > 0; got -5"),
])
def test_clean_reason(text, reason):
    assert clean_reason(text) == reason
    assert encode(Error(clean_reason(text)))


# -- framing ---------------------------------------------------------------

STREAM = b"".join(encode(m) for m, _ in KNOWN) + (
    b"HB,99,1\r\n"                  # telnet line ending
    b"FOO,1\n"                      # a bad line between good ones
    b"\n"                           # an empty line
    + b"NEWS,1,2," + b"9" * 2000 + b"\n"   # too long
    + b"PRICE,18,1764087000123456790,MSFT,410.00\n")

EXPECTED = norm(
    [m for m, _ in KNOWN] + [
        Heartbeat(99, 1),
        ProtocolError("unknown message type 'FOO'"),
        ProtocolError("empty line"),
        ProtocolError("line longer than 1024 bytes"),
        Price(18, 1764087000123456790, "MSFT", 410.0),
    ])


def test_stream_all_at_once():
    assert norm(Decoder().feed(STREAM)) == EXPECTED


def test_stream_one_byte_at_a_time():
    dec = Decoder()
    out = []
    for i in range(len(STREAM)):
        out += dec.feed(STREAM[i:i + 1])
        assert dec.buffered <= MAX_LINE + 1
    assert norm(out) == EXPECTED


def test_stream_split_at_every_position():
    for cut in range(len(STREAM) + 1):
        dec = Decoder()
        out = dec.feed(STREAM[:cut]) + dec.feed(STREAM[cut:])
        assert norm(out) == EXPECTED, cut
        assert dec.buffered == 0


def test_framer_split_at_every_position():
    lines = LineFramer().feed(STREAM)
    for cut in range(len(STREAM) + 1):
        framer = LineFramer()
        assert norm(framer.feed(STREAM[:cut]) + framer.feed(STREAM[cut:])) \
            == norm(lines)


def test_merged_and_partial_messages():
    dec = Decoder()
    assert dec.feed(b"HB,1,2\nHB,2,3\nHB,3") == [Heartbeat(1, 2),
                                                  Heartbeat(2, 3)]
    assert dec.buffered == len(b"HB,3")
    assert dec.feed(b",4\n") == [Heartbeat(3, 4)]
    assert dec.feed(b"") == []
    assert dec.buffered == 0


def test_framer_lines():
    framer = LineFramer()
    assert framer.feed(b"a\r\nb\nc\r") == [b"a", b"b"]
    assert framer.buffered == 2
    assert framer.feed(b"\n\n") == [b"c", b""]


def test_too_long_line_reported_early_and_discarded():
    framer = LineFramer(max_line=16)
    assert framer.feed(b"x" * 16) == []
    assert framer.buffered == 16
    out = framer.feed(b"yy")         # 18 bytes, no newline yet
    assert norm(out) == [("error", "line longer than 16 bytes")]
    assert framer.buffered == 0
    assert framer.feed(b"z" * 5000) == []   # still the same line: dropped
    assert framer.buffered == 0
    assert framer.feed(b"zz\nHB,1,2\n") == [b"HB,1,2"]


def test_too_long_line_one_error_whatever_the_chunking():
    line = b"HB,1," + b"1" * 3000 + b"\n"
    good = b"HB,5,6\n"
    for chunk in (1, 7, 1000, 1025, 1026, 4000):
        data = good + line + good
        dec = Decoder()
        out = []
        for i in range(0, len(data), chunk):
            out += dec.feed(data[i:i + chunk])
            assert dec.buffered <= MAX_LINE + 1
        assert norm(out) == [Heartbeat(5, 6),
                             ("error", "line longer than 1024 bytes"),
                             Heartbeat(5, 6)], chunk


def test_line_length_limit_is_exact():
    body = b"ERROR," + b"r" * (MAX_LINE - 6)
    assert len(body) == MAX_LINE
    assert decode(body) == Error("r" * (MAX_LINE - 6))
    assert encode(decode(body)) == body + b"\n"
    for ending in (b"\n", b"\r\n"):
        dec = Decoder()     # the newline arrives after the limit is reached
        out = dec.feed(body + ending[:-1]) + dec.feed(ending[-1:])
        assert out == [Error("r" * (MAX_LINE - 6))]
    dec = Decoder()
    assert norm(dec.feed(body + b"r\n")) == [
        ("error", "line longer than 1024 bytes")]
    assert norm(dec.feed(body + b"\r\r\n")) == [
        ("error", "line longer than 1024 bytes")]


def test_huge_integers_with_a_huge_max_line():
    # int() refuses thousands of digits; that must still be a ProtocolError.
    digits = b"1" * 6000
    out = Decoder(max_line=20000).feed(b"PRICE,%s,1,A,1\nHB,%s,1\n" % (
        digits, digits))
    assert [type(x) for x in out] == [ProtocolError, ProtocolError]
    assert out[0].reason.startswith("seq is not a non-negative integer")


# The exact bytes at the edges of the integer ranges (docs/protocol.md).
U64 = b"18446744073709551615"       # 2**64 - 1, the largest uint
NS = b"9223372036854775807"         # 2**63 - 1, the largest ts_ns


def test_integer_ranges_exact_edges():
    assert decode(b"PRICE," + U64 + b"," + NS + b",A,1.00") == Price(2**64 - 1, 2**63 - 1, "A", 1.0)
    assert decode(b"HB," + U64 + b"," + NS) == Heartbeat(2**64 - 1, 2**63 - 1)
    assert decode(b"PRICE,000" + U64 + b",0,A,1") == Price(2**64 - 1, 0, "A", 1.0)  # leading zeros
    assert encode(Ack("a", 2**64 - 1)) == b"ACK,a," + U64 + b"\n"


OUT_OF_RANGE = [
    (b"PRICE,18446744073709551616,1,A,1.00", "seq is above 18446744073709551615: "),
    (b"PRICE,1,9223372036854775808,A,1.00", "ts_ns is above 9223372036854775807: "),
    (b"HB,18446744073709551616,1", "last_seq is above 18446744073709551615: "),
    (b"HB,1,99999999999999999999", "ts_ns is above 9223372036854775807: "),
    (b"NEWS,18446744073709551616,1,50", "seq is above 18446744073709551615: "),
    (b"ORDER,a1,9223372036854775808,BUY,1,A,1", "tick_ts_ns is above 9223372036854775807: "),
    (b"ACK,a1,18446744073709551616", "order_no is above 18446744073709551615: "),
    (b"HELLO,PRICE," + b"s" * 17, "session must be 1-16 of A-Z a-z 0-9 _ -; got "),
]


@pytest.mark.parametrize("line,reason", OUT_OF_RANGE)
def test_out_of_range_integers_and_long_sessions_are_errors(line, reason):
    with pytest.raises(ProtocolError, match="^" + re.escape(reason)):
        decode(line)
    # the same in a stream, alone and among PRICE lines (the batch fast path)
    good = b"PRICE,1,2,A,1.00\n"
    for stream in (line + b"\n", good + line + b"\n" + good):
        out = Decoder().feed(stream)
        errors = [x for x in out if isinstance(x, ProtocolError)]
        assert len(errors) == 1 and errors[0].reason.startswith(reason)
        assert len(out) == stream.count(b"\n")


@pytest.mark.parametrize("msg", [
    Price(2**64, 1, "A", 1.0), Price(1, 2**63, "A", 1.0), Heartbeat(2**64, 1),
    Hello("PRICE", "s" * 17), Ack("a", 2**64)])
def test_encode_refuses_what_decode_would(msg):
    with pytest.raises(ProtocolError):
        encode(msg)


def test_bytearray_and_memoryview_input():
    dec = Decoder()
    assert dec.feed(bytearray(b"HB,1,2\n")) == [Heartbeat(1, 2)]
    assert dec.feed(memoryview(b"HB,1,3\n")) == [Heartbeat(1, 3)]
    assert decode(bytearray(b"HB,1,4")) == Heartbeat(1, 4)


# -- properties ------------------------------------------------------------

uints = st.integers(0, 2**64 - 1)
stamps = st.integers(0, 2**63 - 1)
tokens = st.from_regex(r"[A-Za-z0-9_-]{1,32}", fullmatch=True)
sessions = st.from_regex(r"[A-Za-z0-9_-]{1,16}", fullmatch=True)
symbols = st.from_regex(r"[A-Z][A-Z0-9.]{0,7}", fullmatch=True)
prices = st.integers(-10**11, 10**11).map(lambda cents: cents / 100)
reasons = st.text("".join(chr(c) for c in range(32, 127) if chr(c) != ","),
                  min_size=1, max_size=200)

messages = st.one_of(
    st.builds(Hello, st.sampled_from(["PRICE", "NEWS"]), sessions),
    st.builds(Price, uints, stamps, symbols, prices),
    st.builds(News, uints, stamps, st.integers(0, 100)),
    st.builds(Heartbeat, uints, stamps),
    st.builds(Order, tokens, stamps, st.sampled_from(["BUY", "SELL"]),
              st.integers(-10**9, 10**9), symbols, prices),
    st.builds(Ack, tokens, uints),
    st.builds(Reject, tokens, reasons),
    st.builds(Error, reasons),
    st.builds(PositionQuery, tokens, symbols),
    st.builds(Position, tokens, symbols, st.integers(-10**9, 10**9)),
)

fast = settings(max_examples=150, deadline=None)


@fast
@given(messages)
def test_property_round_trip(msg):
    line = encode(msg)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode(line[:-1]) == msg
    assert decode(line[:-1] + b"\r") == msg


@fast
@given(st.lists(messages, max_size=8), st.data())
def test_property_stream_chunking(msgs, data):
    stream = b"".join(map(encode, msgs))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    dec = Decoder()
    out = []
    for a, b in zip([0] + cuts, cuts + [len(stream)]):
        out += dec.feed(stream[a:b])
    assert out == msgs


@fast
@given(st.lists(st.binary(max_size=300) | st.sampled_from(
    [b"\n", b"\r\n", b",", b"PRICE,1,2,AAPL,1.00", b"HB,", b"\xff",
     b"x" * 700]), max_size=12))
def test_property_decoder_never_raises(chunks):
    dec = Decoder(max_line=MAX_LINE)
    for chunk in chunks:
        for item in dec.feed(chunk):
            assert isinstance(item, (ProtocolError, *MESSAGE_TYPES.values()))
            if isinstance(item, ProtocolError):
                assert encode(Error(item.reason))   # sendable as is
        assert dec.buffered <= MAX_LINE + 1


@fast
@given(st.binary(max_size=200))
def test_property_decode_raises_only_protocol_error(line):
    try:
        msg = decode(line)
    except ProtocolError:
        return
    assert isinstance(msg, tuple(MESSAGE_TYPES.values()))


# -- a big chunk (as the orderbook reads in a burst), split anywhere -------------------------

_CHUNK_PARTS = st.sampled_from([b"PRICE", b"HB", b"1", b"42", b"", b"-", b"AAPL", b"MSFT", b"Z.9", b"aapl",
                             b"1.5", b"-2.25", b".5", b"1.", b"-.5", b"1e5", b"nan", b"+1", b" 1",
                             b"1.2.3", b"9" * 19, b"9" * 20, b"1" * 16, b"0" * 25 + b"7", b"-0",
                             b"AAPL\0", b"\xff", b"\r", b"18446744073709551615", b"9223372036854775808"])
_CHUNK_GOOD = st.builds(lambda seq, ts, sym, price: b"PRICE,%d,%d,%s,%s" % (seq, ts, sym, price),
                     st.integers(0, 10**19 - 1), st.integers(0, 2**63 - 1),
                     st.sampled_from([b"AAPL", b"MSFT", b"Z.9", b"GOOGL", b"ABCDEFGH"]),
                     st.one_of(st.from_regex(rb"\A-?[0-9]{1,8}(\.[0-9]{1,7})?\Z"),
                               st.floats(0.01, 1e6).map(lambda x: b"%.2f" % x)))
_CHUNK_LINES = st.lists(st.one_of(_CHUNK_GOOD, _CHUNK_GOOD, _CHUNK_GOOD,
                                  st.lists(_CHUNK_PARTS, max_size=6).map(b",".join)),
                        min_size=2, max_size=12)


def _one_by_one(lines):
    decoder = Decoder()
    return [(type(m).__name__, str(m) if isinstance(m, Exception) else tuple(m))
            for line in lines for m in decoder.feed(line + b"\n")]


@settings(max_examples=50, deadline=None)
@given(_CHUNK_LINES, st.integers(0, 40))
def test_a_big_chunk_through_the_decoder_gives_what_line_by_line_does(lines, cut):
    # At least 64 KiB in one feed (what the orderbook reads at once in a burst), split anywhere.
    many = lines * (65536 // max(sum(map(len, lines)), 1) + 1)
    data = b"\n".join(many) + b"\n"
    decoder = Decoder()
    got = decoder.feed(data[:cut]) + decoder.feed(data[cut:])
    assert [(type(m).__name__, str(m) if isinstance(m, Exception) else tuple(m)) for m in got] == _one_by_one(many)


# -- the column-wise decoder (Decoder.feed_columns) against the line-by-line one ---------------

def _flat(got):
    """feed_columns()'s answer as feed() gives it, and whether it came as columns."""
    assert type(got) is list
    out, as_columns = [], False
    for item in got:
        if type(item) is PriceColumns:
            assert len({len(column) for column in item}) == 1 and len(item.seqs) >= 2
            out += item.messages()
            as_columns = True
        else:
            out.append(item)
    return out, as_columns


def _met(known: dict, max_line=MAX_LINE) -> Decoder:
    """A new Decoder that has met the symbols in `known` (raw bytes -> str), as if it had
    decoded a line of each (its own `symbols`)."""
    decoder = Decoder(max_line)
    decoder.feed(b"".join(b"PRICE,1,1,%s,1\n" % raw for raw in known))
    return decoder


# Good PRICE lines mostly (a choice of an integer: hypothesis weighs one_of's branches alike),
# so that many chunks are nothing else; then anything the line-by-line path must judge.
_COLUMN_LINE = st.tuples(st.integers(0, 7), _CHUNK_GOOD, st.lists(_CHUNK_PARTS, max_size=6).map(b",".join)) \
    .map(lambda t: t[2] if t[0] == 3 else t[1])


@settings(max_examples=150, deadline=None)
@given(st.lists(_COLUMN_LINE, min_size=1, max_size=40), st.data())
def test_property_feed_columns_gives_what_line_by_line_does_split_anywhere(lines, data):
    expected = _one_by_one(lines)      # which also puts the symbols in the decoder's cache
    stream = b"\n".join(lines) + b"\n"
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    decoder, got = Decoder(), []
    for a, b in zip([0] + cuts, cuts + [len(stream)]):
        messages, _ = _flat(decoder.feed_columns(stream[a:b], min_bytes=0))
        got += messages
    assert [(type(m).__name__, str(m) if isinstance(m, Exception) else tuple(m)) for m in got] == expected
    assert decoder.buffered == 0


def test_feed_columns_takes_a_chunk_of_good_price_lines_and_nothing_else():
    good = b"PRICE,1,%d,AAPL,172.53\nPRICE,2,%d,MSFT,-0.5\n" % (TS, TS)
    known = {b"AAPL": "AAPL", b"MSFT": "MSFT"}
    edge = b"PRICE,9999999999999999999,9223372036854775807,AAPL,0\n"     # the largest it takes
    unmet = b"N" + secrets.token_hex(3).upper().encode()                # a symbol new to the decoder
    for chunk, columns in [
            (good, True), (good + edge, True), (good + b"PRICE,3", True),     # a partial line waits
            (good[:-1], False),                                  # one complete line: line by line
            (good + b"HB,2,1\n", False),
            (good.replace(b"\n", b"\r\n"), False),
            (good + b"PRICE,3,1,%s,1.00\n" % unmet, False),       # a symbol not met before...
            (good + b"PRICE,3,1,%s,1.00\n" % unmet, True),        # ...then met
            (good + b"PRICE,18446744073709551615,1,AAPL,1\n", False),   # a valid 20-digit seq
            (good + b"PRICE,18446744073709551616,1,AAPL,1\n", False),   # seq above 2**64 - 1
            (good + b"PRICE,3,9223372036854775808,AAPL,1\n", False),    # ts_ns above 2**63 - 1
            (good + b"PRICE,%s,1,AAPL,1\n" % (b"0" * 30 + b"3"), False),  # valid, 31 digits
            (good + b"PRICE,3,1,AAPL,1%s\n" % (b"0" * 300), False),      # valid, 301 digits
            (good + b"PRICE,3,1,AAPL,1.\n", False), (good + b"PRICE,3,1,AAPL,1e5\n", False),
            (good + b"x" * (MAX_LINE + 1), True)]:                # columns, then the framer's error
        decoder = _met(known)
        got, as_columns = _flat(decoder.feed_columns(chunk, min_bytes=0))
        known.update(decoder.symbols)        # what it met, the next one has met
        want = Decoder().feed(chunk)
        assert (norm(got), as_columns) == (norm(want), columns), chunk
    assert _met(known, COLUMNS_MAX_LINE - 1).feed_columns(good + good, 0) == Decoder().feed(good + good)
    assert _flat(_met(known, COLUMNS_MAX_LINE).feed_columns(good + good, 0))[1]
    few = good * (COLUMNS_MIN_BYTES // len(good))               # fewer bytes than the default takes
    assert not _flat(_met(known).feed_columns(few))[1]
    assert _flat(_met(known).feed_columns(few + good))[1]
    assert price_columns(b"", known) == ([], [], [], [])
    assert price_columns(good, known) == ([1, 2], [TS, TS], ["AAPL", "MSFT"], [172.53, -0.5])
    assert price_columns(good, {b"AAPL": "AAPL"}) is None     # MSFT not met: line by line
    assert PriceColumns(*price_columns(good, known)).messages() == [Price(1, TS, "AAPL", 172.53),
                                                                     Price(2, TS, "MSFT", -0.5)]


def test_each_decoder_remembers_its_own_symbols_and_no_more_than_its_bound():
    from hftlab.protocol.fields import SYMBOLS_MAX
    first, second = Decoder(), Decoder()
    first.feed(b"PRICE,1,1,AAPL,1.00\n")
    assert first.symbols == {b"AAPL": "AAPL"} and second.symbols == {}
    names = [b"S%d" % i for i in range(SYMBOLS_MAX + 10)]          # a peer inventing symbols
    first.feed(b"".join(b"PRICE,1,1,%s,1.00\n" % n for n in names))
    assert len(first.symbols) == SYMBOLS_MAX


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 10**15 - 1), min_size=1, max_size=300), st.booleans())
def test_property_prices_in_cents_convert_bit_for_bit_as_float_does(cents, negative):
    # The gateway's form (digits.dd) goes through integers of cents; one negative price (or
    # any other form) sends the chunk through float(). Either way, the same bits as float().
    texts = [b"%d.%02d" % (c // 100, c % 100) for c in cents]
    if negative:
        texts[-1] = b"-" + texts[-1]
    body = b"".join(b"PRICE,%d,%d,AAPL,%s\n" % (k, TS, t) for k, t in enumerate(texts))
    got = price_columns(body, {b"AAPL": "AAPL"})[3]
    assert [struct.pack("<d", p) for p in got] == [struct.pack("<d", float(t)) for t in texts]


def test_a_negative_zero_price_keeps_its_sign():
    got = price_columns(b"PRICE,1,1,AAPL,1.00\nPRICE,2,1,AAPL,-0.00\n", {b"AAPL": "AAPL"})[3]
    assert got == [1.0, 0.0] and math.copysign(1, got[1]) == -1


@fast
@given(first=st.integers(1, 2**63), ts_ns=stamps,
       moves=st.lists(st.tuples(symbols, st.integers(1, 10**9).map(lambda cents: cents / 100)),
                      min_size=1, max_size=8))
def test_the_gateways_fast_price_lines_are_the_bytes_encode_gives(first, ts_ns, moves):
    # The gateway stamps a tick just before it sends it, so it formats its PRICE lines in
    # one step (gateway.price_lines); they must be exactly what the protocol encodes.
    from hftlab import gateway
    fast = gateway.price_lines(first, ts_ns, gateway.price_tails(moves))
    assert fast == b"".join(encode(Price(first + k, ts_ns, s, p)) for k, (s, p) in enumerate(moves))
