"""Starter strategy: ``hftlab conform strategy -- python my_strategy.py`` passes cases 1-5, 7 and 10
and fails 6, 8, 9 and 11 on purpose; the TODOs below say what to add (hftlab/starters/__init__.py)."""
import os, signal, socket, sys, time
from collections import deque
from hftlab.book import SharedPriceBook
from hftlab.protocol import Decoder, News, Order, encode

env = os.environ
host, symbols = env["HFTLAB_HOST"], env["HFTLAB_SYMBOLS"].split(",")
short, long = int(env["HFTLAB_SHORT_WINDOW"]), int(env["HFTLAB_LONG_WINDOW"])
bullish, bearish, qty = int(env["HFTLAB_BULLISH"]), int(env["HFTLAB_BEARISH"]), int(env["HFTLAB_ORDER_QTY"])
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))          # case 10: SIGTERM is a clean exit

while True:                                                      # the orderbook makes the book
    try:
        book = SharedPriceBook.attach(env["HFTLAB_SHM_NAME"]); break
    except Exception:
        time.sleep(0.1)
news = socket.create_connection((host, int(env["HFTLAB_NEWS_PORT"])))
orders = socket.create_connection((host, int(env["HFTLAB_ORDER_PORT"])))
for s in (news, orders):
    s.setblocking(False)
print("my_strategy: ready: ok", flush=True)                     # the launcher waits for ": ready: "

history = {s: deque(maxlen=long) for s in symbols}
last_seq = {s: 0 for s in symbols}
sentiment, decoders, tag, n = None, {news: Decoder(), orders: Decoder()}, f"{time.time_ns():x}", 0
# TODO case 6: keep a position per symbol and order only the change (BUY 10 once, SELL 20 to turn short).
# TODO case 7 (once you keep positions): on a REJECT the position stays as it was.
# TODO case 8: keep each order until its ACK; reconnect to the order manager and re-send it.
# TODO case 9: ask POSQUERY,<HFTLAB_STRATEGY_ID>,<symbol> on connect; take POSITION's qty.
# TODO case 11 (once you keep positions): a FILL line follows each ACK; it is the same order, filled.
while True:
    for s in (news, orders):
        try:
            data = s.recv(65536)
        except BlockingIOError:
            continue
        for msg in decoders[s].feed(data):
            if isinstance(msg, News):
                sentiment = msg.sentiment
    for symbol in symbols:                                       # prices from shared memory only
        q = book.read(symbol)
        if q is None or q.seq == last_seq[symbol]:
            continue
        last_seq[symbol] = q.seq
        h = history[symbol]
        h.append(q.price)
        if len(h) < long or sentiment is None:
            continue
        fast, slow = sum(list(h)[-short:]) / short, sum(h) / long
        side = ("BUY" if fast > slow and sentiment > bullish else
                "SELL" if fast < slow and sentiment < bearish else None)
        if side:
            n += 1
            orders.sendall(encode(Order(f"{tag}-{n}", q.ts_ns, side, qty, symbol, q.price)))
            print(f"my_strategy: {side} {qty} {symbol} @ {q.price:.2f}", flush=True)
    time.sleep(0.005)                                            # polling the book is allowed
