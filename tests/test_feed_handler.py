"""Tests for hftlab.orderbook.FeedHandler's burst path: a chunk of PRICE lines in order is
written with one SharedPriceBook.write_ticks call, and gives the book, the counts and the log
exactly what the message-by-message path gives (every tick written, in order)."""

import functools
import time

from hypothesis import given, settings, strategies as st

from conftest import Said
from hftlab import protocol
from hftlab.book import SharedPriceBook, new_name
from hftlab.orderbook import FeedHandler

SYMBOLS = ["AAPL", "MSFT", "GOOGL"]
TS = 1_764_087_000_123_456_789


def state(handler):
    """What a handler leaves behind: its counts, its log, the book's header and records
    (all but written_ns, the one field that differs from run to run)."""
    h = handler.book.header()
    records = [(rec[0], rec[1], None if rec[2] != rec[2] else rec[2], *rec[3:5], rec[6])   # NaN: no price
               for rec in handler.book.snapshot().tolist()]
    return (handler.gaps, handler.errors, handler.last_seq, handler.log.lines,
            (h["updates"], h["last_seq"], h["gaps"], h["session"], h["feed_state"]), records)


def run(stream, cuts, by_message):
    """Feed `stream` cut at `cuts` to a new handler with its own book; `by_message` makes
    its decoder hand out messages only, so the handler takes the message-by-message path;
    otherwise its decoder hands out columns for chunks of any size (not only from
    COLUMNS_MIN_BYTES up), so that the burst path meets more of them."""
    with SharedPriceBook(SYMBOLS, new_name()) as price_book:
        handler = FeedHandler(price_book, Said())
        if by_message:
            handler.decoder.feed_columns = protocol.Decoder().feed
        else:
            handler.decoder.feed_columns = functools.partial(handler.decoder.feed_columns, min_bytes=0)
        for a, b in zip([0] + cuts, cuts + [len(stream)]):
            handler.feed(stream[a:b])
        return state(handler)


# One PRICE event of a feed: mostly the next tick, sometimes one the handler treats apart.
# (A choice of an integer, as hypothesis weighs one_of's branches alike, however many repeat.)
_ticks = st.tuples(st.just("tick"), st.sampled_from(SYMBOLS), st.sampled_from(["101.25", "7", "0.01"]))
_unusual = st.one_of(
    st.tuples(st.just("gap"), st.integers(1, 5)),
    st.tuples(st.just("bad price"), st.sampled_from(["0.00", "-1.5", "0"])),
    st.tuples(st.just("unknown"), st.sampled_from(["TSLA", "IBM"])),
    st.tuples(st.just("seq 0"), st.just(0)),
    st.tuples(st.just("back"), st.integers(1, 3)),
)
_price_events = st.tuples(st.integers(0, 15), _ticks, _unusual).map(lambda t: t[2] if t[0] in (5, 11) else t[1])
# The other lines, a few per stream, so that many chunks are runs of PRICE lines only.
_other_events = st.one_of(
    st.tuples(st.just("hb"), st.integers(-1, 3)),
    st.tuples(st.just("hello"), st.sampled_from(["sess1", "sess2"])),
    st.tuples(st.just("garbage"), st.sampled_from([b"PRICE,x", b"HB,", b"NEWS,1,2,50", b"", b"\xff",
                                                   b"PRICE,5,5,AAPL,1e5"])),
)


def encode_events(events):
    seq, out = 0, [b"HELLO,PRICE,sess1\n"]
    for kind, *arg in events:
        if kind == "tick":
            seq += 1
            out.append(b"PRICE,%d,%d,%s,%s\n" % (seq, TS + seq, arg[0].encode(), arg[1].encode()))
        elif kind == "gap":
            seq += arg[0]
        elif kind == "unknown":
            seq += 1
            out.append(b"PRICE,%d,%d,%s,1.00\n" % (seq, TS, arg[0].encode()))
        elif kind == "bad price":
            seq += 1
            out.append(b"PRICE,%d,%d,AAPL,%s\n" % (seq, TS, arg[0].encode()))
        elif kind == "back":                        # a seq already seen, then on from there
            seq = max(seq - arg[0], 0)
        elif kind == "seq 0":
            out.append(b"PRICE,0,%d,AAPL,1.00\n" % TS)
        elif kind == "hb":
            out.append(b"HB,%d,%d\n" % (max(seq + arg[0], 0), TS))
        elif kind == "hello":
            seq = 0 if arg[0] != "sess1" else seq
            out.append(b"HELLO,PRICE,%s\n" % arg[0].encode())
        else:
            out.append(arg[0] + b"\n")
    return b"".join(out)


@settings(max_examples=80, deadline=None)
@given(st.lists(_price_events, min_size=5, max_size=60), st.integers(3, 40),
       st.lists(st.tuples(st.integers(0, 10**6), _other_events), max_size=4), st.data())
def test_property_the_burst_path_leaves_what_the_message_path_leaves(events, repeat, others, data):
    # Repeated, so that some chunks are long runs of ticks (the burst path) and the seqs go on.
    events = events * repeat
    for at, event in others:
        events.insert(at % (len(events) + 1), event)
    stream = encode_events(events)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    assert run(stream, cuts, by_message=False) == run(stream, cuts, by_message=True)


def meet(decoder, symbols=(*SYMBOLS, "TSLA")):
    """`decoder` has met (checked and remembered) these symbols, as it would have by decoding a
    line of each: what the column path needs before it takes a chunk. Returns the decoder."""
    decoder.feed(b"".join(b"PRICE,1,1,%s,1.00\n" % s.encode() for s in symbols))
    return decoder


def test_a_burst_is_written_in_one_call_one_seqlocked_write_a_tick():
    n = 3000
    ticks = b"".join(b"PRICE,%d,%d,%s,%d.25\n" % (q, TS + q, SYMBOLS[q % 3].encode(), q)
                     for q in range(1, n + 1))
    with SharedPriceBook(SYMBOLS, new_name()) as price_book:
        handler = FeedHandler(price_book, Said())
        meet(handler.decoder)
        calls = []
        write_ticks = price_book.write_ticks
        price_book.write_ticks = lambda *cols: (calls.append(len(cols[0])), write_ticks(*cols))
        first = ticks.index(b"\n") + 1
        handler.feed(b"HELLO,PRICE,s1\n" + ticks[:first])   # the first tick goes the careful way
        calls.clear()
        before = time.time_ns()
        handler.feed(ticks[first:])
        after = time.time_ns()
        assert calls == [n - 1] and handler.last_seq == n and handler.errors == handler.gaps == 0
        h = price_book.header()
        assert (h["updates"], h["last_seq"]) == (n, n)
        for i, symbol in enumerate(SYMBOLS):
            q = price_book.read(symbol)
            last = max(q for q in range(1, n + 1) if q % 3 == i)     # that symbol's last tick
            assert (q.seq, q.price, q.ts_ns, q.updates) == (last, last + 0.25, TS + last, n // 3)
            assert before <= q.written_ns <= after
        assert price_book._versions == [2 * (n // 3)] * 3     # one seqlocked write a tick
        assert handler.log.lines == []


def test_a_chunk_with_anything_unusual_goes_message_by_message():
    with SharedPriceBook(SYMBOLS, new_name()) as price_book:
        handler = FeedHandler(price_book, Said())
        meet(handler.decoder)
        handler.decoder.feed_columns = functools.partial(handler.decoder.feed_columns, min_bytes=0)
        calls = []
        write_ticks = price_book.write_ticks       # a run of ticks in one call: the burst path
        price_book.write_ticks = lambda *cols: (len(cols[0]) > 1 and calls.append(cols), write_ticks(*cols))
        handler.feed(b"HELLO,PRICE,s1\nPRICE,1,1,AAPL,1.00\n")
        for chunk in (b"PRICE,2,1,AAPL,1.00\nPRICE,4,1,AAPL,1.00\n",      # a gap
                      b"PRICE,5,1,AAPL,1.00\nPRICE,6,1,TSLA,1.00\n",      # an unknown symbol
                      b"PRICE,7,1,AAPL,1.00\nPRICE,8,1,MSFT,0.00\n",      # a price of 0
                      b"PRICE,9,1,AAPL,1.00\nPRICE,9,1,AAPL,1.00\n"):     # a repeated seq
            # A chunk the decoder gives as columns: the handler itself must see what is unusual.
            assert type(meet(protocol.Decoder()).feed_columns(chunk, min_bytes=0)[0]) is protocol.PriceColumns
            handler.feed(chunk)
        assert calls == []
        assert (handler.gaps, handler.errors, handler.last_seq) == (1, 1, 9)
        assert price_book.header()["updates"] == price_book.read("AAPL").updates == 7   # 1 2 4 5 7 9 9
        assert [text.split(":")[0] for _, text in handler.log.lines] == [
            "gap", "ignoring TSLA", "bad line from the gateway, skipped"]
