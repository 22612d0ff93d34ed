"""Signal dispositions inherited from whoever started us do not change what the processes do.

A background job of a non-interactive shell (a CI script, ``cmd &`` in a script, some
notebook front ends) starts with SIGINT and SIGQUIT ignored, and Python keeps an inherited
ignored SIGINT. The processes decide for themselves (see `hftlab.process`): SIGINT and
SIGTERM always stop them cleanly, and SIGPIPE is ignored whatever was inherited.
"""

import os
import re
import signal
import subprocess
import sys

import pytest

from conftest import Output, wait_for
from hftlab import book
from hftlab.process import parse_ready

# Sets the dispositions named on the command line, then execs the rest: an ignored signal
# stays ignored across exec, a handled one is reset to its default.
WRAPPER = ("import os, signal, sys\n"
           "n = int(sys.argv[1])\n"
           "for spec in sys.argv[2:2 + n]:\n"
           "    sig, how = spec.split('=')\n"
           "    signal.signal(getattr(signal, sig), getattr(signal, how))\n"
           "os.execv(sys.argv[2 + n], sys.argv[2 + n:])\n")

INHERITED = ["SIGINT=SIG_IGN", "SIGQUIT=SIG_IGN", "SIGPIPE=SIG_DFL", "SIGTERM=SIG_DFL"]


def start(module, *args):
    """One hftlab process started as a shell script's background job would be."""
    command = [sys.executable, "-c", WRAPPER, str(len(INHERITED)), *INHERITED,
               sys.executable, "-m", f"hftlab.{module}", *args]
    popen = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = Output(popen)
    ready = out.until(lambda text: next(filter(None, map(parse_ready, text.splitlines())), None),
                      20, f"the {module}'s ready line")
    return popen, out, ready


def dispositions(pid):
    """(ignored, caught) signal numbers of a running process, from /proc (Linux)."""
    fields = dict(line.split(":\t", 1) for line in open(f"/proc/{pid}/status").read().splitlines()
                  if ":\t" in line)
    as_set = lambda mask: {n for n in range(1, 65) if int(mask, 16) >> (n - 1) & 1}
    return as_set(fields["SigIgn"]), as_set(fields["SigCgt"])


def port_of(address):
    return address.rsplit(":", 1)[1]


def test_every_process_stops_on_sigint_even_when_it_inherited_sigint_ignored(tmp_path):
    shm = book.new_name()
    started = []
    try:
        gateway = start("gateway", "--price-port", "0", "--news-port", "0", "--tick-interval", "0.05")
        started.append(gateway)
        price, news = port_of(gateway[2]["price"]), port_of(gateway[2]["news"])
        manager = start("order_manager", "--order-port", "0", "--journal", str(tmp_path / "orders.csv"))
        started.append(manager)
        orders = port_of(manager[2]["orders"])
        started.append(start("orderbook", "--price-port", price, "--shm-name", shm))
        started.append(start("strategy", "--news-port", news, "--order-port", orders, "--shm-name", shm))
        for popen, _, _ in started:
            if os.path.exists(f"/proc/{popen.pid}/status"):   # Linux: read what the kernel says
                ignored, caught = dispositions(popen.pid)
                assert {signal.SIGINT, signal.SIGTERM} <= caught      # handled: a clean stop
                assert signal.SIGPIPE in ignored                      # a gone peer is an error, not a kill
                assert signal.SIGQUIT in ignored                      # left as inherited
        with book.SharedPriceBook.attach(shm) as price_book:
            wait_for(lambda: all(price_book.quotes().values()), 20, "prices in the book")
        for popen, out, _ in reversed(started):     # Ctrl-C in each terminal, the strategy first
            popen.send_signal(signal.SIGINT)
            assert popen.wait(20) == 0
            out.until(lambda text: re.search(r": stopped$", text, re.M), 10, "the 'stopped' line")
            assert "Traceback" not in out.text
        with pytest.raises(book.BookNotFound):     # the orderbook removed its book on the way out
            book.SharedPriceBook.attach(shm)
    finally:
        for popen, _, _ in started:
            if popen.poll() is None:
                popen.kill()
                popen.wait()
        book.remove_stale(shm)


def test_a_process_stops_on_sigterm_whatever_sigint_it_inherited(tmp_path):
    popen, out, _ = start("order_manager", "--order-port", "0", "--journal", str(tmp_path / "orders.csv"))
    try:
        popen.send_signal(signal.SIGTERM)
        assert popen.wait(20) == 0
        out.until(lambda text: re.search(r": stopped$", text, re.M), 10, "the 'stopped' line")
    finally:
        if popen.poll() is None:
            popen.kill()
            popen.wait()


def test_hftlab_run_stops_cleanly_when_its_output_pipe_is_closed(tmp_path):
    """`hftlab run | head`: Python ignores SIGPIPE, so the closed pipe is a BrokenPipeError;
    hftlab run stops everything as on Ctrl-C, without a traceback."""
    run = subprocess.Popen([sys.executable, "-m", "hftlab", "run", "--fast", "--free-ports",
                            "--run-dir", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    try:
        for line in run.stdout:
            if line.startswith("hftlab: running ("):
                break
        pids = [int(item.split()[1]) for item in line[len("hftlab: running ("):].split(")")[0].split(", ")]
        assert len(pids) == 4
        run.stdout.close()                   # what head does once it has its lines
        assert run.wait(30) == 0
        err = run.stderr.read()
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert "hftlab: the output pipe was closed; stopping." in err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    for pid in pids:                         # hftlab run stopped and reaped them before exiting
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


# A process whose run() has a destructor run exactly when the stop signal is handled: the
# handler's KeyboardInterrupt is raised inside the destructor, where Python drops it
# ("Exception ignored"). An orderbook on 3.13 once lost its SIGTERM that way, inside the
# import system's weakref callback, and ran on.
SWALLOWED = """\
import signal, sys, time
from hftlab import process

class StopLandsHere:
    def __del__(self):
        signal.raise_signal(signal.SIGTERM)   # handled at the next bytecode: in here
        for _ in range(100):
            pass

def run(config, log):
    process.ready(log, what="swallow")
    StopLandsHere()                           # its destructor runs (and drops the stop) now
    log.info("ran on after the stop was dropped")
    while True:
        time.sleep(0.05)

sys.exit(process.main("swallow", "a stop lands in a destructor", run, argv=[]))
"""


def test_a_stop_that_lands_in_a_destructor_is_delivered_again():
    popen = subprocess.Popen([sys.executable, "-c", SWALLOWED], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = popen.communicate(timeout=30)
    finally:
        if popen.poll() is None:
            popen.kill()
            popen.wait()
    assert "ran on after the stop was dropped" in out     # the first stop was really dropped
    assert popen.returncode == 0, out                     # the second one stopped it cleanly
    assert "stopped" in out and "Exception ignored" not in out, out
