"""The news the dashboard shows: a subscriber to the news feed that never blocks.

It dials the feed with the one reconnecting client of hftlab (`hftlab.link.Link`: back-off,
a feed silent for three heartbeats is taken for dead), the same client the strategy uses,
and keeps the latest sentiment. It logs nothing: it runs in a notebook's background thread.
"""

from __future__ import annotations

from hftlab import protocol
from hftlab.link import Link
from hftlab.widgets.view import config_of

__all__ = ["NewsReader"]


class NewsReader:
    """The latest news of the feed a Config (or a launcher) names; reconnects by itself."""

    def __init__(self, source):
        config = config_of(source)
        self.link = Link("news feed", config.host, config.news_port,
                         heartbeat=config.heartbeat_interval)
        self.sentiment = None
        self.seq = 0
        self.received = 0

    def poll(self) -> None:
        """Read whatever news has arrived, without waiting (and dial if it is time)."""
        self.link.keep_up()
        while data := self.link.recv():
            for msg in self.link.decoder.feed(data):
                if isinstance(msg, protocol.News):
                    self.sentiment, self.seq = msg.sentiment, msg.seq
                    self.received += 1

    @property
    def connected(self) -> bool:
        return self.link.up

    def close(self) -> None:
        self.link.close()
