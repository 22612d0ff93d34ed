"""A class in one match: 16 strategies on one exchange run to the end, every order answered;
and the crowd bench's table."""

from collections import Counter

from hftlab.bench import crowd
from hftlab.config import FAST, Config
from hftlab.events import read_events
from hftlab.match import MATCH_DEFAULTS, Match


def test_a_match_of_sixteen_strategies_runs_to_its_end_with_every_order_answered(tmp_path):
    names = [f"s{i}" for i in range(16)]
    with Match(Config(**FAST, **MATCH_DEFAULTS), [f"{n}=ours" for n in names], str(tmp_path), duration=4) as match:
        summary = match.wait()
    assert sorted(summary) == sorted(names)
    assert all(s["status"] == "finished" for s in summary.values()), {n: s["status"] for n, s in summary.items()}
    events = read_events(str(tmp_path / "match_events.csv"))
    kinds = Counter(e.kind for e in events)
    assert kinds["order"] > 0 and kinds["order"] == kinds["fill"], kinds
    ordered = {(e.strategy, e.order_id) for e in events if e.kind == "order"}
    assert ordered == {(e.strategy, e.order_id) for e in events if e.kind == "fill"}
    assert {e.strategy for e in events} <= set(names)
    for name in names:   # what each strategy sent, each one answered: nothing left unconfirmed
        log = (tmp_path / "logs" / name / "strategy.log").read_text()
        assert "unconfirmed" not in log and log.count(" as ") == log.count("ACK "), name


def test_the_crowd_table_compares_each_size_with_the_lone_strategy():
    rows = [{"strategies": 1, "finished": 1,
             "seen_p50_median": 250.0, "seen_p50_worst": 250.0, "seen_p99_worst": 400.0,
             "orders": 10, "fills": 10, "p50_median": 500.0, "p50_worst": 500.0,
             "p99_median": 900.0, "p99_worst": 900.0, "orderbook_us_per_tick": 40.0},
            {"strategies": 4, "finished": 4,
             "seen_p50_median": 750.0, "seen_p50_worst": 900.0, "seen_p99_worst": 2e3,
             "orders": 40, "fills": 40, "p50_median": 1000.0, "p50_worst": 1500.0,
             "p99_median": 2000.0, "p99_worst": 2500.0, "orderbook_us_per_tick": 95.4},
            {"strategies": 16, "finished": 15,
             "seen_p50_median": None, "seen_p50_worst": None, "seen_p99_worst": None,
             "orders": 0, "fills": 0, "p50_median": None, "p50_worst": None,
             "p99_median": None, "p99_worst": None}]
    lines = crowd.table(rows).splitlines()
    assert lines[1].split()[:2] == ["strategies", "finished"]
    one, four, sixteen = (line.split() for line in lines[2:])
    assert one[-3:] == ["1.00x", "40", "us"] and four[-3:] == ["2.00x", "95", "us"]
    assert four[2:9] == ["750", "us", "900", "us", "2,000", "us", "3.00x"]
    assert "1,500 us" in lines[3] and sixteen[-2:] == ["-", "-"] and sixteen[2:6] == ["-", "-", "-", "-"]
