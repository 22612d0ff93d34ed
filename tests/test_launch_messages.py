"""What the launcher says when a process does not become ready: a sentence with the cause
a learner can act on (a full disk, a strategy that traded without saying it was ready),
and what `hftlab conform` costs in memory when the program under test prints for ever."""

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from conftest import peak_kb_until_exit
from hftlab.config import FAST, Config
from hftlab.journal import read_journal
from hftlab.launcher import LaunchError, Launcher

PY = sys.executable
STARTER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "hftlab", "starters",
                       "strategy.py")


def test_a_strategy_that_trades_without_its_ready_line_is_told_it_traded(tmp_path):
    # The starter, less its ready line: it trades all the same, unannounced.
    silent = tmp_path / "silent.py"
    silent.write_text(open(STARTER).read().replace('print("my_strategy: ready: ok", flush=True)', "pass"))
    with Launcher(Config(**FAST), free_ports=True, names=("gateway", "order_manager", "orderbook")) as lab:
        lab.commands, lab.typed = {"strategy": [PY, str(silent)]}, {"strategy": f"python {silent}"}
        lab.ready_timeout = 8.0
        with pytest.raises(LaunchError) as info:
            lab.start_one("strategy")
        booked = len(read_journal(lab.config.journal))
    text = str(info.value)
    assert f"the strategy command 'python {silent}' was not ready within 8 s" in text
    assert booked and f"Yet it traded: the order manager booked {booked} orders meanwhile" in text


FULL_DISK = textwrap.dedent("""
    import os, sys
    from hftlab.launcher import LaunchError, Launcher
    disk = sys.argv[1]
    run = os.path.join(disk, "run")
    os.mkdir(run)
    try:
        with open(os.path.join(disk, "filler"), "wb") as f:
            while True:
                f.write(b"x" * 4096)
                f.flush()
    except OSError:
        pass
    try:
        Launcher(free_ports=True, names=("gateway",), run_dir=run, ready_timeout=4).start()
    except LaunchError as exc:
        print(exc)
""")


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="needs root and unshare, for a full disk in a private mount namespace")
def test_a_process_that_cannot_write_its_log_on_a_full_disk_is_said_to_be_on_a_full_disk(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    script = tmp_path / "full.py"
    script.write_text(FULL_DISK)
    out = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                          'mount -t tmpfs -o size=256k hftlab-full "$1" && exec "$2" "$3" "$1"', "sh",
                          str(disk), PY, str(script)], capture_output=True, text=True, timeout=120)
    assert "gateway was not ready within 4 s" in out.stdout, out.stdout + out.stderr
    assert f"The disk holding {disk}/run is full" in out.stdout and "free some space" in out.stdout


NOISY = ("import sys\nprint('noisy: ready: ok', flush=True)\n"
         "while True:\n    sys.stdout.write('x' * 65536)\n    sys.stdout.flush()\n")


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc (Linux)")
def test_conform_on_a_program_that_prints_without_newlines_keeps_to_bounded_memory(tmp_path):
    noisy = tmp_path / "noisy.py"
    noisy.write_text(NOISY)
    with open(tmp_path / "out.txt", "w") as out:
        proc = subprocess.Popen([PY, "-m", "hftlab", "conform", "order-manager", "--case", "1", "--",
                                 PY, str(noisy)], stdout=out, stderr=subprocess.STDOUT)
    try:
        peak = peak_kb_until_exit(proc, 150, "conform")
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 1                         # it never answers an order: case 1 fails
    assert peak < 250_000, f"hftlab conform peaked at {peak} kB"  # the defect: 1,063 MB
