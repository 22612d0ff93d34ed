"""`hftlab.process`'s helpers for child processes and their logs: the one stop, the one tail,
the one follower of a log that another process is writing."""

import multiprocessing
import signal
import subprocess
import sys
import time

from hftlab import children

IGNORES_SIGTERM = ("import signal, sys, time\n"
                   "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                   "print('ready', flush=True)\n"
                   "while True: time.sleep(1)\n")


def test_terminate_stops_a_polite_child_with_sigterm():
    child = subprocess.Popen([sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(60)"],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline() == "ready\n"
    assert children.terminate(child, 10.0) == -signal.SIGTERM
    child.stdout.close()


def test_terminate_kills_a_child_that_ignores_sigterm():
    child = subprocess.Popen([sys.executable, "-c", IGNORES_SIGTERM], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline() == "ready\n"  # its SIGTERM handler is in place
    assert children.terminate(child, 0.2) == -signal.SIGKILL
    child.stdout.close()


def test_terminate_of_a_finished_child_returns_its_status():
    child = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    child.wait()
    assert children.terminate(child, 1.0) == 3


def _ignore_sigterm_and_sleep(ready):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    ready.set()
    time.sleep(60)


def test_terminate_stops_a_multiprocessing_child_too():
    # The comparisons' helper processes (hftlab.alternatives) are stopped the same way.
    ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    ready = ctx.Event()
    child = ctx.Process(target=_ignore_sigterm_and_sleep, args=(ready,), daemon=True)
    child.start()
    assert ready.wait(60)
    assert children.terminate(child, 0.2) == -signal.SIGKILL and not child.is_alive()
    polite = ctx.Process(target=time.sleep, args=(60,), daemon=True)
    polite.start()
    assert children.terminate(polite, 10.0) == -signal.SIGTERM


def test_tail_gives_the_last_lines_and_nothing_for_a_missing_file(tmp_path):
    path = tmp_path / "x.log"
    path.write_text("".join(f"line {i}\n" for i in range(20)))
    assert children.tail(str(path), 3) == "line 17\nline 18\nline 19\n"
    assert children.tail(str(tmp_path / "missing.log")) == ""


def test_new_lines_leaves_a_line_being_written_for_the_next_call(tmp_path):
    path = tmp_path / "x.log"
    path.write_bytes(b"old\n")
    start = path.stat().st_size
    with open(path, "ab") as f:
        f.write(b"one\ntw")
        f.flush()
        lines, offset = children.new_lines(str(path), start)
        assert lines == ["one"]
        f.write(b"o\nthree\n")
        f.flush()
        lines, offset = children.new_lines(str(path), offset)
        assert lines == ["two", "three"]
    assert children.new_lines(str(path), offset) == ([], offset)
