"""Own a book in a separate process, driven by lines on stdin.

    owner.py NAME SYMBOL...      prints "ready <pid>", then obeys:
    update SYMBOL PRICE          -> "ok <seq>"
    exit                         -> unlinks the book and exits
"""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from hftlab.book import SharedPriceBook  # noqa: E402

name, symbols = sys.argv[1], sys.argv[2:]
with SharedPriceBook(symbols, name) as book:
    print("ready", os.getpid(), flush=True)
    for line in sys.stdin:
        cmd, *args = line.split()
        if cmd == "update":
            book.update(args[0], float(args[1]))
            print("ok", book.header()["last_seq"], flush=True)
        elif cmd == "exit":
            break
