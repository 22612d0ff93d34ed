"""What every lesson's check shares: the verdict, running cases, and a time limit.

A check calls the learner's function on its cases through `call` (a crash becomes a
failed case that names it) or `bounded` (a loop that never ends becomes a hint, not a
hung cell), raises `Wrong` for the first case that fails, and `run_cases` prints the
verdict: ``All N cases pass``, ``not done yet`` (the stub still raises
NotImplementedError) or what is wrong and the hint.
"""

from __future__ import annotations

import ctypes
import threading

__all__ = ["Verdict", "Wrong", "DidNotReturn", "run_cases", "call", "expect", "bounded"]


class Verdict:
    """What a check returns: true if every case passed.

    It shows nothing in a notebook (the check has already printed its verdict), so a
    check cell's output is just that sentence.
    """

    def __init__(self, passed: bool):
        self.passed = passed

    def __bool__(self):
        return self.passed

    def __repr__(self):
        return f"Verdict(passed={self.passed})"

    def _ipython_display_(self):
        pass


class Wrong(Exception):
    """One case failed: the message says which and gives the hint."""


def run_cases(name, fn, cases, judge):
    """Run judge(fn, case) for each case; print and return the verdict."""
    try:
        for case in cases:
            judge(fn, case)
    except NotImplementedError:
        print(f"not done yet: complete {name} above, then run this cell again.")
        return Verdict(False)
    except Wrong as wrong:
        print(f"{name} is not right yet: {wrong}")
        return Verdict(False)
    print(f"All {len(cases)} cases pass")
    return Verdict(True)


def call(fn, *args):
    """fn(*args), turning a crash (other than NotImplementedError) into a Wrong."""
    try:
        return fn(*args)
    except NotImplementedError:
        raise
    except Exception as exc:  # the learner's code: any crash is a finding
        shown = ", ".join(repr(a) for a in args)
        raise Wrong(f"it raised {type(exc).__name__}: {exc} when called with ({shown})") from None


def expect(got, want, what, hint):
    """Wrong unless got == want; `what` shows the call that returned `got`."""
    if got != want:
        raise Wrong(f"{what} returned {got!r}, expected {want!r}.\n  Hint: {hint}")


class DidNotReturn(Wrong):
    """The learner's function did not return in time: the message says what probably loops."""


def _stop_thread(thread) -> None:
    """Ask a runaway thread to stop by raising SystemExit in it at its next bytecode.

    Best effort, so a forgotten loop does not keep one of the machine's cores busy for
    the rest of the session: a thread blocked in C (a sleep, a recv) only stops when that
    call returns. The thread is a daemon anyway, so it never keeps the kernel alive.
    """
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident),
                                               ctypes.py_object(SystemExit))


def bounded(fn, *args, seconds: float = 3.0, hint: str = "something in it loops forever.",
            what: str | None = None):
    """fn(*args), but give up after `seconds` with a hint instead of hanging the cell.

    The learner's function runs in a daemon thread; if it has not returned in time,
    this raises `DidNotReturn` (a failed case, printed by the check with `hint`, which
    should say what probably loops, e.g. "your read never re-reads the version"), and
    the thread is asked to stop. NotImplementedError passes through ("not done yet");
    any other exception becomes a failed case that names it, as in `call`.
    """
    outcome = {}

    def run():
        try:
            outcome["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            outcome["error"] = exc

    thread = threading.Thread(target=run, name=f"bounded-{getattr(fn, '__name__', 'fn')}",
                              daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        _stop_thread(thread)
        name = what or getattr(fn, "__name__", "your function")
        raise DidNotReturn(f"{name} did not return within {seconds:g} s.\n  Hint: {hint}")
    error = outcome.get("error")
    if isinstance(error, (NotImplementedError, Wrong)):  # "not done yet", or a judge's verdict
        raise error
    if error is not None:
        shown = ", ".join(repr(a) for a in args)
        raise Wrong(f"it raised {type(error).__name__}: {error} when called with ({shown})")
    return outcome["value"]
