"""Record and replay: tick files checked line by line, recorded from a live lab, replayed
deterministically through the real processes."""

import csv
import subprocess
import sys

import pytest

from conftest import wait_for
from hftlab import book, replay, rules
from hftlab.config import FAST, Config
from hftlab.launcher import Launcher
from hftlab.order_manager import read_journal

SYMBOLS = ("AAPL", "MSFT", "GOOGL", "AMZN")


def hftlab(*args, timeout=30):
    return subprocess.run([sys.executable, "-m", "hftlab", *args], capture_output=True, text=True,
                          timeout=timeout)


# -- parsing: good files ------------------------------------------------------------------

def test_a_recorded_file_parses_with_its_kinds_and_relative_times():
    text = ("time,kind,symbol,value\n"
            "1764087000.000000000,PRICE,AAPL,172.53\n"
            "1764087000.250000000,NEWS,,72\n"
            "1764087000.500000000,PRICE,MSFT,410.10\n")
    events = replay.parse(text, SYMBOLS)
    assert [(e.kind, e.symbol, e.value, e.line) for e in events] == [
        ("PRICE", "AAPL", 172.53, 2), ("NEWS", "", 72, 3), ("PRICE", "MSFT", 410.10, 4)]
    assert [round(e.at, 6) for e in events] == [0.0, 0.25, 0.5]


def test_a_learners_file_needs_only_time_symbol_price_in_any_order_with_iso_times():
    text = ("symbol,price,time\n"
            "AAPL,185.64,2024-01-02T09:30:00.000\n"
            "\n"
            "MSFT,370.87,2024-01-02T09:30:00.250Z\n")
    events = replay.parse(text, SYMBOLS)
    assert [(e.kind, e.symbol, e.value, e.line) for e in events] == [
        ("PRICE", "AAPL", 185.64, 2), ("PRICE", "MSFT", 370.87, 4)]
    assert [round(e.at, 6) for e in events] == [0.0, 0.25]


def test_rows_at_the_same_time_and_kind_go_in_one_batch():
    text = "time,symbol,price\n1,AAPL,1\n1,MSFT,2\n2,AAPL,3\n"
    assert [[e.line for e in b] for b in replay.batches(replay.parse(text, SYMBOLS))] == [[2, 3], [4]]


def test_the_shipped_sample_is_a_valid_recording():
    events = replay.load(replay.SAMPLE, SYMBOLS)
    kinds = {e.kind for e in events}
    assert kinds == {"PRICE", "NEWS"}
    assert {e.symbol for e in events if e.kind == "PRICE"} == set(SYMBOLS)


# -- parsing: bad files are one sentence with the line number -----------------------------

@pytest.mark.parametrize("text, expected", [
    ("", "is empty: a tick file needs a header line with time,symbol,price"),
    ("\n\n", "is empty"),
    ("time,symbol,price\n", "has a header but no rows: there is nothing to replay"),
    ("time,price\n1,172.5\n", "line 1: the header 'time,price' has no 'symbol' column"),
    ("when,symbol,value\n1,AAPL,1\n", "line 1: the header 'when,symbol,value' has no 'time' column"),
    ("time,symbol,price\n1,AAPL,172.5\n2,TSLA,250\n",
     "line 3: symbol 'TSLA' is not one of the lab's symbols (AAPL,MSFT,GOOGL,AMZN); pass --symbols"),
    ("time,symbol,price\n1,AAPL,172.5\n2,MSFT,410\n1.5,AAPL,172.6\n",
     "line 4: time 1.5 is earlier than line 3's; the rows must be in time order"),
    ("time,symbol,price\n1,AAPL,abc\n", "line 2: the price 'abc' is not a number"),
    ("time,symbol,price\n1,AAPL,nan\n", "line 2: the price 'nan' must be a positive number"),
    ("time,symbol,price\n1,AAPL,-3\n", "line 2: the price '-3' must be a positive number"),
    ("time,symbol,price\nnoon,AAPL,1\n", "line 2: time 'noon' is neither seconds"),
    ("time,symbol,price\n1,AAPL\n", "line 2 has 2 fields but the header has 3"),
    ("time,kind,symbol,value\n1,NEWS,,101\n", "line 2: the news sentiment '101' must be a whole number 0..100"),
    ("time,kind,symbol,value\n1,TRADE,AAPL,1\n", "line 2: kind 'TRADE' is neither PRICE nor NEWS"),
])
def test_a_bad_file_is_one_sentence_naming_the_line(text, expected):
    with pytest.raises(replay.ReplayError) as err:
        replay.parse(text, SYMBOLS, source="ticks.csv")
    message = str(err.value)
    assert message.startswith("ticks.csv") and expected in message, message
    assert "\n" not in message


def test_a_missing_file_is_a_replay_error(tmp_path):
    with pytest.raises(replay.ReplayError, match="cannot read the tick file .*nothere.csv"):
        replay.load(str(tmp_path / "nothere.csv"), SYMBOLS)


def test_a_bad_file_stops_the_gateway_and_hftlab_run_before_anything_starts(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("time,symbol,price\n1,AAPL,172.5\n2,AAPL,x\n")
    out = hftlab("gateway", "--replay", str(bad), "--price-port", "0", "--news-port", "0")
    assert out.returncode == 2
    assert f"cannot run: {bad} line 3: the price 'x' is not a number" in out.stdout
    assert "ready:" not in out.stdout and "Traceback" not in out.stdout + out.stderr
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    out = hftlab("run", "--replay", str(empty), "--free-ports", "--run-dir", str(tmp_path / "run"))
    assert out.returncode == 2
    assert f"{empty} is empty" in out.stderr
    assert "starting" not in out.stdout  # no process was started
    out = hftlab("run", "--speed", "-1", "--free-ports", "--run-dir", str(tmp_path / "run"))
    assert out.returncode == 2 and "speed must be 0 (as fast as possible) or positive" in out.stderr


# -- record -------------------------------------------------------------------------------

def test_record_writes_what_a_running_lab_sends(tmp_path):
    out_file = tmp_path / "rec" / "ticks.csv"
    with Launcher(Config(**FAST), free_ports=True, names=("gateway",)) as lab:
        c = lab.config
        out = hftlab("record", "--duration", "1.5", "--out", str(out_file),
                     "--price-port", str(c.price_port), "--news-port", str(c.news_port))
    assert out.returncode == 0, out.stdout + out.stderr
    rows = list(csv.DictReader(out_file.open()))
    assert list(rows[0]) == list(replay.COLUMNS)
    prices = [r for r in rows if r["kind"] == "PRICE"]
    news = [r for r in rows if r["kind"] == "NEWS"]
    # 1.5 s at a tick every 50 ms and news every 250 ms: whatever the machine's load, some.
    assert len(prices) >= len(SYMBOLS) and {r["symbol"] for r in prices} == set(SYMBOLS)
    assert news and all(r["symbol"] == "" and 0 <= int(r["value"]) <= 100 for r in news)
    assert f"wrote {len(prices)} prices and {len(news)} news to {out_file}" in out.stdout
    # What record writes, replay reads.
    assert len(replay.load(str(out_file), SYMBOLS)) == len(rows)


def test_record_without_a_lab_says_what_to_do(tmp_path):
    out = hftlab("record", "--duration", "1", "--out", str(tmp_path / "x.csv"),
                 "--price-port", "1", "--news-port", "2")
    assert out.returncode == 2
    assert "cannot reach the price feed at 127.0.0.1:1" in out.stdout and "is a lab running there?" in out.stdout
    assert not (tmp_path / "x.csv").exists()


# -- replay through the real processes -----------------------------------------------------

def test_replay_at_full_speed_sends_the_file_with_fresh_sequence_numbers(tmp_path):
    """--speed 0: everything, in order, numbered 1.. per feed, recorded back identically."""
    out_file = tmp_path / "again.csv"
    config = Config(**FAST, replay=replay.SAMPLE, speed=0)
    with Launcher(config, free_ports=True, names=("gateway",)) as lab:
        c = lab.config
        out = hftlab("record", "--duration", "3", "--out", str(out_file),
                     "--price-port", str(c.price_port), "--news-port", str(c.news_port))
        assert out.returncode == 0, out.stdout
        assert "replay: done, 480 prices and 24 news sent" in lab.log("gateway", 50)
    strip = lambda events: [(e.kind, e.symbol, e.value) for e in events]
    original = replay.load(replay.SAMPLE, SYMBOLS)
    again = replay.load(str(out_file), SYMBOLS)
    # Prices and news are two feeds: each keeps its own order (their interleaving is free).
    for kind in ("PRICE", "NEWS"):
        assert strip(e for e in again if e.kind == kind) == strip(e for e in original if e.kind == kind)


SHORT, LONG = FAST["short_window"], FAST["long_window"]
STEP = 0.075  # seconds between rows: each symbol ticks every 150 ms, far slower than the strategy looks


def scripted_file(path):
    """Two symbols that rise, hold and fall, and news that turns from bullish to bearish
    while every price holds still (so no decision depends on which arrives first).

    Cut after the row that triggers the last order: when that order is booked, the
    strategy has seen every tick. Returns (price rows, the orders the pure Trader makes)."""
    symbols, rows, t = ("AAPL", "MSFT"), [], 0.0
    rows.append((t, "NEWS", "", 80))
    paths = {}
    for s, p in zip(symbols, (100.0, 200.0)):
        up = [round(p * 1.005 ** i, 2) for i in range(12)]
        flat = [up[-1]] * 12
        down = [round(up[-1] * 0.995 ** i, 2) for i in range(1, 13)]
        paths[s] = up + flat + down
    for i in range(36):
        if i == 12 + LONG + 1:  # every moving average is flat by now
            rows.append((t + STEP / 2, "NEWS", "", 20))
        for s in symbols:
            t += STEP
            rows.append((t, "PRICE", s, paths[s][i]))
    trader = rules.Trader(symbols, SHORT, LONG)
    orders, last = [], None
    for n, (_, kind, s, v) in enumerate(rows):
        if kind == "NEWS":
            trader.on_news(v)
            continue
        d = trader.on_price(s, v)
        if d is not None:
            trader.sent(str(n), d)
            trader.on_ack(str(n))  # the ACK comes long before the next tick
            orders.append((d.side, d.qty, d.symbol, f"{d.price:.2f}"))
            last = n
    rows = rows[:last + 1]
    with open(path, "w") as f:
        f.write("time,kind,symbol,value\n")
        for t, kind, s, v in rows:
            f.write(f"{1000 + t:.3f},{kind},{s},{v}\n")
    return [r for r in rows if r[1] == "PRICE"], orders


def replay_once(tmp_path, name, ticks_file, n_prices, n_orders):
    latency = tmp_path / f"{name}-seen.csv"
    config = Config(**FAST, symbols=("AAPL", "MSFT"), replay=str(ticks_file), speed=1,
                    latency_log=str(latency))
    with Launcher(config, free_ports=True, run_dir=str(tmp_path / name)) as lab:
        c = lab.config
        rows = wait_for(lambda: (r := read_journal(c.journal)) and len(r) >= n_orders and r, 60,
                        f"{n_orders} booked orders")
        with book.SharedPriceBook.attach(c.shm_name) as price_book:
            wait_for(lambda: price_book.header()["updates"] >= n_prices, 10, "every price in the book")
            header, quotes = price_book.header(), price_book.quotes()
    seen = list(csv.DictReader(latency.open()))  # the strategy wrote it as it stopped
    return {"orders": [(r["side"], int(r["qty"]), r["symbol"], r["price"]) for r in rows],
            "updates": header["updates"], "gaps": header["gaps"],
            "last": {s: (q.seq, q.price) for s, q in quotes.items()},
            "seen": [(int(r["seq"]), r["symbol"], int(r["missed"])) for r in seen]}


def test_replay_is_deterministic_same_book_updates_same_orders(tmp_path):
    ticks_file = tmp_path / "scripted.csv"
    prices, expected = scripted_file(ticks_file)
    assert len(expected) >= 4, expected  # the script must make the strategy trade both ways
    first = replay_once(tmp_path, "first", ticks_file, len(prices), len(expected))
    second = replay_once(tmp_path, "second", ticks_file, len(prices), len(expected))
    # Every tick of the file reached the book, numbered 1.. in file order, and the
    # strategy saw each one (none conflated away), in the same order both times.
    want_seen = [(seq, s, 0) for seq, (_, _, s, _) in enumerate(prices, 1)]
    assert first["seen"] == second["seen"] == want_seen
    assert first["updates"] == second["updates"] == len(prices)
    assert first["gaps"] == second["gaps"] == 0
    last = {s: (seq, v) for seq, (_, _, s, v) in enumerate(prices, 1)}
    assert first["last"] == second["last"] == last
    # And so the same orders: the ones the pure Trader makes on the file.
    expected = [(side, qty, s, p) for side, qty, s, p in expected]
    assert first["orders"] == second["orders"] == expected
