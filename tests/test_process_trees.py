"""A learner's command is a process tree, and prints what it likes: whatever it starts is
stopped with it, and however much it prints (with or without newlines) neither the disk nor
the launcher's memory pays for more than the log's limit."""

import io
import logging
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from conftest import peak_kb_until_exit, wait_for
from hftlab import children, process
from hftlab.config import FAST, Config
from hftlab.journal import read_journal
from hftlab.launcher import Launcher

PY = sys.executable

# A learner's program that starts a child of its own (a stubborn one ignores SIGTERM); the
# child writes its pid into a file once it is set up, and the program serves until SIGTERM.
PARENT = textwrap.dedent("""
    import signal, subprocess, sys, time
    setup = "signal.signal(signal.SIGTERM, signal.SIG_IGN); " if "stubborn" in sys.argv else ""
    subprocess.Popen([sys.executable, "-c", "import os, signal, sys, time; " + setup +
                      "open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(600)", sys.argv[1]])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("parent: ready: ok", flush=True)
    while True:
        time.sleep(1)
""")


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def parent(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    return script


def child_pid(path):
    return int(wait_for(lambda: path.exists() and path.read_text(), 10, "the child's pid"))


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc (Linux)")
@pytest.mark.parametrize("kind", ["plain", "stubborn"])
def test_what_a_learners_command_starts_stops_with_it(parent, tmp_path, kind):
    pid_file = tmp_path / "child.pid"
    lab = Launcher(free_ports=True, names=("strategy",),
                   commands={"strategy": ["python", str(parent), str(pid_file), kind]})
    try:
        lab.start()
        pid = child_pid(pid_file)
        assert alive(pid)
        child = lab.children["strategy"]
        lab.stop()
        assert not alive(pid)
        # A plain child goes with the group's SIGTERM; a stubborn one is left, found and killed.
        assert [p for p, _ in child.leftovers] == ([pid] if kind == "stubborn" else [])
        assert not child.forced
    finally:
        lab.close()


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc (Linux)")
def test_a_crashed_learners_command_does_not_leave_its_child_holding_on(parent, tmp_path):
    pid_file = tmp_path / "child.pid"
    with Launcher(free_ports=True, names=("strategy",),
                  commands={"strategy": ["python", str(parent), str(pid_file)]}) as lab:
        pid = child_pid(pid_file)
        os.kill(lab.pid("strategy"), signal.SIGKILL)          # a crash: its child gets nothing
        events = []
        wait_for(lambda: events.extend(lab.supervise()) or events, 20, "the death to be seen")
        assert events[0].kind == "died" and f"it left pid {pid} (" in events[0].message
        assert not alive(pid)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc (Linux)")
def test_a_launcher_killed_outright_takes_its_learners_whole_tree_with_it(parent, tmp_path):
    pid_file = tmp_path / "child.pid"
    owner_code = ("import sys, time\n"
                  "from hftlab.launcher import Launcher\n"
                  # its run folder in tmp_path: killed outright, it cannot remove a temporary one
                  f"lab = Launcher(free_ports=True, names=('strategy',), run_dir={str(tmp_path / 'run')!r},\n"
                  f"               commands={{'strategy': [sys.executable, {str(parent)!r}, {str(pid_file)!r},"
                  " 'stubborn']}).start()\n"
                  "print(lab.pid('strategy'), flush=True)\n"
                  "time.sleep(600)\n")
    owner = subprocess.Popen([PY, "-c", owner_code], stdout=subprocess.PIPE, text=True)
    try:
        command = int(owner.stdout.readline())
        pid = child_pid(pid_file)
    finally:
        owner.kill()                                         # SIGKILL: the keeper's watcher acts
        owner.wait()
        owner.stdout.close()
    wait_for(lambda: not alive(command) and not alive(pid), 20, "the command and its stubborn child to go")


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc (Linux)")
def test_hftlab_run_says_what_it_had_to_stop_and_how_to_fix_it(parent, tmp_path):
    pid_file = tmp_path / "child.pid"
    deaf = tmp_path / "deaf.py"
    deaf.write_text("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                    "print('deaf: ready: ok', flush=True)\nwhile True: time.sleep(1)\n")
    proc = subprocess.run(
        [PY, "-m", "hftlab", "run", "--fast", "--free-ports", "--duration", "2",
         "--run-dir", str(tmp_path / "run"), "--strategy-cmd", f"python {parent} {pid_file} stubborn",
         "--order-manager-cmd", f"python {deaf}"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert (f"hftlab: the order_manager command 'python {deaf}' was still running 5 s after SIGTERM and "
            "was killed (SIGKILL): make it exit on SIGTERM") in proc.stderr
    pid = int(pid_file.read_text())
    assert f"hftlab: the strategy command 'python {parent} {pid_file} stubborn' left pid {pid} (" in proc.stderr
    assert not alive(pid)


NOISY = ("import sys\nprint('noisy: ready: ok', flush=True)\n"
         "while True:\n    sys.stdout.write('x' * 65536)\n    sys.stdout.flush()\n")


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc (Linux)")
def test_a_command_that_prints_without_newlines_costs_a_bounded_log_and_bounded_memory(tmp_path):
    noisy = tmp_path / "noisy.py"
    noisy.write_text(NOISY)
    run_dir, output = tmp_path / "run", tmp_path / "output.txt"
    with open(output, "w") as out_file:      # a file, not a pipe: nobody must have to read it meanwhile
        proc = subprocess.Popen(
            [PY, "-m", "hftlab", "run", "--fast", "--free-ports", "--duration", "6", "--log-limit-mb", "1",
             "--run-dir", str(run_dir), "--strategy-cmd", f"python {noisy}"],
            stdout=out_file, stderr=subprocess.STDOUT)
    try:
        peak = peak_kb_until_exit(proc, 120, "hftlab run --duration 6")  # hftlab run's own peak
    finally:
        proc.kill()
        proc.wait()
    out = output.read_text(errors="replace")
    assert proc.returncode == 0, out[-2000:]
    log = run_dir / "strategy.log"
    size = log.stat().st_size
    assert size < 2**20 + 4096, size                       # 1 MiB of output, and one line about it
    assert "printed more than its log may keep (1 MiB, --log-limit-mb)" in log.read_text(errors="replace")
    assert "[... cut:" in out                              # shown, cut, in hftlab run's output
    assert peak < 250_000, f"hftlab run peaked at {peak} kB"  # the defect: 804 MB for a 255 MB log


def test_new_lines_gives_an_endless_line_cut_and_moves_on(tmp_path):
    path = tmp_path / "x.log"
    path.write_bytes(b"first\n" + b"y" * (5 * children.MAX_LINE))
    lines, offset = children.new_lines(str(path), 0)
    assert lines[0] == "first" and lines[1].startswith("y" * children.MAX_LINE + " [... cut:")
    assert offset == path.stat().st_size                   # read once, never again
    assert children.new_lines(str(path), offset) == ([], offset)


def test_tail_reads_only_the_end_of_a_huge_log(tmp_path):
    path = tmp_path / "x.log"
    with open(path, "wb") as f:
        f.write(b"z" * (50 * 2**20) + b"\nlast line\n")
    assert children.tail(str(path), 2).splitlines()[-1] == "last line"
    assert len(children.tail(str(path), 2)) < 2 * children.TAIL_LINE


def test_our_processes_logs_stop_at_their_limit_with_one_line_saying_so():
    out = io.StringIO()
    log = logging.getLogger("capped_test")
    handler = process.CappedHandler(out, limit=300)
    handler.setFormatter(logging.Formatter(process.LOG_FORMAT, datefmt="%H:%M:%S"))
    log.handlers[:], log.propagate = [handler], False
    for i in range(100):
        log.warning(f"line {i} " + "." * 40)
    lines = out.getvalue().splitlines()
    assert 2 <= len(lines) <= 7 and "reached its size limit (--log-limit-mb)" in lines[-1]
    assert all(process.parse_log_line(line) for line in lines)


def test_our_process_with_a_tiny_log_limit_keeps_running_and_its_log_stays_small():
    config = Config(**FAST, log_limit_mb=0.002)                 # 2 KiB: the strategy's lines pass it soon
    with Launcher(config, free_ports=True) as lab:
        path = lab.children["strategy"].log_path
        wait_for(lambda: "reached its size limit" in lab.log("strategy", 5), 30, "the strategy's cut line")
        size = os.path.getsize(path)
        booked = len(read_journal(lab.config.journal))
        wait_for(lambda: len(read_journal(lab.config.journal)) >= booked + 2, 30, "the strategy to trade on")
        assert os.path.getsize(path) == size
