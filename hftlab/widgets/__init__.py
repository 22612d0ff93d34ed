"""Live views of the running system for notebooks: the book, a price chart, a wire tap, a dashboard.

Every view reads the system from the outside, the way any other process would: the book
through `hftlab.book.Follower` (a reader, never registered with the resource tracker),
the feeds and the order port through plain TCP sockets and `hftlab.protocol`. Nothing here
reaches into the processes' Python objects; they have none to share.

One module per idea, each short enough to read in one sitting:

- `live`: the live loop. A view redraws itself in a background thread (`Live`), with a
  stop button, and stops by itself after `DURATION` seconds (`HEADLESS_FRAMES` frames
  with ``HFTLAB_HEADLESS=1``, as in the test runs).
- `view`: what every view shares: what it is given (a Config, a book's name, or a
  launcher's ``.config``), a plain-text form ``.text()``, tables.
- `bookview`: `BookView`, one row per symbol (price, change, seq, age, stale) and the
  book's counters; `FollowedBook` follows the book across orderbook restarts.
- `chart`: `PriceChart`, the recent prices and the strategy's moving averages, drawn by
  matplotlib (the only module that imports it).
- `wiretap`: `WireTap`, one message at a time, its raw bytes beside its decoded fields.
- `news`: `NewsReader`, the latest news, over the one reconnecting client (`hftlab.link`).
- `blotter`: the orders the order manager answered, from its log and its journal.
- `leaderboard`: `Leaderboard`, a match's scoreboard (`hftlab.match`), live, best P&L first.
- `dashboard`: `Dashboard`, all of the above plus one row per process with start, stop,
  kill and restart buttons (the only module that needs the launcher).

    from hftlab import widgets
    widgets.Dashboard(lab)                    # lab: a running hftlab.launcher.Launcher
    widgets.BookView(lab.config)              # or a book's name
    widgets.WireTap.connect(lab, "price")     # or (host, port)

This package is the only part of hftlab that imports ipywidgets.
"""

from hftlab.widgets.blotter import Blotter, blotter_rows, recent_orders
from hftlab.widgets.bookview import FollowedBook, BookView, Row
from hftlab.widgets.chart import PriceChart, moving_average_series
from hftlab.widgets.dashboard import Dashboard, ProcessPanel
from hftlab.widgets.leaderboard import Leaderboard
from hftlab.widgets.live import DURATION, HEADLESS_FRAMES, Live, headless
from hftlab.widgets.news import NewsReader
from hftlab.widgets.view import MISSING, View
from hftlab.widgets.wiretap import Step, WireTap, fields_of, hexdump, summary_line

__all__ = [
    "Dashboard", "BookView", "PriceChart", "WireTap",
    "FollowedBook", "Row", "moving_average_series", "Step", "hexdump", "fields_of", "summary_line",
    "NewsReader", "Leaderboard", "Blotter", "blotter_rows", "recent_orders", "ProcessPanel",
    "Live", "View", "DURATION", "HEADLESS_FRAMES", "MISSING", "headless",
]
