"""`hftlab bench` against the real processes: the structure and invariants of its results.

No timing thresholds here (speed depends on the machine; the bench prints figures): these
tests check that what it measures is consistent: every tick of the burst reached the book,
percentiles are ordered, counts agree with each other, the footprint is the book layout.
The fast PRICE decoding path it relies on must decode exactly as the line-by-line path.
"""

import json
import mmap
import os
import secrets
import socket
import subprocess
import sys
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import cmdline
from hftlab import book, children, cli, protocol
from hftlab.bench import baseline, burst, measure, runner, wakeups
from hftlab.config import Config
from hftlab.launcher import Launcher
from hftlab.bench.timed import LatencyLog

KEYS = ("throughput_ticks_per_s", "baseline_throughput_ticks_per_s", "gaps", "tick_to_trade_us",
        "baseline_tick_to_trade_us", "book_bytes", "book_mapped_bytes", "floor_tick_to_trade_us",
        "poll_floor_tick_to_trade_us", "poll_floor_cpu_cores", "doorbell", "fair_baseline_throughput_ticks_per_s",
        "stream_ceiling_ticks_per_s", "throughput_runs", "cpu_idle_cores", "targets")


def percentile_dicts(results):
    yield "tick_to_trade_us", results["tick_to_trade_us"]
    yield "baseline_tick_to_trade_us", results["baseline_tick_to_trade_us"]
    yield "floor_tick_to_trade_us", results["floor_tick_to_trade_us"]
    yield "poll_floor_tick_to_trade_us", results["poll_floor_tick_to_trade_us"]
    for name, p in results["hops_us"].items():
        yield name, p
    for name, p in results["baseline"]["hops_us"].items():
        yield "baseline " + name, p


def my_children():
    """Pids of live (not zombie) processes whose parent is this test process (ps: Linux and macOS)."""
    ps = subprocess.Popen(["ps", "-A", "-o", "pid=,ppid=,stat="], stdout=subprocess.PIPE, text=True)
    rows = ps.communicate()[0]
    return [int(pid) for pid, ppid, stat in (r.split()[:3] for r in rows.splitlines() if len(r.split()) >= 3)
            if int(ppid) == os.getpid() and not stat.startswith("Z") and int(pid) != ps.pid]


def test_quick_bench_json(tmp_path, capsys):
    path = tmp_path / "bench.json"
    # What ran before (multiprocessing's resource tracker, started by an earlier test's
    # SharedMemory, lives as long as this process) is not the bench's.
    before = set(my_children())
    assert cli.main(["bench", "--quick", "--json", str(path)]) == 0
    printed = capsys.readouterr().out
    assert "THROUGHPUT" in printed and "TICK-TO-TRADE" in printed
    r = json.loads(path.read_text())
    # The processes kept their files in RAM where there is a folder for it, said so, and
    # left nothing there.
    assert r["files_in"] == measure.files_dir()
    assert f"files: the journal and the logs in {r['files_in']}" in printed
    assert os.path.dirname(r["run_folder"]) == r["files_in"] and not os.path.exists(r["run_folder"])

    for key in KEYS:
        assert key in r, key
    # Every tick of the burst was written to the book, none lost, no gap.
    assert r["gaps"] == 0
    assert r["burst"]["gaps"] == 0 and r["burst"]["lost"] == 0
    assert r["burst"]["ticks"] == r["ticks"] == r["burst"]["last_seq"] - r["burst"]["first_seq"] + 1
    assert r["throughput_ticks_per_s"] > 0 and r["baseline_throughput_ticks_per_s"] > 0
    assert r["fair_baseline_throughput_ticks_per_s"] > 0
    assert r["stream_ceiling_ticks_per_s"] == r["baseline_throughput_ticks_per_s"]  # its older name
    # At least 3 bursts, each a new one (its seqs after the last's), summed up as min/median/max.
    runs = r["throughput_runs"]
    assert runs["n"] >= 3 and len(runs["ticks_per_s"]) == len(runs["seqs"]) == runs["n"]
    assert runs["min"] <= runs["median"] <= runs["max"] and runs["median"] == r["throughput_ticks_per_s"]
    assert min(runs["ticks_per_s"]) == runs["min"] and max(runs["ticks_per_s"]) == runs["max"]
    assert all(last - first + 1 == r["ticks"] for first, last in runs["seqs"])
    assert all(b[0] > a[1] for a, b in zip(runs["seqs"], runs["seqs"][1:])), runs["seqs"]
    assert runs["gaps"] == 0 and runs["lost"] == 0
    # CPU per process, idle and paced: every process, a share of a core (n/a off Linux).
    cpu = r["cpu_idle_cores"]
    for phase in ("idle", "paced"):
        assert set(cpu[phase]) == {"gateway", "orderbook", "strategy", "order_manager"}, cpu
        assert all(v is None if sys.platform != "linux" else v >= 0 for v in cpu[phase].values()), cpu
    # The targets are reported (never asserted here): each with its figure and verdict.
    assert set(r["targets"]) == set(runner.TARGETS)
    assert all(t["met"] in (True, False, None) and t["target"] for t in r["targets"].values())
    assert "TARGETS" in printed and "fair baseline" in printed and "stream ceiling" in printed

    for name, p in percentile_dicts(r):
        assert p["n"] > 0, f"{name} has no samples"
        assert 0 <= p["p50"] <= p["p90"] <= p["p99"] <= p["max"], (name, p)

    # Counts agree: one gateway->book and one book->strategy sample per tick the strategy
    # saw; one decision and one tick-to-trade sample per order of the paced window.
    s = r["strategy"]
    assert r["hops_us"]["gateway_to_book"]["n"] == r["hops_us"]["book_to_strategy"]["n"] == s["ticks_seen"]
    assert r["tick_to_trade_us"]["n"] == s["orders_in_window"]
    assert r["hops_us"]["order_to_om"]["n"] == r["hops_us"]["strategy_sends"]["n"] == s["orders_in_window"]
    # Each decision is timed from its own symbol's turn: waits + decides, one each an order.
    # (The per-order hops, aligned, adding up exactly to each order's tick-to-trade, are raw
    # samples: bench() keeps them out of the JSON;
    # test_the_per_order_hops_add_up_to_each_tick_to_trade checks them.)
    assert r["hops_us"]["strategy_waits"]["n"] == r["hops_us"]["strategy_decides"]["n"] >= s["orders_in_window"]
    assert 0 < s["ticks_seen"] <= s["ticks_sent"] and s["ticks_missed"] >= 0
    # Every order the order manager journalled is one the strategy logged deciding.
    assert 0 < s["orders_journaled"] == s["journaled_and_logged"] <= s["orders_logged"]
    base = r["baseline"]
    assert base["hops_us"]["source_to_shm"]["n"] == base["ticks_seen"] == r["baseline_tick_to_trade_us"]["n"]
    # The floor is the baseline that waits as the strategy waits (the doorbell, by default).
    assert r["doorbell"] is True and r["floor_tick_to_trade_us"] == r["baseline_tick_to_trade_us"]

    # The footprint is the book's layout, and the mapping is whole pages.
    assert r["book_bytes"] == book.layout_nbytes(r["n_symbols"])
    assert r["book_mapped_bytes"] % mmap.PAGESIZE == 0
    assert r["book_mapped_bytes"] >= r["book_bytes"]

    # Nothing left running.
    left = set(my_children()) - before
    assert not left, {pid: cmdline(pid) for pid in left}


def test_a_stop_inside_the_latency_logs_flush_never_writes_a_row_twice(tmp_path):
    # SIGTERM is a KeyboardInterrupt wherever it lands; in the flush of a block, the
    # strategy's close() used to write that block again (the bench then counted more
    # ticks seen than sent).
    path = tmp_path / "latency.csv"
    log = LatencyLog(str(path))
    real_flush, calls = log.file.flush, []

    def interrupted_flush():
        real_flush()
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt

    log.file.flush = interrupted_flush
    quote = book.Quote("AAPL", 100.0, 0, 1, 2, 1)
    try:
        for seq in range(1, LatencyLog.BLOCK + 1):
            log.add(quote._replace(seq=seq), 3, 0, "", 0)
    except KeyboardInterrupt:
        pass
    log.add(quote._replace(seq=LatencyLog.BLOCK + 1), 3, 0, "", 0)
    log.close()
    seqs = [int(line.split(",")[0]) for line in path.read_text().splitlines()[1:]]
    assert seqs == list(range(1, LatencyLog.BLOCK + 2))


LINE_PARTS = st.sampled_from([b"PRICE", b"HB", b"1", b"42", b"", b"-", b"AAPL", b"MSFT", b"aapl", b"1.5",
                              b"-2.25", b".5", b"1.", b"-.5", b"1e5", b"nan", b"+1", b"1_0", b" 1",
                              b"1.2.3", b"9" * 400, b"\xff", b"\r"])
GOOD = st.builds(lambda seq, ts, sym, cents: b"PRICE,%d,%d,%s,%d.%02d" % (seq, ts, sym, cents // 100, cents % 100),
                 st.integers(0, 10**12), st.integers(0, 2**63), st.sampled_from([b"AAPL", b"MSFT", b"Z.9"]),
                 st.integers(0, 10**7))
LINES = st.lists(st.one_of(GOOD, GOOD, st.lists(LINE_PARTS, max_size=7).map(b",".join)), min_size=2, max_size=8)


def as_comparable(items):
    return [(type(x).__name__, str(x) if isinstance(x, Exception) else tuple(x)) for x in items]


@settings(max_examples=400, deadline=None)
@given(LINES)
def test_fast_price_path_decodes_like_line_by_line(lines):
    # A chunk of several lines may take the column-wise PRICE path; one line at a time
    # always takes the careful path. Both must give the same messages and errors.
    one_by_one = protocol.Decoder()
    slow = [m for line in lines for m in one_by_one.feed(line + b"\n")]
    assert as_comparable(protocol.Decoder().feed(b"\n".join(lines) + b"\n")) == as_comparable(slow)


# -- the bare baseline ---------------------------------------------------------------------

def test_every_baseline_role_documents_its_own_options():
    for role in baseline.ROLES:
        out = subprocess.run([sys.executable, "-m", "hftlab.bench.baseline", role, "--help"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert f"baseline {role}" in out.stdout and "--" in out.stdout
        assert "RuntimeWarning" not in out.stderr  # run as __main__, never imported twice
    bad = subprocess.run([sys.executable, "-m", "hftlab.bench.baseline", "relay", "--port", "1", "--n", "0",
                          "--shm", "x"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--n: must be positive; got 0" in bad.stderr


def test_files_in_must_be_an_existing_folder(capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        cli.main(["bench", "--files-in", str(tmp_path / "nowhere")])
    assert exc.value.code == 2 and "--files-in must be an existing folder" in capsys.readouterr().err


def test_hftlab_bench_has_no_hidden_role_flags(capsys):
    try:
        cli.main(["bench", "--help"])
    except SystemExit as exc:
        assert exc.code == 0
    assert "--role" not in capsys.readouterr().out


def test_relay_versions_only_grow_as_the_books_do():
    # The relay's version words, read while it writes as fast as it can: each is one
    # 8-byte store, so a reader never sees one go back (struct.pack_into zero-fills first:
    # a reader then sometimes saw 0).
    n, lines = 4, 200_000
    srv = socket.create_server(("127.0.0.1", 0))
    name = "hftbench_" + secrets.token_hex(4)
    relay = subprocess.Popen([sys.executable, "-m", "hftlab.bench.baseline", "relay", "--port",
                              str(srv.getsockname()[1]), "--n", str(n), "--shm", name],
                             stdout=subprocess.PIPE, text=True)
    try:
        srv.settimeout(60)
        conn, _ = srv.accept()
        assert json.loads(relay.stdout.readline()) == {"shm": name}
        shm = book.open_untracked(name)
        u64 = shm.buf.cast("Q")
        words = [(baseline.HEAD + i * baseline.RECORD) // 8 for i in range(n)]

        def send():
            with conn:
                conn.sendall(b"".join(b"%d,%d\n" % (seq, seq) for seq in range(1, lines + 1)))

        sender = threading.Thread(target=send)
        sender.start()
        last, reads, backwards = [0] * n, 0, 0
        while not u64[0]:  # the relay sets the done word when the source has hung up
            for i, w in enumerate(words):
                v = u64[w]
                backwards += v < last[i]
                last[i] = v
            reads += 1
        sender.join()
        assert relay.wait(60) == 0
        # Every line was one odd and one even store on its record.
        assert [u64[w] for w in words] == [2 * (lines // n)] * n
        assert backwards == 0, f"{backwards} version loads went back in {reads} rounds"
        u64.release()
        shm.close()
    finally:
        children.terminate(relay, 5.0)  # already exited, unless the test failed
        relay.stdout.close()
        srv.close()
    assert not os.path.exists(f"/dev/shm/{name}") or sys.platform != "linux"


def test_the_per_order_hops_add_up_to_each_tick_to_trade(tmp_path):
    # The paced window is the seqs (seq_start, seq_end]: a row outside it (the tick of seq 1,
    # its order too) is left out whatever its time; each order's five hops add up exactly.
    from hftlab.order_manager import JOURNAL_COLUMNS
    log, journal = tmp_path / "latency.csv", tmp_path / "orders.csv"
    log.write_text(LatencyLog.COLUMNS + "\n"
                   "1,AAPL,5000,5100,5200,5300,s-1,0,5250,5350\n"     # before the window
                   "2,AAPL,1000,1100,1300,1500,s-2,0,1400,1560\n"
                   "3,MSFT,1000,1100,1300,0,,0,1300,0\n"
                   "4,MSFT,2000,2050,2100,2400,s-3,1,2300,2430\n"
                   "5,AAPL,2000,2050")                               # cut short by the stop
    journal.write_text(JOURNAL_COLUMNS + "\n1,5400,c,s-1,5000,BUY,1,AAPL,1.00,x\n"
                       "2,1900,c,s-2,1000,BUY,1,AAPL,1.00,x\n3,2500,c,s-3,2000,SELL,1,MSFT,1.00,x\n")
    config = Config(latency_log=str(log), journal=str(journal))
    out = runner._system_latency(config, 1, 4, 1.0)
    per_order, t2t = out["samples_ns"]["per_order"], out["samples_ns"]["tick_to_trade"]
    assert t2t == [900, 500]
    assert per_order == {"gateway_to_book": [100, 50], "book_to_strategy": [200, 50], "strategy_waits": [100, 200],
                         "strategy_decides": [100, 100], "strategy_sends": [60, 30], "order_to_om": [340, 70]}
    assert [sum(hops) for hops in zip(*per_order.values())] == t2t
    assert out["strategy"]["ticks_seen"] == 3 and out["strategy"]["ticks_sent"] == 3
    assert out["strategy"]["orders_in_window"] == 2 and out["strategy"]["rows"] == 4


def test_a_second_burst_asked_for_at_once_is_a_new_burst_not_the_first_again():
    # The gateway ignores a SIGUSR1 while a burst (or its quiet time) runs, and says so:
    # start_burst asks again until a new burst starts, and times that one by its own line.
    with Launcher(Config(bench_ticks=2000, tick_interval=3600.0, news_interval=3600.0), free_ports=True,
                  names=("gateway",)) as gw:
        child = gw.children["gateway"]
        first = runner.start_burst(child)
        second = runner.start_burst(child)   # at once: inside the first's burst or quiet time
        assert first[:2] == (first[0], first[0] + 1999) and second[0] == first[1] + 1, (first, second)
        assert second[2] > first[2]


def test_the_gateways_burst_line_is_read_back_by_its_own_parser():
    line = burst.burst_line(1000, 11, 1010, 1764087000123456789)
    assert burst.parse_burst_line(line) == (11, 1010, 1764087000123456789)
    assert burst.parse_burst_line("12:00:00.123 gateway: " + line) == (11, 1010, 1764087000123456789)
    assert burst.parse_burst_line("12:00:00.123 gateway: bench: burst sent in 0.1 s") is None


def test_the_bare_reader_says_when_the_gateway_has_subscribed_it():
    # The bench starts its burst only after this line, instead of looking for a word in the
    # gateway's log: the HELLO is sent as the gateway adds a subscriber to its feed.
    srv = socket.create_server(("127.0.0.1", 0))
    reader = subprocess.Popen([sys.executable, "-m", "hftlab.bench.baseline", "reader", "--port",
                               str(srv.getsockname()[1]), "--n", "3"], stdout=subprocess.PIPE, text=True)
    try:
        srv.settimeout(60)
        conn, _ = srv.accept()
        with conn:
            assert json.loads(reader.stdout.readline()) == {"connected": True}
            conn.sendall(protocol.encode(protocol.Hello("PRICE", "s1")))
            assert json.loads(reader.stdout.readline()) == {"subscribed": True}
            conn.sendall(b"1,AAPL,1.00,1\n2,AAPL,1.01,2\n")
            assert json.loads(reader.stdout.readline())["lines"] == 3
        assert reader.wait(60) == 0
    finally:
        children.terminate(reader, 5.0)  # already exited, unless the test failed
        reader.stdout.close()
        srv.close()


def test_the_wakeups_measure_every_loop_and_every_message_arrives():
    # A few messages per kind: structure and invariants only (the figures are the bench's).
    results = wakeups.measure_wakeups(messages=6, gap=0.002, rounds=2)
    assert set(results) == set(wakeups.KINDS) >= {"blocking", "thread", "timeout", "selectors", "asyncio-streams"}
    for kind, p in results.items():
        assert p["n"] == 6, kind                                   # every line was stamped
        assert 0 < p["p50"] <= p["p90"] <= p["p99"] <= p["max"], (kind, p)
    assert "asyncio-streams" in wakeups.report_wakeups(results)


def test_the_timed_strategy_trades_as_the_strategy_does(tmp_path):
    # TimedStrategy.trade is Strategy.trade with the time of each step: the same orders, in
    # the same bytes, for the same prices and news; and one latency row per price seen.
    import logging
    from hftlab import strategy
    from hftlab.bench.timed import TimedStrategy
    from hftlab.book import Quote

    class Sink:
        up = True

        def __init__(self):
            self.sent = []

        def send(self, data):
            self.sent.append(data)
            return True

        def close(self):
            pass

    config = Config(symbols=("AAPL", "MSFT"), short_window=2, long_window=4, shm_name=book.new_name(),
                    price_port=1, news_port=2, order_port=3, doorbell=False)
    quotes = [(Quote(s, 100 + k + (i * 0.5), 2 * k + i + 1, 1000 + k, 2000 + k, k + 1), 0)
              for k in range(12) for i, s in enumerate(config.symbols)]
    sent = {}
    timed = config.replace(latency_log=str(tmp_path / "l.csv"))
    for kind, cfg in ((strategy.Strategy, config), (TimedStrategy, timed)):
        trader = kind(cfg, logging.getLogger("timed_test"))
        trader.orders.close()
        trader.orders, trader.tag = Sink(), "t"
        trader.trader.on_news(80)
        for k in range(0, len(quotes), 2):          # one look at the book: a price of each symbol
            trader.trade(quotes[k:k + 2])
            for order_id in list(trader.trader.pending):
                trader.trader.on_ack(order_id)      # acknowledged: the next signal may trade
        sent[kind] = trader.orders.sent
        trader.close()
    assert sent[strategy.Strategy] and sent[strategy.Strategy] == sent[TimedStrategy]
    with open(tmp_path / "l.csv") as f:
        assert len(f.read().splitlines()) == 1 + len(quotes)
