"""Lesson 04's checks: counting lost prices by sequence number, on scripted cases and on a live feed."""

from __future__ import annotations

import logging

from hftlab import book, orderbook, protocol
from hftlab.checks.common import Verdict, Wrong, bounded, call, expect, run_cases

__all__ = ["check_count_gaps", "check_count_gaps_live"]


def check_count_gaps(fn) -> Verdict:
    """fn(messages) -> how many price messages were lost, by sequence number."""
    H, P, B = protocol.Hello, protocol.Price, protocol.Heartbeat

    def price(seq):
        return P(seq, 1000 + seq, "AAPL", 172.5)

    cases = [
        ([H("PRICE", "s1"), price(1), price(2), price(3)], 0,
         "consecutive sequence numbers mean nothing was lost."),
        ([H("PRICE", "s1"), price(1), price(2), price(5)], 2,
         "count the missing messages, not the gaps: after 2, seq 5 means 3 and 4 were lost."),
        ([H("PRICE", "s1"), price(1), price(4), price(5), price(9)], 5,
         "add up every gap in the stream: 2 and 3 lost, then 6, 7 and 8."),
        ([H("PRICE", "s1"), price(1), B(1, 2000), B(3, 3000)], 2,
         "a heartbeat says the last seq the gateway sent: HB 1 after seq 1 is a quiet market, "
         "HB 3 means 2 and 3 were lost even though no price follows."),
        ([H("PRICE", "s1"), price(1), price(2), H("PRICE", "s2"), price(10), price(11)], 0,
         "a HELLO with a new session is a restarted gateway: its numbering started again, "
         "so seq 10 of the new session says nothing about seq 2 of the old one: not a gap."),
        ([H("PRICE", "s1"), price(7), price(8)], 0,
         "the first message of a session sets where you start: joining at seq 7 loses nothing "
         "you could have had."),
    ]

    def judge(fn, case):
        msgs, want, hint = case
        got = call(fn, list(msgs))
        shown = ", ".join(f"{protocol.wire_type(m)} {m[0] if not isinstance(m, H) else m.session}"
                          for m in msgs)
        expect(got, want, f"count_gaps([{shown}])", hint)

    return run_cases("count_gaps", fn, cases, judge)


def check_count_gaps_live(fn, subscriptions) -> Verdict:
    """fn(messages) on what a live price feed really sent, against the package's FeedHandler.

    `subscriptions` is a list of the bytes read by successive subscriptions to a live
    gateway (each starts with its HELLO): a resubscription to the same gateway (same
    session: the seqs sent in between were lost to this subscriber) and one after the
    gateway restarted (a new session: not a gap). The expected count is what
    `orderbook.FeedHandler` counts when fed the same bytes, connection by connection.
    """
    chunks = [bytes(s) for s in subscriptions]
    messages, sessions = [], []
    for chunk in chunks:
        decoded = [m for m in protocol.Decoder().feed(chunk)
                   if isinstance(m, (protocol.Hello, protocol.Price, protocol.Heartbeat))]
        messages += decoded
        sessions += [m.session for m in decoded if isinstance(m, protocol.Hello)]
    if not chunks or not messages:
        raise ValueError("nothing recorded: subscribe to the live price feed first (the cells above)")
    log = logging.getLogger("hftlab.checks.count_gaps_live")
    log.addHandler(logging.NullHandler())
    log.propagate = False
    symbols = sorted({m.symbol for m in messages if isinstance(m, protocol.Price)})

    def handler_gaps(connections):
        """What FeedHandler counts, fed these connections' bytes one after the other."""
        with book.SharedPriceBook(symbols, book.new_name()) as reference:
            handler = orderbook.FeedHandler(reference, log)
            for chunk in connections:
                handler.connected()
                handler.feed(chunk)
            return handler.gaps

    want = handler_gaps(chunks)
    # what a counter that starts afresh on EVERY hello would say: one handler per subscription
    per_subscription = sum(handler_gaps([chunk]) for chunk in chunks)

    story = []
    for i, session in enumerate(sessions):
        if i == 0:
            story.append(f"session {session}")
        elif session == sessions[i - 1]:
            story.append(f"the same session {session} again (a resubscription)")
        else:
            story.append(f"a new session {session} (the gateway restarted)")

    def judge(fn, _):
        got = bounded(fn, list(messages), hint="it never returned on the live feed's messages: "
                      "does a loop wait for a message that never comes?")
        if got == want:
            return
        if got == per_subscription:
            hint = ("a HELLO with the SAME session is a resubscription to the same gateway: its "
                    "numbering goes on, so the seqs between the two subscriptions were lost. Only "
                    "a NEW session starts the count again.")
        elif got > want:
            hint = ("a HELLO with a new session is a restarted gateway: its seq 1 follows nothing "
                    "of the old session, so nothing between them is a gap.")
        else:
            hint = ("too few. Count the missing messages, not the jumps (after seq 4, seq 7 "
                    "means 2 lost). And a HELLO with a new session is a restarted gateway whose "
                    "numbering starts again: compare its seqs with each other, not with the old "
                    "session's (seqs below the old last one would hide the losses after it).")
        raise Wrong(f"on {len(messages)} live messages ({'; then '.join(story)}) it returned "
                     f"{got!r}; the orderbook's FeedHandler counts {want} lost.\n  Hint: {hint}")

    return run_cases("count_gaps", fn, [chunks], judge)
