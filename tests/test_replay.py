"""Record and replay: tick files checked line by line, recorded from a live lab, replayed
deterministically through the real processes."""

import csv
import os
import pathlib
import shutil
import socket
import subprocess
import sys

import pytest

from conftest import wait_for
from hftlab import book, record, replay, rules
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


def test_a_spreadsheets_file_with_a_byte_order_mark_and_crlf_line_ends_replays(tmp_path):
    text = "time,symbol,price\r\n1,AAPL,185.64\r\n2,MSFT,370.87\r\n"
    assert [(e.symbol, e.line) for e in replay.parse("\ufeff" + text, SYMBOLS)] == [("AAPL", 2), ("MSFT", 3)]
    excel = tmp_path / "excel.csv"
    excel.write_text(text, encoding="utf-8-sig", newline="")  # what Excel's "CSV UTF-8" writes
    assert [(e.symbol, e.line) for e in replay.load(str(excel), SYMBOLS)] == [("AAPL", 2), ("MSFT", 3)]


def test_the_limits_themselves_are_allowed():
    first = f"0,AAPL,{replay.MAX_PRICE},"
    text = f"time,symbol,price,note\n{first}{'x' * (replay.MAX_LINE - len(first))}\n{replay.MAX_GAP},MSFT,1,\n"
    assert [(e.at, e.value) for e in replay.parse(text, SYMBOLS)] == [(0, replay.MAX_PRICE), (replay.MAX_GAP, 1)]


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
    ("time,kind,symbol,value\n1,NEWS,,\u00b2\n", "line 2: the news sentiment '\u00b2' must be a whole number"),
    # One row per line: a quoted field cannot hold a line break (the csv module would join the lines).
    ('time,symbol,price\n1,AAPL,"1\n2"\n', "line 2: a quoted field does not end on its line"),
    ('time,symbol,price\n1,AAPL,"1\r\n2"\n', "line 2: a quoted field does not end on its line"),
    ('time,symbol,price\n1,AAPL,"1\r2"\n', "line 2: a quoted field does not end on its line"),
    ('time,symbol,price\n1,AAPL,1\n2,AAPL,"3\n4\n5"\n', "line 3: a quoted field does not end on its line"),
    ('time,symbol,price\n1,AAPL,"12\n', "line 2: a quoted field does not end on its line"),
    ('time,symbol,"pri\nce"\n1,AAPL,1\n', "line 1: a quoted field does not end on its line"),
    ("time,symbol,price,note\n1,AAPL,1,\x00\n", "line 2 has a NUL character"),
    ("time,symbol,price\n1,AAPL,1e308\n", "line 2: the price '1e308' is more than 1,000,000,000"),
    ("time,symbol,price\n1,AAPL,1000000000.01\n", "line 2: the price '1000000000.01' is more than"),
    ("time,symbol,price\n1,AAPL,1\n1e300,AAPL,2\n", "line 3: time 1e300 is more than a day after line 2's"),
    ("time,symbol,price\n1,AAPL,1\n2,AAPL,1\n86402.5,AAPL,2\n",
     "line 4: time 86402.5 is more than a day after line 3's"),
])
def test_a_bad_file_is_one_sentence_naming_the_line(text, expected):
    with pytest.raises(replay.ReplayError) as err:
        replay.parse(text, SYMBOLS, source="ticks.csv")
    message = str(err.value)
    assert message.startswith("ticks.csv") and expected in message, message
    assert "\n" not in message


def test_a_line_longer_than_a_tick_files_lines_is_refused_with_its_number():
    text = "time,symbol,price\n1,AAPL,1\n2,AAPL," + "9" * (200 * 1024) + "\n3,AAPL,1\n"
    with pytest.raises(replay.ReplayError) as err:
        replay.parse(text, SYMBOLS, source="ticks.csv")
    assert str(err.value).startswith(f"ticks.csv line 3 is {7 + 200 * 1024} characters long, more than the "
                                     f"{replay.MAX_LINE} a tick file's line may have"), str(err.value)


def test_a_missing_file_is_a_replay_error(tmp_path):
    with pytest.raises(replay.ReplayError, match="cannot read the tick file .*nothere.csv"):
        replay.load(str(tmp_path / "nothere.csv"), SYMBOLS)


def load_in_a_child(path, pretend_regular=None):
    """What `replay.load(path)` says, run in a child bounded in time (10 s) and memory (1 GiB):
    a file that would hang it or fill memory fails the test instead of hanging the run or
    taking the machine's memory. `pretend_regular`: a regular file whose os.stat the child
    reports for `path`, as if a FIFO had been swapped in between a check and the open."""
    code = ("import os, resource, sys\n"
            "resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))\n"
            "from hftlab import replay\n"
            "path, regular = sys.argv[1:]\n"
            "stat = os.stat\n"
            "if regular:\n"
            "    os.stat = lambda p, *a, **k: stat(regular if p == path else p, *a, **k)\n"
            "try:\n"
            "    replay.load(path, ['AAPL'])\n"
            "except replay.ReplayError as exc:\n"
            "    print(exc)\n")
    try:
        out = subprocess.run([sys.executable, "-c", code, str(path), str(pretend_regular or "")],
                             capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail(f"replay.load({str(path)!r}) did not return within 10 s")
    assert out.returncode == 0 and out.stdout.count("\n") == 1, out.stdout + out.stderr
    return out.stdout.strip()


def refusal(path):
    """What replay.load says of `path`, which it must refuse."""
    with pytest.raises(replay.ReplayError) as err:
        replay.load(str(path), SYMBOLS)
    return str(err.value)


def test_a_device_a_directory_or_a_socket_is_refused_for_what_it_is(tmp_path):
    what_to_do = "not a file; give the path of a CSV file of ticks"
    # Read to its end, /dev/zero would fill memory: the child's limit makes that a failure, not a swap storm.
    said = load_in_a_child("/dev/zero")
    assert said == f"cannot read the tick file /dev/zero: it is a character device, {what_to_do}"
    assert refusal(tmp_path) == f"cannot read the tick file {tmp_path}: it is a directory, {what_to_do}"
    path = tmp_path / "s"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        assert refusal(path) == f"cannot read the tick file {path}: it is a socket, {what_to_do}"


def test_a_fifo_is_refused_at_once_even_one_swapped_in_after_a_check(tmp_path):
    fifo, regular = tmp_path / "fifo.csv", tmp_path / "regular.csv"
    os.mkfifo(fifo)
    regular.write_text("time,symbol,price\n1,AAPL,1\n")
    # open() of a FIFO waits for a writer: these would hang, and the child is killed after 10 s.
    expected = (f"cannot read the tick file {fifo}: it is a named pipe (FIFO), not a file; "
                "give the path of a CSV file of ticks")
    assert load_in_a_child(fifo) == expected
    assert load_in_a_child(fifo, pretend_regular=regular) == expected


def test_a_file_too_large_to_be_a_tick_file_is_refused_before_it_is_read(tmp_path):
    big = tmp_path / "big.csv"
    with big.open("wb") as f:
        f.truncate(replay.MAX_FILE_BYTES + 1)  # sparse: no disk space, and it would read as NULs
    assert refusal(big) == (f"cannot read the tick file {big}: it has {replay.MAX_FILE_BYTES + 1:,} bytes, more "
                              f"than a tick file may have ({replay.MAX_FILE_BYTES:,}, about 2.5 million rows); "
                              "replay a part of it")


def test_a_file_that_is_not_utf8_names_the_line(tmp_path):
    latin = tmp_path / "latin.csv"
    latin.write_bytes("time,symbol,price,note\r\n1,AAPL,1,ok\r\n2,AAPL,1,café\r\n".encode("latin-1"))
    assert refusal(latin) == (f"cannot read the tick file {latin}: line 3 is not UTF-8 text (byte 0xe9); "
                              'save it as UTF-8 ("CSV UTF-8" in a spreadsheet)')


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
    assert [p.name for p in out_file.parent.iterdir()] == ["ticks.csv"]  # the temporary file was moved there
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
    assert list(tmp_path.iterdir()) == []  # no x.csv, and no temporary file either


def record_to(out_file):
    """`hftlab record --out out_file` with no lab to record: what it says, and its exit status."""
    out = hftlab("record", "--duration", "1", "--out", str(out_file), "--price-port", "1", "--news-port", "2")
    return out.returncode, out.stdout + out.stderr


@pytest.mark.parametrize("out, why", [
    ("a directory", "it is a directory, not a file"),
    ("a FIFO", "it is a named pipe (FIFO), not a file"),
    ("under a file", "a part of its path is a file, not a directory"),
])
def test_record_to_a_place_it_cannot_write_says_so_before_it_records(tmp_path, out, why):
    out_file = tmp_path / "out.csv"
    if out == "a directory":
        out_file.mkdir()
    elif out == "a FIFO":
        os.mkfifo(out_file)
    else:
        (tmp_path / "file").write_text("")
        out_file = tmp_path / "file" / "out.csv"
    before = sorted(tmp_path.rglob("*"))
    status, said = record_to(out_file)
    # Said before it dials the gateway: without a lab it would otherwise say "cannot reach".
    assert status == 2 and f"cannot run: cannot write {out_file}: {why}; choose a file in a directory you " \
        "can write (nothing was recorded)" in said, said
    assert "cannot reach" not in said and "Traceback" not in said
    assert sorted(tmp_path.rglob("*")) == before  # no temporary file left behind


def test_record_writes_beside_the_real_file_and_keeps_its_permissions(tmp_path):
    real, link = tmp_path / "real.csv", tmp_path / "link.csv"
    real.write_text("an older recording\n")
    real.chmod(0o640)
    link.symlink_to(real)
    target, temporary = record.reserve(str(link))  # through the link, as open() would write
    assert target == str(real) and os.path.dirname(temporary) == str(tmp_path)
    assert oct(os.stat(temporary).st_mode & 0o777) == oct(0o640)
    umask = os.umask(0o022)
    try:
        target, fresh = record.reserve(str(tmp_path / "new" / "ticks.csv"))
    finally:
        os.umask(umask)
    assert oct(os.stat(fresh).st_mode & 0o777) == oct(0o644)  # what open() gives, not tempfile's 0600
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == [os.path.basename(fresh)]


def test_record_to_a_directory_or_file_without_write_permission_says_so_before_it_records(tmp_path, request):
    """Root may write anywhere: as root, the unprivileged peer (tests/peer.py) records instead."""
    if os.geteuid() == 0:
        from peer import shared_tmp
        peer, base = request.getfixturevalue("peer"), shared_tmp()
        tmp_path = pathlib.Path(base)

        def attempt(out_file):
            out = peer.python(["-m", "hftlab", "record", "--duration", "1", "--out", str(out_file),
                               "--price-port", "1", "--news-port", "2"])
            return out.returncode, out.stdout + out.stderr
    else:
        base, attempt = None, record_to
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    readonly = tmp_path / "readonly.csv"
    readonly.write_text("keep me\n")
    readonly.chmod(0o444)
    try:
        for out_file in (locked / "x.csv", readonly):
            status, said = attempt(out_file)
            assert status == 2 and f"cannot write {out_file}: Permission denied; choose a file in a directory " \
                "you can write (nothing was recorded)" in said, said
        assert readonly.read_text() == "keep me\n" and list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)
        if base:
            shutil.rmtree(base)


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
