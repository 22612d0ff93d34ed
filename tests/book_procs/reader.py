"""Attach to a book, print its quotes and header as one JSON line, exit."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from hftlab.book import SharedPriceBook  # noqa: E402

book = SharedPriceBook.attach(sys.argv[1])
try:
    quotes = {s: q._asdict() if q else None
              for s, q in book.quotes().items()}
    print(json.dumps({"quotes": quotes, "header": book.header(),
                      "owner": book.owner}), flush=True)
finally:
    book.close()
