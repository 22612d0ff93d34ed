"""Tests for hftlab.widgets, headless, against a real running system.

Each test takes conftest's `lab`: the four processes on free ports with a fresh book name,
stopped afterwards. The widgets are driven from code (their refresh methods, the tap's next(), the
buttons' click()), and what they show is checked against what the processes really did:
the gateway's seeded price walk, the shared memory itself, the process table.
"""

import html
import os
import re
import subprocess
import signal
import threading

import pytest

from conftest import wait_for
from hftlab import gateway, protocol, widgets
from hftlab.book import pid_alive
from hftlab.order_manager import read_journal

TIMEOUT = 60.0  # a deadline for a loaded 2-core machine, not a speed claim


@pytest.fixture(autouse=True)
def headless(monkeypatch):
    monkeypatch.setenv("HFTLAB_HEADLESS", "1")


def mapped(name):
    """Is the shared-memory segment `name` mapped into this process? (Linux: /proc; macOS: lsof)"""
    if os.path.exists("/proc/self/maps"):
        with open("/proc/self/maps") as f:
            return f"/dev/shm/{name}" in f.read()
    return name in subprocess.run(["lsof", "-p", str(os.getpid())], capture_output=True, text=True).stdout


def seeded_prices(config, seq):
    """The price the seeded gateway sends with sequence number `seq`, per symbol."""
    walk = gateway.PriceWalk(config.symbols, config.seed)
    n = len(config.symbols)
    tick = (seq - 1) // n + 1
    for _ in range(tick):
        prices = dict(walk.step())
    return prices


def parse_rows(text, symbols):
    """symbol -> (price, seq) from BookView.text()."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] in symbols and parts[1] != widgets.MISSING:
            out[parts[0]] = (float(parts[1]), int(parts[3]))
    return out


def test_book_view_text_shows_prices_that_advance(lab):
    symbols = lab.config.symbols
    view = widgets.BookView(lab, start=False)
    try:
        first = wait_for(lambda: len(parse_rows(view.text(), symbols)) == len(symbols) and
                           parse_rows(view.text(), symbols), what="a price for every symbol")
        later = wait_for(lambda: (lambda r: all(r[s][1] > first[s][1] for s in symbols) and r)(
            parse_rows(view.text(), symbols)), what="every symbol's seq to advance")
        for rows in (first, later):
            for symbol, (price, seq) in rows.items():
                # The price shown is the one the gateway sent with that seq.
                assert price == pytest.approx(seeded_prices(lab.config, seq)[symbol], abs=0.005)
        text = view.text()
        assert "feed UP" in text and "gaps 0" in text
        assert view.header["updates"] > 0
        assert all(not r.stale for r in view.rows)
    finally:
        view.close()
    assert not mapped(lab.config.shm_name)


def test_book_view_marks_prices_stale_when_the_gateway_stops(lab):
    view = widgets.BookView(lab, start=False, stale_after=60)
    try:
        wait_for(lambda: view.rows_now() and all(r.price is not None for r in view.rows), what="prices")
        assert not any(r.stale for r in view.rows)
        lab.kill("gateway", signal.SIGTERM)
        # The orderbook notices the silence, says the feed is DOWN, and the view shows it.
        wait_for(lambda: view.rows_now() and all(r.stale for r in view.rows), what="stale rows")
        assert "feed DOWN" in view.text()
    finally:
        view.close()


def test_live_loop_is_bounded_headless_and_releases_the_book(lab):
    view = widgets.BookView(lab, interval=0.05)
    assert view.live.running
    assert view.live.wait(TIMEOUT), "the headless loop did not end by itself"
    assert view.live.frames == widgets.HEADLESS_FRAMES
    assert view.live.error is None
    assert "headless" in view.live.status.value
    assert not mapped(lab.config.shm_name)  # released when the loop ended


def test_stop_button_ends_a_live_loop(lab, monkeypatch):
    monkeypatch.setenv("HFTLAB_HEADLESS", "")  # as in JupyterLab: runs for DURATION
    chart = widgets.PriceChart(lab, interval=0.1)
    try:
        wait_for(lambda: chart.live.frames >= 2, what="two frames")
        assert chart.live.running
        chart.live.button.click()
        assert not chart.live.running
        assert chart.live.status.value.startswith("<i>stopped")
        assert chart.png.startswith(b"\x89PNG") and chart.image.value == chart.png
    finally:
        chart.close()
    assert not mapped(lab.config.shm_name)


def test_chart_moving_averages_are_the_strategy_function():
    prices = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert widgets.moving_average_series(prices, 3) == [None, None, 2.0, 3.0, 4.0]


def test_wire_tap_next_returns_raw_bytes_that_decode_to_the_shown_message(lab):
    tap = widgets.WireTap.connect(lab, "price")
    try:
        hello = tap.next()
        assert hello.n == 1 and isinstance(hello.msg, protocol.Hello)
        assert hello.msg.feed == "PRICE" and hello.raw.endswith(b"\n")
        price = tap.next_of(protocol.Price)
        for step in (hello, price):
            assert protocol.decode(step.raw[:-1]) == step.msg
            tap.current = step
            tap._show()
            shown = tap.text()
            assert step.raw[:16].hex(" ") in shown  # the hex dump's first line
            for name, value in zip(step.msg._fields, step.msg):
                assert f"{name:<10} {value!r}" in shown
            assert html.escape(repr(step.msg[-1])) in tap.decoded_box.value
        assert price.msg.symbol in lab.config.symbols
        # The button steps exactly like next().
        before = tap.count
        tap.next_button.click()
        assert tap.count == before + 1 and tap.current.n == before + 1
    finally:
        tap.close()
    assert tap.sock.fileno() == -1


def test_wire_tap_on_the_order_port_sees_ack_fill_reject_and_error(lab):
    tap = widgets.WireTap.connect(lab, "orders")
    try:
        reader = widgets.FollowedBook(lab)
        quote = wait_for(lambda: reader.quotes()["AAPL"], what="an AAPL price")
        reader.close()
        sent = tap.send(protocol.Order("t1", quote.ts_ns, "BUY", 5, "AAPL", quote.price))
        assert sent == protocol.encode(protocol.Order("t1", quote.ts_ns, "BUY", 5, "AAPL", quote.price))
        ack = tap.next()
        assert isinstance(ack.msg, protocol.Ack) and ack.msg.order_id == "t1"
        fill = tap.next()                   # at the book's price when the order manager handled it
        assert isinstance(fill.msg, protocol.Fill) and (fill.msg.order_id, fill.msg.qty) == ("t1", 5)
        assert fill.msg.book_seq >= quote.seq and fill.msg.price > 0
        tap.send(protocol.Order("t2", quote.ts_ns, "BUY", 0, "AAPL", quote.price))
        reject = tap.next()
        assert isinstance(reject.msg, protocol.Reject) and "quantity" in reject.msg.reason
        tap.send(b"HELLO,there\n")
        error = tap.next()
        assert isinstance(error.msg, protocol.Error)
    finally:
        tap.close()


def test_wire_tap_replays_recorded_bytes_and_reports_bad_lines():
    data = b"HB,4,17\nNOPE\nNEWS,1,2,72\n"
    tap = widgets.WireTap.replay(data)
    steps = [tap.next(), tap.next(), tap.next()]
    assert b"".join(s.raw for s in steps) == data
    assert steps[0].msg == protocol.Heartbeat(4, 17)
    assert isinstance(steps[1].msg, protocol.ProtocolError)
    assert steps[2].msg == protocol.News(1, 2, 72)
    with pytest.raises(EOFError):
        tap.next()


def test_dashboard_buttons_really_stop_and_start_a_process(lab):
    dash = widgets.Dashboard(lab, start=False)
    try:
        old = lab.pid("strategy")
        dash.procs.buttons["strategy"]["stop"].click()
        assert not pid_alive(old), "the stop button left the strategy running"
        assert lab.status()["strategy"]["running"] is False
        assert dash.procs.buttons["strategy"]["start"].disabled is False
        assert "stopped (exit 0)" in dash.procs.text()

        dash.procs.buttons["strategy"]["start"].click()
        new = lab.pid("strategy")
        assert new != old and pid_alive(new) and lab.status()["strategy"]["running"]
        assert f"running  {new}" in dash.procs.text()

        gw = lab.pid("gateway")
        dash.procs.buttons["gateway"]["restart"].click()
        assert not pid_alive(gw) and pid_alive(lab.pid("gateway")) and lab.pid("gateway") != gw

        # A crash of the book's writer, then a start: the view finds the new book.
        book_pid = lab.pid("orderbook")
        dash.procs.buttons["orderbook"]["kill"].click()
        assert lab.status()["orderbook"]["returncode"] == -signal.SIGKILL
        assert not pid_alive(book_pid)
        dash.procs.buttons["orderbook"]["start"].click()
        assert "done" in dash.procs.note.value
        wait_for(lambda: dash.book.rows_now() and dash.book.header is not None and
                   dash.book.header["writer_pid"] == lab.pid("orderbook"), what="the new book")
    finally:
        dash.close()


def test_dashboard_shows_orders_news_and_stops_releasing_everything(lab):
    dash = widgets.Dashboard(lab, interval=0.1)
    try:
        assert dash.live.wait(TIMEOUT)
        assert dash.live.error is None
        wait_for(lambda: dash.refresh() or (dash.orders and dash.news.sentiment is not None),
                   what="an ACKed order and some news")
        assert all(o.reply.startswith(("ACK", "REJECT")) for o in dash.orders)
        journal = {r["order_no"]: r for r in read_journal(lab.config.journal)}
        acked = [o for o in dash.orders if o.reply.startswith("ACK")]
        assert acked
        for o in acked:  # each ACK shown is a booked order, with its client's order_id
            row = journal[o.reply.split()[1]]
            assert (o.order_id, o.side, o.qty, o.symbol, o.price) == \
                (row["order_id"], row["side"], row["qty"], row["symbol"], row["price"])
        text = dash.text()
        assert "sentiment" in text and "ACK" in text and "strategy" in text
        assert dash.chart.png.startswith(b"\x89PNG")
    finally:
        dash.close()
    assert not dash.live.running
    assert not dash.news.connected
    assert not mapped(lab.config.shm_name)
    assert not [t for t in threading.enumerate() if t.name.startswith("hftlab ")]


def test_wire_tap_follow_steps_by_itself_and_stops_headless(lab):
    tap = widgets.WireTap.connect(lab, "news")
    try:
        tap.follow()
        assert tap.live.wait(TIMEOUT), "the headless follow loop did not end by itself"
        assert tap.live.error is None
        assert tap.count >= widgets.HEADLESS_FRAMES  # one message a frame (HELLO, NEWS, ...)
        assert isinstance(tap.recent[0].msg, protocol.Hello)
        assert all(protocol.decode(s.raw[:-1]) == s.msg for s in tap.recent)
    finally:
        tap.close()


def test_a_failing_refresh_stops_the_loop_and_shows_the_error_without_printing(capfd):
    def broken():
        raise RuntimeError("the book went away")

    live = widgets.Live(broken, 0.01, "test loop").start()
    assert live.wait(TIMEOUT)
    assert isinstance(live.error, RuntimeError)
    assert "the book went away" in live.status.value
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_a_live_loop_stops_itself_after_its_duration_when_not_headless(monkeypatch):
    monkeypatch.setenv("HFTLAB_HEADLESS", "")
    calls = []
    live = widgets.Live(lambda: calls.append(1), 0.01, "test loop").start(duration=0.3)
    assert live.wait(TIMEOUT), "the loop outlived its duration"
    assert "stopped after 0.3 s" in live.status.value
    assert live.error is None and len(calls) == live.frames > 0
    assert live.button.disabled


def test_blotter_rows_join_the_logged_answers_with_the_journal():
    from hftlab import order_manager as om

    log = "\n".join([
        "10:00:00.001 order_manager: client 127.0.0.1:5 connected (1 now)",
        "10:00:00.002 order_manager: " + om.booked_line(1, protocol.Order("s-1", 1, "BUY", 10, "AAPL", 172.5)),
        "10:00:00.003 order_manager: "
        + om.rejected_line("s-2", "127.0.0.1:5", "quantity must be positive; got 0"),
        "10:00:00.004 strategy: " + om.booked_line(9, protocol.Order("x", 1, "BUY", 1, "AAPL", 1.0)),
        "Traceback (most recent call last):",
    ])
    journal = [{"order_no": "1", "order_id": "s-1"}]
    assert widgets.blotter_rows(log, journal) == [
        widgets.Blotter("10:00:00.002", "s-1", "BUY", "10", "AAPL", "172.50", "ACK 1"),
        widgets.Blotter("10:00:00.003", "s-2", "-", "-", "-", "-", "REJECT: quantity must be positive; got 0"),
    ]
    assert widgets.blotter_rows(log, journal, n=1)[0].order_id == "s-2"


def test_views_take_a_config_or_a_book_name_and_say_what_else_is_wrong(lab):
    by_config = widgets.BookView(lab.config, start=False)
    by_name = widgets.BookView(lab.config.shm_name, start=False)
    try:
        for view in (by_config, by_name):
            wait_for(lambda: view.rows_now() and all(r.price is not None for r in view.rows), what="prices")
            assert view.reader.name == lab.config.shm_name
        assert by_config.stale_after == 3 * max(lab.config.tick_interval, lab.config.heartbeat_interval)
    finally:
        by_config.close()
        by_name.close()
    tap = widgets.WireTap.connect(lab.config, "news")
    try:
        assert isinstance(tap.next().msg, protocol.Hello)
    finally:
        tap.close()
    with pytest.raises(TypeError, match="a Config, a book's name or a Launcher"):
        widgets.BookView(42, start=False)


def imports_of(path):
    """The top-level names of the modules a source file imports."""
    import ast

    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module)
    return names


def test_each_widget_module_imports_only_what_its_idea_needs():
    from pathlib import Path

    package = Path(widgets.__file__).parent
    uses = {p.stem: imports_of(p) for p in package.glob("*.py") if p.stem != "__init__"}
    assert [m for m, names in uses.items() if any(n.startswith("matplotlib") for n in names)] == ["chart"]
    assert [m for m, names in uses.items() if "hftlab.launcher" in names] == ["dashboard"]
    for path in package.glob("*.py"):  # views take what a Launcher holds, not a Launcher
        assert not re.search(r"isinstance\([^)]*Launcher", path.read_text()), path.name
