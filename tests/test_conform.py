"""hftlab conform: our four processes pass their roles; broken ones fail the case they break;
a learner's command runs in the lab (Launcher commands=, hftlab run --strategy-cmd)."""

import json
import os
import re
import subprocess
import sys
import time

import pytest

from hftlab import conform
from hftlab.launcher import LaunchError, Launcher
from hftlab.children import wait_for

HERE = os.path.dirname(__file__)
FIXTURES = os.path.join(HERE, "fixtures")
STARTER = os.path.join(os.path.dirname(HERE), "hftlab", "starters", "strategy.py")
PY = sys.executable


def fixture(name):
    return [PY, os.path.join(FIXTURES, name)]


@pytest.mark.parametrize("role", conform.ROLES)
def test_our_process_passes_every_case_of_its_role(role):
    lines = []
    results = conform.check(role, [PY, "-m", f"hftlab.{role}"], out=lines.append)
    assert [r.number for r in results] == [c.number for c in conform.cases(role)]
    assert all(r.passed for r in results), "\n".join(lines)


@pytest.mark.parametrize("role,command,case", [
    ("gateway", fixture("broken_gateway_seq.py"), 3),
    ("orderbook", fixture("broken_orderbook_keeps_book.py"), 8),
    ("order_manager", fixture("broken_order_manager_numbers.py"), 7),
    ("strategy", fixture("broken_strategy_reads_feed.py"), 2),
    ("strategy", [PY, STARTER], 6),
    ("strategy", [PY, STARTER], 8),
    ("strategy", [PY, STARTER], 9),
])
def test_a_broken_process_fails_the_case_it_breaks(role, command, case):
    [result] = conform.check(role, command, case, out=lambda line: None)
    assert not result.passed and result.seen and result.hint
    assert f"{result.number:>2}  FAIL" in result.line()


def test_a_writer_without_the_seqlock_fails_case_3_for_its_torn_records():
    # For that reason and no other: an orderbook that crashed would fail case 3 too.
    [result] = conform.check("orderbook", fixture("broken_orderbook_torn.py"), 3, out=lambda line: None)
    assert not result.passed and "torn records in" in result.seen, result.line()


@pytest.mark.parametrize("role", conform.ROLES)
def test_each_starter_fails_the_cases_its_todos_name_and_passes_case_1(role):
    path = os.path.join(os.path.dirname(STARTER), f"{role}.py")
    todo = sorted({int(n) for n in re.findall(r"TODO case (\d+)", open(path).read())})
    assert todo, f"{role} starter has no TODO naming a case"
    for number in [1, *todo]:
        [result] = conform.check(role, [PY, path], number, out=lambda line: None)
        expected = number not in todo or (role, number) == ("strategy", 7)  # 7: once positions exist
        assert result.passed == expected, result.line()


def test_a_process_that_does_nothing_fails_every_case_within_bounded_time():
    t0 = time.monotonic()
    results = conform.check("order_manager", fixture("idle.py"), out=lambda line: None)
    assert results and not any(r.passed for r in results)
    assert time.monotonic() - t0 < sum(c.timeout for c in conform.cases("order_manager"))
    assert "could not connect" in results[0].seen


def test_a_process_that_never_becomes_ready_is_reported_once_and_the_rest_not_run(tmp_path):
    report = tmp_path / "report.json"
    proc = subprocess.run([PY, "-m", "hftlab", "conform", "gateway", "--json", str(report), "--",
                           *fixture("never_ready.py")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    lines = [l for l in proc.stdout.splitlines() if l.startswith("gateway ")]
    assert len(lines) == len(conform.cases("gateway"))
    assert "was not ready within" in lines[0] and "never_ready.py" in lines[0]
    assert "starting up, slowly" in lines[0]
    assert all("not run" in l for l in lines[1:])
    data = json.loads(report.read_text())
    assert data["failed"] == len(lines) and data["passed"] == 0


def test_cli_list_case_and_usage_errors():
    run = lambda *a: subprocess.run([PY, "-m", "hftlab", "conform", *a], capture_output=True,
                                    text=True, timeout=120)
    listed = run("strategy", "--list")
    assert listed.returncode == 0 and len(listed.stdout.splitlines()) == len(conform.cases("strategy"))
    assert run("nosuchrole", "--list").returncode == 2
    assert run("strategy").returncode == 2            # no command
    assert run("gateway", "--case", "99", "--", PY, "x.py").returncode == 2
    one = run("order-manager", "--case", "1", "--", PY, "-m", "hftlab.order_manager")
    assert one.returncode == 0 and "order_manager  1  pass" in one.stdout


def test_launcher_runs_a_learners_command_with_flags_and_environment(tmp_path):
    script = tmp_path / "show.py"
    script.write_text("import os, sys, time\n"
                      "print('args', ' '.join(sys.argv[1:]))\n"
                      "print('env', os.environ['HFTLAB_ORDER_PORT'], os.environ['HFTLAB_SHM_NAME'])\n"
                      # the SIGTERM handler before the ready line: the test may stop it at once
                      "import signal; signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
                      "print('mine: ready: ok', flush=True)\n"
                      "while True: time.sleep(1)\n")
    with Launcher(free_ports=True, names=("order_manager",),
                  commands={"order-manager": f"python {script}"}) as lab:
        port = lab.config.order_port
        assert port != 0
        log = wait_for(lambda: "env" in lab.log("order_manager") and lab.log("order_manager"), 10)
        assert f"--order-port {port}" in log and f"env {port} {lab.config.shm_name}" in log
        assert lab.kill("order_manager", 15) == 0


def test_a_learners_command_that_fails_is_one_sentence_naming_role_and_command(tmp_path):
    script = tmp_path / "bad.py"
    script.write_text("raise SystemExit('cannot find my config')\n")
    with pytest.raises(LaunchError) as info:
        Launcher(free_ports=True, names=("strategy",), commands={"strategy": [PY, str(script)]}).start()
    text = str(info.value)
    assert text.startswith("the strategy command") and "bad.py" in text and "cannot find my config" in text
    with pytest.raises(LaunchError, match="could not start"):
        Launcher(free_ports=True, names=("strategy",), commands={"strategy": ["/no/such/prog"]}).start()


def test_hftlab_run_with_the_starter_as_the_strategy(tmp_path):
    proc = subprocess.run([PY, "-m", "hftlab", "run", "--fast", "--free-ports", "--duration", "3",
                           "--run-dir", str(tmp_path / "run"), "--strategy-cmd", f"python {STARTER}"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "strategy      | my_strategy: ready: ok" in proc.stdout, proc.stdout


def test_supervise_restarts_a_learners_process_like_ours():
    from hftlab.config import FAST, Config
    with Launcher(Config(**FAST), free_ports=True, commands={"strategy": f"python {STARTER}"}) as lab:
        old = lab.pid("strategy")
        lab.kill("strategy")                         # SIGKILL: a crash
        events = []
        wait_for(lambda: events.extend(lab.supervise()) or any(e.kind == "restarted" for e in events),
                 20, "the restart")
        assert [e.kind for e in events] == ["died", "restarted"]
        assert lab.pid("strategy") != old and lab.status()["strategy"]["running"]
        assert lab.log("strategy", 400).count("my_strategy: ready: ok") == 2


def pid_gone(pid):
    """True once `pid` has exited (a zombie counts as gone: it runs no code)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_a_learners_command_that_ignores_its_lifeline_dies_with_the_launcher(tmp_path):
    """A notebook kernel killed under a running lab: the learner's process, which never
    looks at HFTLAB_LIFELINE_FD, is stopped by the keeper's watcher, and the watcher goes too."""
    script = tmp_path / "deaf.py"
    script.write_text("import os, signal, sys, time\n"
                      "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
                      "print('mine: ready: pid=%d' % os.getpid(), flush=True)\n"
                      "while True: time.sleep(1)\n")
    owner_code = ("import sys, time\n"
                  "from hftlab.launcher import Launcher\n"
                  "lab = Launcher(free_ports=True, names=('strategy',),\n"
                  f"               commands={{'strategy': [sys.executable, {str(script)!r}]}}).start()\n"
                  "print(lab.pid('strategy'), flush=True)\n"
                  "time.sleep(600)\n")
    owner = subprocess.Popen([PY, "-c", owner_code], stdout=subprocess.PIPE, text=True)
    try:
        command = int(owner.stdout.readline())
        watchers = [int(p) for p in os.listdir("/proc") if p.isdigit() and _parent(int(p)) == command]
        assert watchers, "the keeper left no watcher beside the command"
        assert not pid_gone(command)
    finally:
        owner.kill()                                # SIGKILL: no atexit, no clean stop
        owner.wait()
    wait_for(lambda: pid_gone(command), 15, "the learner's command to stop with its launcher")
    wait_for(lambda: all(map(pid_gone, watchers)), 15, "the watcher to exit")


def _parent(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
