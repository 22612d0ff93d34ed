"""hftlab match: entries, scores from hand-made events, and whole matches of real processes."""

import csv
import json
import os
import secrets
import signal
import subprocess
import sys

import pytest
from conftest import MARKER, Output, wait_for, wait_until_gone

from hftlab.config import Config
from hftlab.events import FILL, ORDER, REJECT, Event
from hftlab.match import Entry, check_entries, parse_entry
from hftlab.match.random_trader import seed_of
from hftlab.match.score import Tally, max_drawdown, percentile, reject_kind, table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- entries ------------------------------------------------------------------------------

def test_good_entries_parse():
    assert parse_entry("a=ours") == Entry("a", "ours", {})
    assert parse_entry("a=ours --short-window 3 --order-qty 5") == Entry("a", "ours", {"short_window": 3,
                                                                                         "order_qty": 5})
    assert parse_entry("b=slow:100") == Entry("b", "slow", {"send_delay": 0.1})
    assert parse_entry("r=random") == Entry("r", "random", {})
    assert parse_entry("me=cmd:python my.py --x 1") == Entry("me", "cmd", {}, "python my.py --x 1")
    entry = parse_entry("a=ours --short-window 2")
    config = entry.config(Config())
    assert (config.strategy_id, config.short_window) == ("a", 2)


@pytest.mark.parametrize("text, said", [
    ("nameless", "NAME=SPEC"), ("bad name!=ours", "NAME=SPEC"), ("a=", "SPEC must be"),
    ("a=bogus", "SPEC must be"), ("a=slow:", "milliseconds"), ("a=slow:-5", "milliseconds"),
    ("a=ours --no-such-flag", "unrecognized"), ("a=ours --short-window x", "invalid"),
    ("a=ours --short-window 30", "short_window"), ("a=ours --order-port 1", "cannot set --order-port"),
    ("a=cmd:", "wants a command"), ("a=cmd:python 'x", "cannot be split"),
])
def test_bad_entries_are_one_sentence(text, said):
    with pytest.raises(ValueError, match=said) as info:
        parse_entry(text)
    assert "\n" not in str(info.value)


def test_two_entries_of_one_name_are_refused():
    with pytest.raises(ValueError, match="two entries are named 'a'"):
        check_entries(["a=ours", "b=random", "a=slow:5"])


@pytest.mark.parametrize("entries, said", [
    (["a=ours", "a=random"], "two entries are named 'a'"),
    (["a=nonsense"], "SPEC must be"),
])
def test_the_command_refuses_bad_entries_before_anything_starts(tmp_path, entries, said):
    args = [a for e in entries for a in ("--entry", e)]
    result = subprocess.run([sys.executable, "-m", "hftlab", "match", "--out", str(tmp_path / "m"), *args],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert said in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "m").exists()


# -- scores -------------------------------------------------------------------------------

def order(t, who, oid, side, qty, symbol, price, tick=0):
    return Event(t, who, ORDER, oid, side, qty, symbol, price, order_no=1, tick_ts_ns=tick)


def fill(t, who, oid, side, qty, symbol, price, fill_price, fee=0.0):
    return Event(t, who, FILL, oid, side, qty, symbol, price, fill_price, fee, order_no=1, book_seq=1,
                 book_ts_ns=t)


def test_pnl_fees_and_slippage_from_fills():
    tally = Tally(["a", "idle"])
    tally.add([order(1_000, "a", "1", "BUY", 10, "AAPL", 100.0, tick=500),
               fill(1_000, "a", "1", "BUY", 10, "AAPL", 100.0, 100.5, fee=0.1),
               order(3_000, "a", "2", "SELL", 20, "AAPL", 110.0, tick=1_000),
               fill(3_000, "a", "2", "SELL", 20, "AAPL", 110.0, 109.0, fee=0.2)])
    rows = {r.strategy: r for r in tally.rows(1.0, {"AAPL": 108.0})}
    # Bought 10 at 100.5, sold 20 at 109: 85 realized, short 10 from 109 marked at 108: +10.
    assert rows["a"].realized == 85.0 and rows["a"].unrealized == 10.0 and rows["a"].fees == 0.3
    assert rows["a"].pnl == 94.7 and rows["a"].position == 10
    assert rows["idle"].pnl == 0 and rows["idle"].position == 0
    s = tally.summary({"AAPL": 108.0}, {"idle": "never ready: it slept"})
    assert s["a"]["orders"] == s["a"]["fills"] == 2 and s["a"]["rejects"] == {}
    assert s["a"]["mean_slippage"] == pytest.approx((0.5 + 1.0) / 2)
    assert s["a"]["max_abs_position"] == 10
    assert s["a"]["tick_to_trade_p50_us"] == 0.5 and s["a"]["tick_to_trade_p99_us"] == 2.0
    assert s["a"]["status"] == "finished" and s["idle"]["status"] == "never ready: it slept"
    assert s["idle"]["tick_to_trade_p50_us"] is None and s["idle"]["mean_slippage"] is None


def test_drawdown_is_the_largest_fall_from_a_peak():
    assert max_drawdown([]) == 0
    assert max_drawdown([1, 5, 2, 4, -1, 3]) == 6
    assert max_drawdown([-1, -3, -2]) == 3      # from the start's 0
    tally = Tally(["a"])
    tally.add([fill(1, "a", "1", "BUY", 10, "X", 10.0, 10.0)])
    for price in (12.0, 11.0, 13.0, 9.0):
        tally.rows(0.0, {"X": price})
    assert tally.summary({"X": 9.5})["a"]["max_drawdown"] == 40.0


def test_rejects_are_counted_by_kind():
    reasons = ["position limit 100 would be exceeded: AAPL long 100", "message rate limit: 51 in 1 s",
               "over the message rate limit", "price 1.00 is more than 10% away from the book's 170.00",
               "price must be a positive number; got 0.0", "quantity 2000 is above the maximum 1000",
               "duplicate order_id x: it was order 3", "something new entirely"]
    tally = Tally(["a"])
    tally.add([Event(1, "a", REJECT, str(i), "BUY", 10, "AAPL", 1.0, reason=r) for i, r in enumerate(reasons)])
    assert tally.summary({})["a"]["rejects"] == {
        "position limit": 1, "message rate limit": 2, "price": 2, "quantity": 1, "duplicate order_id": 1,
        "something new": 1}
    assert reject_kind("") == "no reason"


def test_percentiles_and_the_table_best_first():
    assert percentile([], 50) is None
    assert percentile([5, 1, 3, 2, 4], 50) == 3 and percentile(range(1, 101), 99) == 99
    tally = Tally(["low", "high"])
    tally.add([fill(1, "high", "1", "BUY", 10, "X", 10.0, 10.0)])
    text = table(tally.summary({"X": 11.0}))
    lines = text.splitlines()
    assert lines[0].split()[0] == "strategy" and lines[1].startswith("high") and lines[2].startswith("low")


def test_the_random_traders_seed_is_stable_and_its_own():
    a = Config(strategy_id="r1")
    assert seed_of(a) == seed_of(Config(strategy_id="r1"))
    assert seed_of(a) != seed_of(a.replace(strategy_id="r2")) != seed_of(a.replace(seed=7))


# -- whole matches ------------------------------------------------------------------------

def run_match(out, *args, timeout=90):
    """`hftlab match` as a script runs it, marked so that whatever it leaves can be found."""
    token = secrets.token_hex(8)
    env = {**os.environ, MARKER: token}
    result = subprocess.run([sys.executable, "-m", "hftlab", "match", "--fast", "--symbols", "AAPL,MSFT",
                             "--out", str(out), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=timeout)
    left = wait_until_gone(token, timeout=5)
    assert not left, f"the match left processes behind: {left}"
    return result


def read_outputs(out):
    summary = json.loads((out / "summary.json").read_text())
    with open(out / "match_events.csv") as f:
        events = list(csv.DictReader(f))
    with open(out / "scoreboard.csv") as f:
        board = list(csv.DictReader(f))
    assert not os.path.exists(f"/dev/shm/{summary['match']['book']}"), "the book was left behind"
    return summary, events, board


def test_a_match_of_three_writes_its_files_and_scoreboard(tmp_path):
    out = tmp_path / "m"
    result = run_match(out, "--entry", "a=ours", "--entry", "b=slow:100", "--entry", "r=random",
                       "--duration", "6")
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("match_events.csv", "scoreboard.csv", "pnl.png", "summary.json"):
        assert (out / name).stat().st_size > 0, name
    summary, events, board = read_outputs(out)
    strategies = summary["strategies"]
    assert set(strategies) == {"a", "b", "r"}
    assert strategies["a"]["fills"] > 0
    for name, s in strategies.items():
        assert s["status"] == "finished", (name, s["status"])
        if not s["rejects"]:  # every booked order filled
            assert s["orders"] == s["fills"]
    fills = [e for e in events if e["kind"] == "fill"]
    assert fills and all(e["fill_price"] and e["book_seq"] for e in fills)
    assert {row["strategy"] for row in board} == {"a", "b", "r"}
    table_lines = result.stdout.split("strategy", 1)[1].splitlines()
    for name in ("a", "b", "r"):
        assert any(line.split()[:1] == [name] for line in table_lines), result.stdout


def test_entries_that_never_start_or_die_are_said_and_the_others_play_on(tmp_path):
    out = tmp_path / "m"
    result = run_match(out, "--entry", "a=ours", "--ready-timeout", "3", "--duration", "4",
                       "--entry", "gone=cmd:python -c pass",
                       "--entry", "asleep=cmd:python -c 'import time; time.sleep(60)'",
                       "--entry", "brief=cmd:python -c \"print('brief: ready: now', flush=True); "
                                  'import time; time.sleep(0.5)"')
    assert result.returncode == 0, result.stdout + result.stderr
    summary, _, board = read_outputs(out)
    status = {name: s["status"] for name, s in summary["strategies"].items()}
    assert status["a"] == "finished" and summary["strategies"]["a"]["fills"] > 0
    assert status["gone"].startswith("never ready: ") and "before it was ready" in status["gone"]
    assert status["asleep"].startswith("never ready: ") and "not ready within 3 s" in status["asleep"]
    assert status["brief"].startswith("died at ") and "exited with status 0" in status["brief"]
    assert summary["match"]["ended"] == "4 s are up"
    assert {row["strategy"] for row in board} == {"a", "gone", "asleep", "brief"}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_match_without_an_end_stops_cleanly_on_a_signal(tmp_path, sig):
    out, token = tmp_path / "m", secrets.token_hex(8)
    proc = subprocess.Popen([sys.executable, "-m", "hftlab", "match", "--fast", "--symbols", "AAPL",
                             "--out", str(out), "--entry", "a=ours"], cwd=ROOT, env={**os.environ, MARKER: token},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        Output(proc).until(lambda text: "started" in text, 30, "start")
        board = out / "scoreboard.csv"
        wait_for(lambda: board.read_text().count("\n") >= 3, 10, "scoreboard rows")
        proc.send_signal(sig)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not wait_until_gone(token, timeout=5)
    summary, _, _ = read_outputs(out)
    assert summary["match"]["ended"] == "stopped" and summary["strategies"]["a"]["status"] == "finished"
