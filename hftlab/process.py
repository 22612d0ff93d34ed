"""What every hftlab process has in common: flags, logging, a ready line, clean exits.

Each process module defines ``run(config, log)`` and calls `main` (a command with flags
of its own, such as ``hftlab record``, passes `add_arguments` and gets ``run(config, log,
args)``). `main` parses
the shared `Config` flags, logs with the process's name, turns SIGTERM into the same
clean exit as Ctrl-C, watches the launcher's *lifeline* (see `watch_lifeline`) and
turns a `Fatal` error into one sentence and exit status 2 instead of a traceback.

Signal dispositions, decided here rather than inherited by accident:

- SIGINT (Ctrl-C) and SIGTERM always stop the process cleanly (exit status 0, the book
  removed), even when they were inherited ignored. A background job of a shell script
  starts with SIGINT and SIGQUIT ignored (POSIX), and Python keeps an inherited ignored
  SIGINT; a lab process that then ignored Ctrl-C and the tests' SIGINT would go on
  trading. To keep a process out of reach of a terminal's Ctrl-C, start it in its own
  session (``setsid``), as the launcher does, rather than by ignoring SIGINT.
- A stop must not be lost. Python runs a signal handler between any two bytecodes,
  and an exception raised where Python cannot pass it on (a destructor, a weakref
  callback, such as the one the import system runs when a lazy import finishes) is
  printed as "Exception ignored" and dropped: the process would go on running after
  SIGTERM. `main` therefore stops it again when that happens, by SIGALRM (an alarm
  10 ms later, handled like SIGTERM), until the stop lands in ordinary code
  (`_stop_again_if_swallowed`).
- SIGHUP and SIGQUIT are left as inherited, so ``nohup`` keeps working.
- SIGPIPE is ignored (Python does that at start-up, whatever was inherited): a write to
  a peer that has gone raises BrokenPipeError / ConnectionResetError, which the servers
  handle per connection, instead of killing the process.
- SIGCHLD is not used: the processes start no children.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import re
import signal
import sys
import threading
from typing import NamedTuple

from hftlab import config as _config

__all__ = ["LIFELINE_ENV", "EXIT_FATAL", "Fatal", "LOG_FORMAT", "LogLine", "CappedHandler", "setup_logging",
           "ready", "parse_ready", "parse_log_line", "freeze_startup", "stop_on_signals", "watch_lifeline",
           "main"]

LIFELINE_ENV = "HFTLAB_LIFELINE_FD"
EXIT_FATAL = 2


class Fatal(Exception):
    """Something the process cannot work without; the message says what to do."""


# A log line: "14:03:07.123 strategy: the message". Written by `setup_logging`, read
# back by `parse_log_line` (kept side by side: change one, change the other).
LOG_FORMAT = "%(asctime)s.%(msecs)03d %(name)s: %(message)s"
_LOG_LINE = re.compile(r"(\d\d:\d\d:\d\d\.\d{3}) (\w+): (.*)")


class LogLine(NamedTuple):
    time: str  # HH:MM:SS.mmm, local time
    name: str  # the process that wrote it
    text: str  # the message


class CappedHandler(logging.StreamHandler):
    """A StreamHandler that writes at most `limit` bytes (None: no limit), then one line that
    says the log was cut, then nothing: a lab left running for days must not fill the disk."""

    def __init__(self, stream, limit: int | None = None):
        super().__init__(stream)
        self.left = limit

    def emit(self, record) -> None:
        if self.left is None:
            return super().emit(record)
        if self.left <= 0:
            return
        try:
            line = self.format(record) + self.terminator
            self.left -= len(line)
            if self.left <= 0:
                line = (f"{self.formatter.formatTime(record, '%H:%M:%S')}.{int(record.msecs):03d} {record.name}: "
                        "this log reached its size limit (--log-limit-mb); nothing more is written to it\n")
            self.stream.write(line)
            self.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)


def setup_logging(name: str, limit: int | None = None) -> logging.Logger:
    """The process's logger: lines in `LOG_FORMAT` on stdout, `limit` bytes at most."""
    # Line-buffered so a log file (the launcher's) shows each line as it happens.
    sys.stdout.reconfigure(line_buffering=True)
    handler = CappedHandler(sys.stdout, limit)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%H:%M:%S"))
    log = logging.getLogger(name)
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
    return log


def ready(log: logging.Logger, **facts) -> None:
    """Log the ready line. The launcher waits for it and reads the facts from it."""
    log.info("ready: " + " ".join(f"{k}={v}" for k, v in facts.items()))


def freeze_startup() -> None:
    """Freeze everything made until now (modules, numpy) out of the cyclic garbage collector's
    sight: it lives as long as the process, and a full collection then looks only at what came
    after. Unfrozen, one stalled a burst-fed orderbook for 17-21 ms (docs/performance.md)."""
    gc.collect()
    gc.freeze()


def parse_ready(line: str) -> dict | None:
    """The facts of a ready line written by `ready`, or None if it is not one."""
    _, sep, rest = line.partition(": ready: ")
    if not sep:
        return None
    return dict(item.split("=", 1) for item in rest.split() if "=" in item)


def parse_log_line(line: str) -> LogLine | None:
    """The time, process name and message of a line `setup_logging` wrote, or None if it
    is not one (a traceback's lines, say)."""
    m = _LOG_LINE.fullmatch(line)
    return LogLine(*m.groups()) if m else None


def watch_lifeline() -> None:
    """Exit cleanly when the process that launched us dies, however it dies.

    The launcher keeps the write end of a pipe and gives us the read end. Nobody ever
    writes to it: a read returns only when every write end is closed, which the kernel
    does when the launcher exits, even on SIGKILL. Works on Linux and macOS alike.
    """
    fd = os.environ.pop(LIFELINE_ENV, None)
    if fd is None:
        return

    def wait():
        try:
            while os.read(int(fd), 1):
                pass
        except OSError:
            pass
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=wait, name="lifeline", daemon=True).start()


def _stop_again_if_swallowed(unraisable) -> None:
    """sys.unraisablehook: a KeyboardInterrupt raised in a destructor or callback was
    dropped; deliver the stop again so it lands in ordinary code (see the module
    docstring). By an alarm 10 ms from now rather than a signal at once, which would be
    handled here, inside this hook, and dropped once more."""
    if issubclass(unraisable.exc_type, KeyboardInterrupt):
        signal.setitimer(signal.ITIMER_REAL, 0.01)
        return
    sys.__unraisablehook__(unraisable)


def main(name: str, description: str, run, add_arguments=None, argv=None) -> int:
    """Run a process: its flags, its log, its stops, its lifeline, then `run`; a `Fatal`
    error is one sentence and exit status 2.

    `add_arguments(parser)`, if given, adds the command's own flags; `run` then gets the
    parsed flags as a third argument."""
    config, args = _flags(name, description, add_arguments, argv)
    log = setup_logging(name, limit=config.log_limit_bytes())
    stop_on_signals()
    watch_lifeline()
    freeze_startup()
    try:
        # run returns on its own only when an asyncio server was stopped
        run(config, log, args) if add_arguments else run(config, log)
    except KeyboardInterrupt:
        pass
    except Fatal as exc:
        log.error(f"cannot run: {exc}")
        return EXIT_FATAL
    log.info("stopped")
    return 0


def _flags(name: str, description: str, add_arguments, argv) -> tuple:
    """(the Config, the parsed flags); a usage error exits with status 2, as argparse does."""
    parser = argparse.ArgumentParser(prog=f"hftlab {name}", description=description)
    if add_arguments:
        add_arguments(parser)
    _config.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return _config.from_args(args), args
    except ValueError as exc:
        parser.error(str(exc))


def stop_on_signals() -> None:
    """SIGTERM (the launcher's stop, `kill`) takes the same clean path as Ctrl-C, and Ctrl-C
    works even if SIGINT was inherited ignored (see the module docstring)."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGALRM, signal.default_int_handler)
    sys.unraisablehook = _stop_again_if_swallowed
