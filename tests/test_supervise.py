"""Supervision: `hftlab run` (and `Launcher.supervise`) restarts a dead process and leaves
the others alone; one that keeps dying is given up on; --no-restart stops everything.
Also: the run folder and its logs are the user's alone."""

import os
import re
import signal
import stat
import subprocess
import sys

import pytest

from conftest import Output, wait_for
from hftlab import book
from hftlab.book import pid_alive
from hftlab.journal import JOURNAL_COLUMNS
from hftlab.launcher import NAMES, GaveUp, Launcher

RUNNING = re.compile(r"^hftlab: running \((.*?)\)\. .* orders 127\.0\.0\.1:(\d+)", re.M)


def hftlab_run(run_dir, *flags):
    """A real `hftlab run`, its output (stdout and stderr) and the pids it started."""
    popen = subprocess.Popen([sys.executable, "-m", "hftlab", "run", "--fast", "--free-ports",
                              "--run-dir", str(run_dir), *flags],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = Output(popen)
    try:
        m = out.until(RUNNING.search, 60, "the running line")
    except BaseException:
        stop(popen)
        raise
    pids = {name: int(pid) for name, pid in (item.split() for item in m.group(1).split(", "))}
    assert set(pids) == set(NAMES)
    return popen, out, pids


def stop(popen):
    if popen.poll() is None:
        popen.kill()
        popen.wait()


def break_the_journal(path):
    """Make every further order manager start fail: its journal path becomes a directory.
    The running one keeps writing to the file it opened, now under another name."""
    os.replace(path, f"{path}.moved")
    os.mkdir(path)


def test_hftlab_run_restarts_each_killed_process_and_leaves_the_others_alone(tmp_path):
    run, out, pids = hftlab_run(tmp_path)
    try:
        for name in NAMES:
            others = {n: p for n, p in pids.items() if n != name}
            os.kill(pids[name], signal.SIGKILL)
            m = out.until(re.compile(rf"^hftlab: restarted {name} as pid (\d+) ", re.M).search, 30,
                          f"the restart of {name}")
            new = int(m.group(1))
            assert new != pids[name] and pid_alive(new)
            assert all(pid_alive(p) for p in others.values())      # the very same processes
            assert re.search(rf"^hftlab: {name} \(pid {pids[name]}\) was killed by SIGKILL; "
                             rf"restarting it in [\d.]+ s\. The end of its log:\n\S+ ", out.text, re.M)
            pids[name] = new
        # Still trading after all four restarts: a new order manager confirms new orders.
        out.until(lambda text: re.search(r"ACK \S+ is order \d+", text.rsplit("restarted strategy", 1)[1]),
                  30, "an order of the restarted strategy confirmed")
        run.send_signal(signal.SIGTERM)              # stops everything cleanly, as Ctrl-C does
        assert run.wait(30) == 0
        out.until(lambda text: "hftlab: stopped." in text, 10, "the stopped line")
    finally:
        stop(run)
    assert "gave up" not in out.text and "Traceback" not in out.text
    assert not any(pid_alive(p) for p in pids.values())
    for name in NAMES:
        assert re.search(rf"^{name} +\| \S+ stopped$", out.text, re.M), name


def test_hftlab_run_gives_up_on_a_process_that_keeps_dying_and_stops_everything(tmp_path):
    run, out, pids = hftlab_run(tmp_path)
    try:
        break_the_journal(tmp_path / "orders.csv")
        os.kill(pids["order_manager"], signal.SIGKILL)
        assert run.wait(60) == 1
        out.until(lambda text: "hftlab: stopped." in text, 10, "the stopped line")
    finally:
        stop(run)
    # Killed once, then two restarts that failed, each reported; the third failure is the
    # fourth death within a minute.
    assert out.text.count("hftlab: order_manager (pid") == 3
    assert out.text.count("exited with status 2 before it was ready; restarting it in") == 2
    assert "hftlab: restarted" not in out.text
    assert re.search(r"^hftlab: order_manager died 4 times within 60 s \(last: exited with status 2 "
                     r"before it was ready\); gave up on it and stopped everything\. The end of its log",
                     out.text, re.M)
    assert "not a regular file" in out.text                      # why, from the end of its log
    assert not any(pid_alive(p) for p in pids.values())


def test_hftlab_run_no_restart_stops_everything_when_one_dies(tmp_path):
    run, out, pids = hftlab_run(tmp_path, "--no-restart")
    try:
        os.kill(pids["strategy"], signal.SIGKILL)
        assert run.wait(30) == 1
        out.until(lambda text: "hftlab: stopped." in text, 10, "the stopped line")
    finally:
        stop(run)
    assert "hftlab: strategy stopped unexpectedly with status -9" in out.text
    assert "hftlab: --no-restart: stopping everything." in out.text
    assert "restarted" not in out.text
    assert not any(pid_alive(p) for p in pids.values())


def test_launcher_supervise_restarts_then_gives_up(fast_config, tmp_path):
    with Launcher(fast_config, free_ports=True, max_restarts=1) as lab:
        before = {n: c.pid for n, c in lab.children.items()}
        assert lab.supervise() == []                                  # nothing to do
        lab.kill("strategy")
        events = []
        wait_for(lambda: events.extend(lab.supervise()) or any(e.kind == "restarted" for e in events),
                 20, "the strategy's restart")
        died, restarted = events
        assert (died.kind, died.name, died.pid) == ("died", "strategy", before["strategy"])
        assert "was killed by SIGKILL; restarting it in 0.5 s" in died.message
        assert (restarted.kind, restarted.name) == ("restarted", "strategy")
        assert restarted.pid == lab.pid("strategy") != before["strategy"]
        assert {n: lab.pid(n) for n in before if n != "strategy"} == \
            {n: p for n, p in before.items() if n != "strategy"}
        assert all(c.running() for c in lab.children.values())

        lab.kill("strategy")                      # the second death within the window: give up
        with pytest.raises(GaveUp, match=r"^strategy died 2 times within 60 s \(last: was killed by "
                                         r"SIGKILL\); gave up on it and stopped everything\."):
            lab.supervise()
        assert not any(c.running() for c in lab.children.values())
        assert lab.supervise() == []              # stopped on purpose: nothing to restart
    with pytest.raises(book.BookNotFound):
        book.SharedPriceBook.attach(lab.config.shm_name)


def test_the_run_folder_and_logs_are_the_users_alone(tmp_path):
    run_dir = tmp_path / "run"
    old_log = tmp_path / "old"
    old_log.mkdir()
    (old_log / "gateway.log").write_text("from an older run\n")
    (old_log / "orders.csv").write_text(JOURNAL_COLUMNS + "\n")    # an older run's journal, too
    for name in ("gateway.log", "orders.csv"):
        os.chmod(old_log / name, 0o644)
    for folder in (run_dir, old_log):
        with Launcher(names=("gateway", "order_manager"), free_ports=True, run_dir=str(folder)) as lab:
            assert lab.children["gateway"].running()
        for name in ("gateway.log", "orders.csv"):
            assert stat.S_IMODE(os.stat(folder / name).st_mode) == 0o600, name
    assert stat.S_IMODE(os.stat(run_dir).st_mode) == 0o700       # made by the launcher
    run, out, pids = hftlab_run(tmp_path / "cli")
    try:
        run.send_signal(signal.SIGINT)
        assert run.wait(30) == 0
    finally:
        stop(run)
    assert stat.S_IMODE(os.stat(tmp_path / "cli").st_mode) == 0o700
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "cli").iterdir()}
    assert set(modes) >= {f"{n}.log" for n in NAMES} | {"orders.csv"}
    assert set(modes.values()) == {0o600}, modes
