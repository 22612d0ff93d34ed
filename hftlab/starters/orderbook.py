"""Starter orderbook: ``hftlab conform orderbook -- python my_orderbook.py`` passes cases 1-3 and 6-8
and fails 4 and 5 on purpose; the TODOs below say what to add (hftlab/starters/__init__.py)."""
import os, signal, socket, sys, time
from hftlab.book import FEED_UP, SharedPriceBook
from hftlab.protocol import Decoder, Hello, Price

env = os.environ
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))            # case 8: exit (and unlink, below)
book = SharedPriceBook(env["HFTLAB_SYMBOLS"].split(","), env["HFTLAB_SHM_NAME"])
print("my_orderbook: ready: ok", flush=True)                     # the launcher waits for ": ready: "
try:
    while True:
        try:
            feed = socket.create_connection((env["HFTLAB_HOST"], int(env["HFTLAB_PRICE_PORT"])))
            break
        except OSError:
            time.sleep(0.2)                                      # the gateway is not up yet
    decoder, last = Decoder(), None
    while True:
        data = feed.recv(65536)
        if not data:
            break   # TODO case 5: set_feed_state(FEED_DOWN), dial again with back-off
        for msg in decoder.feed(data):                           # whole lines, however TCP cut them
            if isinstance(msg, Hello):
                book.set_feed_state(FEED_UP, msg.session)
                # TODO case 4: a new session is a gateway restart: forget `last`, it is not a gap
            elif isinstance(msg, Price) and msg.symbol in book.symbols:
                if last is not None and msg.seq > last + 1:
                    book.add_gaps(msg.seq - last - 1)
                last = msg.seq
                book.update_index(book.index(msg.symbol), msg.price, msg.seq, msg.ts_ns)
    while True:
        time.sleep(1)
finally:
    book.close()
    book.unlink()                                                # only the owner removes the book
