"""The same feed file and the same strategies give the same orders and fills, run after run:
a real interleaved recording (prices and news, made by `hftlab record` of a running lab),
replayed three times through whole matches of real processes."""

import subprocess
import sys
from collections import defaultdict

from hftlab.config import FAST, Config
from hftlab.events import read_events
from hftlab.launcher import Launcher
from hftlab.match import Match
from hftlab.replay import NEWS, PRICE, load


def what_happened(out) -> dict:
    """Per strategy, its orders, fills and rejects in order, without what differs by nature
    from run to run (times, order ids: a tag per strategy process)."""
    seen = defaultdict(list)
    for e in read_events(str(out / "match_events.csv")):
        seen[e.strategy].append((e.kind, e.side, e.qty, e.symbol, e.price, e.fill_price, e.reason, e.book_seq))
    return dict(seen)


def test_a_recording_replayed_three_times_gives_the_same_orders_and_fills(tmp_path):
    recording = tmp_path / "ticks.csv"
    with Launcher(Config(**FAST, momentum=0.3), free_ports=True, names=["gateway"]) as lab:
        subprocess.run([sys.executable, "-m", "hftlab", "record", "--duration", "5", "--out", str(recording),
                        "--price-port", str(lab.config.price_port), "--news-port", str(lab.config.news_port)],
                       check=True, capture_output=True, timeout=60)
    kinds = [e.kind for e in load(str(recording), Config().symbols)]
    # Interleaved: news lines between prices, as a live feed has them (the race this is about).
    assert kinds.count(NEWS) >= 10 and kinds.count(PRICE) >= 200
    assert any(a == PRICE and b == NEWS for a, b in zip(kinds, kinds[1:]))
    config = Config(**FAST, replay=str(recording), speed=1.0, position_limit=100, rate_limit=50)
    runs = []
    for k in range(3):
        with Match(config, ["a=ours", "r=random"], str(tmp_path / f"run{k}")) as match:
            summary = match.wait()
        assert "replay is over" in match.ended, match.ended
        runs.append(what_happened(tmp_path / f"run{k}"))
        assert summary["a"]["fills"] > 0 and summary["r"]["fills"] > 0, summary
    assert runs[0] == runs[1] == runs[2]
