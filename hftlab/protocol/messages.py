"""The protocol's messages: one named tuple per line type, and the fields each is made of.

`FIELDS` maps each message type to its fields' codecs (`hftlab.protocol.fields`), in the order
they come on the wire after the type; `hftlab.protocol` encodes and decodes with it.
"""

from __future__ import annotations

from itertools import repeat
from typing import NamedTuple, Union

from hftlab.protocol.fields import FEED, INT, NS, PRICE, REASON, SENTIMENT, SESSION, SIDE, SYMBOL, TOKEN, UINT

__all__ = ["Hello", "Price", "News", "Heartbeat", "Order", "Ack", "Fill", "Reject", "Error", "PositionQuery",
           "Position", "Message", "MESSAGE_TYPES", "FIELDS", "wire_type", "PriceColumns"]


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


class Fill(NamedTuple):
    # Order manager to client, right after the ACK of a booked order: it was filled, all of
    # it, at the book's price for `symbol` when the order was handled (`book_seq`: the
    # seq of that tick; 0 if the book had no price and the order's own price was used).
    order_id: str
    order_no: int
    side: str
    qty: int
    symbol: str
    price: float
    fee: float
    book_seq: int


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


Message = Union[Hello, Price, News, Heartbeat, Order, Ack, Fill, Reject, Error, PositionQuery, Position]

MESSAGE_TYPES = {
    "HELLO": Hello,
    "PRICE": Price,
    "NEWS": News,
    "HB": Heartbeat,
    "ORDER": Order,
    "ACK": Ack,
    "FILL": Fill,
    "REJECT": Reject,
    "ERROR": Error,
    "POSQUERY": PositionQuery,
    "POSITION": Position,
}

FIELDS = {
    Hello: (FEED, SESSION),
    Price: (UINT, NS, SYMBOL, PRICE),
    News: (UINT, NS, SENTIMENT),
    Heartbeat: (UINT, NS),
    Order: (TOKEN, NS, SIDE, INT, SYMBOL, PRICE),
    Ack: (TOKEN, UINT),
    Fill: (TOKEN, UINT, SIDE, INT, SYMBOL, PRICE, PRICE, UINT),
    Reject: (TOKEN, REASON),
    Error: (REASON,),
    PositionQuery: (TOKEN, SYMBOL),
    Position: (TOKEN, SYMBOL, INT),
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
        raise TypeError(f"not a protocol message: {type(msg).__name__}") from None


class PriceColumns(NamedTuple):
    """A run of PRICE messages column by column, as `Decoder.feed_columns` gives them.

    Row k is ``Price(seqs[k], ts_ns[k], symbols[k], prices[k])``; the four lists have one item
    per line, in stream order. A reader of a busy feed (the orderbook in a burst) can check and
    use a whole column at once instead of making and unpacking one Price per tick.
    """
    seqs: list
    ts_ns: list
    symbols: list
    prices: list

    def messages(self) -> list:
        """The same run as a list of Price messages."""
        return list(map(tuple.__new__, repeat(Price), zip(*self)))
