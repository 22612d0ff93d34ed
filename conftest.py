"""Session-wide guard for the whole test run (tests and notebooks alike).

Whatever a test or a lesson starts, it must stop: at the end of the run no hftlab
process that the run started may still be running, no shared-memory book it created
may be left in /dev/shm, and no book's doorbell folder in the temp dir
(hftlab-bells-UID/<book>). A leak fails the run, naming what leaked.
"""

import os
import subprocess
import tempfile
import time

SHM = "/dev/shm"


def hftlab_processes() -> dict:
    """pid -> command line of every running hftlab process (gateway, orderbook, ...)."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    found = {}
    for line in out.splitlines():
        pid, _, args = line.strip().partition(" ")
        if " -m hftlab." in f" {args}" and "pytest" not in args:
            found[int(pid)] = args
    return found


def hftlab_segments() -> set:
    prefixes = ("hftlab_", "hftbench_")  # the book, and the benchmark's bare baseline
    return {n for n in os.listdir(SHM) if n.startswith(prefixes)} if os.path.isdir(SHM) else set()


def bell_folders() -> set:
    """The doorbell folders of books (one per book a reader slept on), for this user."""
    root = os.path.join(tempfile.gettempdir(), f"hftlab-bells-{os.geteuid()}")
    try:
        return {os.path.join(root, n) for n in os.listdir(root)}
    except OSError:
        return set()


def pytest_sessionstart(session):
    session.config._hftlab_before = (set(hftlab_processes()), hftlab_segments(), bell_folders())


def pytest_sessionfinish(session, exitstatus):
    procs_before, segs_before, bells_before = session.config._hftlab_before
    deadline = time.monotonic() + 10  # children exit on their own once their launcher is gone
    while True:
        procs = {p: a for p, a in hftlab_processes().items() if p not in procs_before}
        segs = hftlab_segments() - segs_before
        bells = bell_folders() - bells_before
        if not (procs or segs or bells) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    if procs or segs or bells:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        lines = [f"process {p} still running: {a}" for p, a in procs.items()]
        lines += [f"shared-memory segment left behind: {SHM}/{n}" for n in sorted(segs)]
        lines += [f"doorbell folder left behind: {path}" for path in sorted(bells)]
        if reporter:
            reporter.ensure_newline()
            reporter.write_sep("=", "the run left hftlab things behind", red=True)
            for line in lines:
                reporter.write_line(line)
        session.exitstatus = 1
