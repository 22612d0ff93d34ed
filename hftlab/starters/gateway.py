"""Starter gateway: ``hftlab conform gateway -- python my_gateway.py`` passes cases 1-3, 5, 8 and
9 and fails 4, 6 and 7 on purpose; the TODOs below say what to add (hftlab/starters/__init__.py)."""
import os, random, selectors, signal, socket, sys, time
from hftlab.protocol import Hello, News, Price, encode

env = os.environ
host, symbols = env["HFTLAB_HOST"], env["HFTLAB_SYMBOLS"].split(",")
tick, news_every = float(env["HFTLAB_TICK_INTERVAL"]), float(env["HFTLAB_NEWS_INTERVAL"])
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))            # case 8: SIGTERM is a clean exit
session = "starter"     # TODO case 7: a new session each start, e.g. secrets.token_hex(4)

listeners, subscribers = {}, {"PRICE": [], "NEWS": []}
sel = selectors.DefaultSelector()
for feed, port in (("PRICE", env["HFTLAB_PRICE_PORT"]), ("NEWS", env["HFTLAB_NEWS_PORT"])):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)     # a restart binds the port again
    s.bind((host, int(port)))
    s.listen()
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, feed)
print("my_gateway: ready: ok", flush=True)                       # the launcher waits for ": ready: "

prices = {s: 100.0 for s in symbols}
seq = {"PRICE": 0, "NEWS": 0}
next_tick = next_news = time.monotonic()


def publish(feed, line):
    for conn in list(subscribers[feed]):
        try:
            conn.sendall(line)   # TODO case 6: sendall waits for a subscriber that never reads
        except OSError:
            subscribers[feed].remove(conn)


while True:
    for key, _ in sel.select(max(0.0, min(next_tick, next_news) - time.monotonic())):  # HELLO first
        conn, _ = key.fileobj.accept()
        conn.sendall(encode(Hello(key.data, session)))
        subscribers[key.data].append(conn)
    now = time.monotonic()
    if now >= next_tick:
        next_tick += tick
        for s in symbols:
            seq["PRICE"] += 1
            prices[s] = max(0.01, round(prices[s] * (1 + random.gauss(0, 0.002)), 2))
            publish("PRICE", encode(Price(seq["PRICE"], time.time_ns(), s, prices[s])))
    if now >= next_news:
        next_news += news_every
        seq["NEWS"] += 1
        publish("NEWS", encode(News(seq["NEWS"], time.time_ns(), random.randint(0, 100))))
    # TODO case 4: a feed silent for HFTLAB_HEARTBEAT_INTERVAL seconds sends HB,<last seq>,<ts_ns>
