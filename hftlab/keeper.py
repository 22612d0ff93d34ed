"""Run a learner's command so that it never outlives the launcher.

    python -m hftlab.keeper COMMAND [ARGS...]

Our own processes watch their lifeline themselves (`hftlab.process.watch_lifeline`): when
the launcher dies (a notebook kernel restarted, a test killed), they stop. A learner's
twenty-line script need not, so the launcher starts a learner's command through this
module, which keeps that promise for it:

1. It forks a *watcher*, a small child process that waits on the lifeline.
2. It then becomes the command (``exec``): same pid, same signals, same exit status,
   as if the launcher had started the command itself. Nothing sits in between.
3. The watcher wakes when the lifeline breaks, or once a second to see whether the
   command is still its parent. If the launcher has died while the command runs, it
   sends the command's whole process group SIGTERM (whatever the command started goes
   too), and SIGKILL after GRACE seconds to what is still there; if the command has
   exited, it just exits. The watcher leaves that group first (a group of its own), so
   that a signal to the group never stops the one process that must outlast it.

"Still its parent" is the safe test: a pid can be reused by an unrelated process once
its owner has gone, but the watcher's parent changes the moment the command exits.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import sys
import time

from hftlab import children, process

__all__ = ["GRACE", "main"]

GRACE = 5.0  # seconds between SIGTERM and SIGKILL, as the launcher allows on a stop


def _guard(command_pid: int, lifeline: int) -> None:
    """The watcher's whole life (it never returns to the caller's code)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C meant for the command
    try:
        group = os.getpgid(command_pid)
        os.setpgid(0, 0)  # out of the command's group: what stops the group must not stop us
        while os.getppid() == command_pid:
            ready, _, _ = select.select([lifeline], [], [], 1.0)
            if ready and not os.read(lifeline, 1):  # end of file: the launcher has died
                children.signal_group(group, signal.SIGTERM)
                deadline = time.monotonic() + GRACE
                while children.group_members(group) and time.monotonic() < deadline:
                    time.sleep(0.05)
                children.signal_group(group, signal.SIGKILL)
                break
    except OSError:
        pass
    finally:
        os._exit(0)  # no atexit handlers, no flushing of the command's buffers


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:
        print("usage: python -m hftlab.keeper COMMAND [ARGS...]", file=sys.stderr)
        return 2
    program = shutil.which(argv[0])
    if program is None:
        print(f"keeper: cannot run {argv[0]!r}: no such program, or it is not executable",
              file=sys.stderr)
        return 127
    fd = os.environ.get(process.LIFELINE_ENV)
    if fd is not None:
        command_pid = os.getpid()
        if os.fork() == 0:
            _guard(command_pid, int(fd))
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execv(program, argv)
    except OSError as exc:
        print(f"keeper: cannot run {argv[0]!r}: {exc.strerror or exc}", file=sys.stderr)
        return 127


if __name__ == "__main__":
    raise SystemExit(main())
