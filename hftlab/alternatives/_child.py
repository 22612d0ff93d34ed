"""One helper process of a comparison, and the pipe the measuring process talks to it by.

Every comparison runs its writer (or sender) in a process of its own. The pipe carries
small control messages and the child's own figures back (pickled: it links two of our
own processes and never crosses the lab's network protocol).

On Linux the child is forked: the ``spawn`` and ``forkserver`` start methods first start
multiprocessing's resource tracker, a helper process that then lives as long as the
caller does (a notebook kernel, a whole test run), and a measurement must leave no
process behind. A forked child only runs code of this package, which touches nothing it
inherited but its pipe and what is passed to it. Elsewhere (macOS, where forking a
process that has used system frameworks is unsafe) the child is spawned, and the
tracker stays until the caller exits.

`Child` always ends its process: on leaving a ``with`` block it waits for it to exit,
then terminates it, then kills it, so a failed or interrupted measurement leaves no
process behind.
"""

from __future__ import annotations

import multiprocessing
import sys
import traceback
import warnings

from hftlab import children

_CTX = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")


class AlternativesError(RuntimeError):
    """A comparison could not be measured; the message says which step failed and why."""


def _run(target, conn, args):
    # The child's entry point: any failure goes back to the parent as a message, so the
    # parent raises it with the child's own reason instead of waiting for a timeout.
    try:
        target(conn, *args)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, then the child ends
        try:
            conn.send(("error", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
        except OSError:
            pass
    finally:
        conn.close()


class Child:
    """A child process running ``target(conn, *args)``, with our end of its pipe."""

    def __init__(self, name: str, target, *args):
        self.name = name
        self.conn, theirs = _CTX.Pipe()
        self.proc = _CTX.Process(target=_run, args=(target, theirs, args), name=name,
                                 daemon=True)
        with warnings.catch_warnings():
            # Python 3.12+ warns that forking a process with threads (a notebook kernel
            # has some) may deadlock the child if it takes a lock a thread held; the
            # child here takes none of theirs (see the module docstring).
            warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)
            self.proc.start()
        theirs.close()

    def recv(self, timeout: float, what: str):
        """The child's next message; AlternativesError if it fails, dies or takes too long."""
        try:
            if not self.conn.poll(timeout):
                raise AlternativesError(f"the {self.name} process did not {what} within "
                                        f"{timeout:g} s; is the machine overloaded?")
            msg = self.conn.recv()
        except (EOFError, OSError):
            self.proc.join(1.0)
            raise AlternativesError(f"the {self.name} process exited (code "
                                    f"{self.proc.exitcode}) before it could {what}") from None
        if msg[0] == "error":
            raise AlternativesError(f"the {self.name} process failed: {msg[1]}\n{msg[2]}")
        return msg

    def check_alive(self, what: str) -> None:
        """Raise the child's error, or say it exited, if it has stopped before it could `what`."""
        if not self.proc.is_alive():
            while True:     # its last words: an error is raised, EOF says it exited
                self.recv(1.0, what)

    def poll(self) -> bool:
        """Has the child sent something (or gone)?"""
        return self.conn.poll(0)

    def send(self, *msg) -> None:
        try:
            self.conn.send(msg)
        except OSError:
            pass  # it has gone already: recv() or close() says what happened

    def close(self, timeout: float = 5.0) -> None:
        """Wait for the process to exit; terminate, then kill it if it does not."""
        self.proc.join(timeout)
        children.terminate(self.proc, 2.0)
        self.conn.close()
        self.proc.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close(timeout=5.0 if exc[0] is None else 0.5)


def percentiles_us(values_ns) -> dict:
    """p50, p90, p99, max (microseconds) and n, as `hftlab bench` reports them."""
    # Imported here, not at the top: a spawned child (macOS) imports this package and
    # need none of the bench's imports.
    from hftlab.bench.measure import percentiles
    return percentiles(values_ns)
