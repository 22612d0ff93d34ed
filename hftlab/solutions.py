"""Worked solutions to the lessons' exercises (try them yourself first).

Each function answers the exercise of the same name in a lesson notebook and passes
the check of the same name in `hftlab.checks`; tests/test_checks.py makes sure of it.
They are written as a learner would write them, from the lesson's prose, not copied
from the package, so that comparing the two is itself instructive.
"""

from __future__ import annotations

import math

from hftlab.book import HEADER_DTYPE, RECORD_DTYPE

__all__ = ["footprint", "seqlock_read", "count_gaps", "audit", "speedup", "expected_wait"]


# -- lesson 03: shared memory ------------------------------------------------------

def footprint(n_symbols, page_size):
    """(bytes the book's layout uses, bytes the kernel maps for it)."""
    used = HEADER_DTYPE.itemsize + n_symbols * RECORD_DTYPE.itemsize
    pages = (used + page_size - 1) // page_size   # round up: a page is all or nothing
    return used, pages * page_size


def seqlock_read(load_version, load_fields):
    """A consistent copy of a record guarded by a sequence counter."""
    while True:
        before = load_version()
        if before % 2:              # odd: the writer is in the middle of a write
            continue
        fields = load_fields()
        if load_version() == before:
            return fields           # nobody wrote while we copied


# -- lesson 04: the orderbook ------------------------------------------------------

def count_gaps(messages):
    """How many price messages were lost, judged by their sequence numbers."""
    from hftlab.protocol import Heartbeat, Hello, Price

    lost, last, session = 0, None, None
    for msg in messages:
        if isinstance(msg, Hello):
            if msg.session != session:
                session, last = msg.session, None     # a new gateway: numbering restarts
        elif isinstance(msg, Price):
            if last is not None and msg.seq > last + 1:
                lost += msg.seq - last - 1
            last = msg.seq
        elif isinstance(msg, Heartbeat):
            if last is not None and msg.last_seq > last:
                lost += msg.last_seq - last           # it sent up to last_seq; we have up to last
            last = msg.last_seq if last is None else max(last, msg.last_seq)
    return lost


# -- lesson 09: faults and recovery ------------------------------------------------

def audit(journal, acks):
    """What disagrees between a journal and the ACKs a strategy received."""
    from collections import Counter

    booked = {int(row["order_no"]): row["order_id"] for row in journal}
    counts = Counter(row["order_id"] for row in journal)
    top = max(booked, default=0)
    return {
        "missing": sorted(no for oid, no in acks if booked.get(no) != oid),
        "twice": sorted(oid for oid, n in counts.items() if n > 1),
        "holes": sorted(set(range(1, top + 1)) - set(booked)),
    }


# -- lesson 11: why these choices --------------------------------------------------

def speedup(new, base):
    """How many times as many ticks per second `new` delivered as `base`."""
    # Delivered, not sent: a tick the transport dropped was never carried.
    return (new.delivered / new.seconds) / (base.delivered / base.seconds)


# --- lesson 05 / 06 (issue 9) -----------------------------------------------------------

__all__ += ["trigger", "notional_limit"]


def trigger(before, now):
    """Which signal turned to make the trade on `now`: 'price', 'news' or 'both'."""
    side = now[0]                      # on a trade's tick both signals name its side
    price_turned = before[0] != side   # None (no signal yet) is not agreement either
    news_turned = before[1] != side
    if price_turned and news_turned:
        return "both"
    return "price" if price_turned else "news"


def notional_limit(order, config, last_price, max_notional):
    """Every rule of the order manager, then: quantity x price at most max_notional."""
    from hftlab.order_manager import check_order

    reason = check_order(order, config, last_price)
    if reason is not None:
        return reason
    notional = order.qty * order.price  # what the order commits, at its own price
    if notional > max_notional:
        return f"notional {notional:,.2f} is above the limit {max_notional:,.2f}"
    return None


# --- lesson 01 ---

__all__ += ["make_length_framer"]


def make_length_framer():
    """A framer for length-prefixed frames: 4 bytes of length (big-endian), then the payload."""
    buffer = b""

    def feed(data):
        nonlocal buffer
        buffer += data
        payloads = []
        # Cut off whole frames while there are any; a partial header or payload waits.
        while len(buffer) >= 4:
            size = int.from_bytes(buffer[:4], "big")
            if len(buffer) < 4 + size:
                break
            payloads.append(buffer[4:4 + size])
            buffer = buffer[4 + size:]
        return payloads

    return feed


# --- lesson 02 ---

__all__ += ["fix_quantity"]


def fix_quantity(order, reject, max_qty):
    """The same order with the largest quantity booked, or None if no quantity would do."""
    # Only a quantity above the limit is cured by a quantity; any other reason stays.
    if "above the maximum" in reject.reason and order.qty > max_qty:
        return order._replace(qty=max_qty)
    return None


# -- lesson 08: performance ---------------------------------------------------------

def expected_wait(policy, interval_s, wake_us):
    """The typical wait (us) from a write to the reader's look, for one way of waiting."""
    if policy == "spin":
        return 0.0                      # never asleep: nothing to wake
    if policy == "doorbell":
        return wake_us                  # rung at once: one wake-up
    # Sleep-polling with epoll: the timeout is rounded up to whole milliseconds, and a
    # tick lands at a random moment of the sleep, so it waits half of it on average.
    slept_ms = math.ceil(interval_s * 1000 - 1e-9)
    return slept_ms * 1000 / 2 + wake_us


# --- lesson 07 ---

def gateway_kill():
    """What the book view shows a few seconds after the gateway is SIGKILLed."""
    return {"prices": "last known",  # the book keeps the latest price; nobody erases it
            "stale": "every row",    # the orderbook marks the feed DOWN in the header
            "feed": "DOWN",
            "seq": "frozen",         # no PRICE arrives, nothing is written
            "orderbook": "running"}  # it reconnects with back-off


__all__ += ["gateway_kill"]


# --- lesson 08: conflation ---

__all__ += ["seen_and_missed"]


def seen_and_missed(looks):
    """(seen, missed) from a reader's looks at an `updates` counter that never goes down."""
    seen = missed = 0
    for before, now in zip(looks, looks[1:]):
        if now > before:         # it moved by k: the newest tick seen, k - 1 overwritten unseen
            seen += 1
            missed += now - before - 1
    return seen, missed
