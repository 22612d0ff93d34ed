"""Starter order manager: ``hftlab conform order-manager -- python my_order_manager.py``
passes cases 1-4, 6, 9 and 11 and fails 5, 7, 8, 10, 12 and 13 on purpose; the TODOs below say what to add
(hftlab/starters/__init__.py)."""
import os, signal, socketserver, sys, threading, time
from hftlab.protocol import Ack, Decoder, Error, Order, ProtocolError, Reject, encode

env = os.environ
max_qty, journal_path = int(env["HFTLAB_MAX_QTY"]), env["HFTLAB_JOURNAL"]
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))            # case 9: SIGTERM is a clean exit
lock = threading.Lock()
os.makedirs(os.path.dirname(os.path.abspath(journal_path)), exist_ok=True)
journal = os.open(journal_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
if os.fstat(journal).st_size == 0:
    os.write(journal, b"order_no,recv_ns,client,order_id,tick_ts_ns,side,qty,symbol,price,strategy,"
                      b"fill_price,fee,book_seq,book_ts_ns\n")
last_no = 0   # TODO case 7: read the journal back: numbering continues, old ids keep their numbers
# TODO case 5: remember booked ids: the same order again gets the same ACK, another one a REJECT
# TODO case 8: answer POSQUERY,<strategy>,<symbol> with POSITION (docs/protocol.md)
# TODO case 10: REJECT an unknown symbol, and a price more than HFTLAB_PRICE_BAND from the book's
# TODO case 12: fill at the book's price, journal the fill, and send FILL after the ACK (docs/protocol.md)
# TODO case 13: REJECT orders past HFTLAB_POSITION_LIMIT and HFTLAB_RATE_LIMIT (0: no limit)


def answer(msg, client):
    global last_no
    if isinstance(msg, ProtocolError):
        return Error(msg.reason)
    if not isinstance(msg, Order):
        return Error(f"{type(msg).__name__} is not an order")
    if not 1 <= msg.qty <= max_qty:
        return Reject(msg.order_id, f"qty must be 1..{max_qty}; got {msg.qty}")
    if not msg.price > 0:
        return Reject(msg.order_id, "price must be above 0")
    with lock:                                                   # one counter for every client
        last_no += 1
        row = (f"{last_no},{time.time_ns()},{client},{msg.order_id},{msg.tick_ts_ns},{msg.side},"
               f"{msg.qty},{msg.symbol},{msg.price:.2f},,,,,\n")
        os.write(journal, row.encode())                          # case 4: the journal first ...
        print(f"Received Order {last_no}: {msg.side} {msg.qty} {msg.symbol} @ {msg.price:.2f}", flush=True)
        return Ack(msg.order_id, last_no)                        # ... then the ACK


class Client(socketserver.BaseRequestHandler):                   # one thread per client (case 6)
    def handle(self):
        decoder, client = Decoder(), f"{self.client_address[0]}:{self.client_address[1]}"
        while data := self.request.recv(65536):
            for msg in decoder.feed(data):
                self.request.sendall(encode(answer(msg, client)))


socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer.daemon_threads = True
server = socketserver.ThreadingTCPServer((env["HFTLAB_HOST"], int(env["HFTLAB_ORDER_PORT"])), Client)
print("my_order_manager: ready: ok", flush=True)                 # the launcher waits for ": ready: "
server.serve_forever()
