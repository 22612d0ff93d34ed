"""Running cases: each in its own thread within its time limit, the role's cases in order
within the run's (`run_role`), an interruption (Ctrl-C, SIGTERM) turned into a clean stop
(`on_interrupt`, `shielded`), and the report as JSON (`write_json`)."""

from __future__ import annotations

import contextlib
import json
import signal
import time
from concurrent import futures

from hftlab import children
from hftlab.conform.harness import (HINT_EXITED, HINT_LEFTOVERS, JOIN_TIMEOUT, RUN_LIMIT, SEEN_LIMIT, STOP_TIMEOUT,
                                    Case, CaseFailed, Ctx, NotReady, Result, background, base_config, end_of,
                                    one_line)

__all__ = ["Interrupted", "on_interrupt", "shielded", "run_case", "run_role", "write_json"]


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM reached ``hftlab conform`` (see `on_interrupt`); `role` and `number`
    name the case that was running, if one was."""

    def __init__(self, signum: int = signal.SIGINT, role: str | None = None, number: int | None = None):
        super().__init__(signum)
        self.signum, self.role, self.number = signum, role, number

    def message(self) -> str:
        if self.number is None:
            return "hftlab conform: interrupted; no case was running"
        return f"hftlab conform: interrupted; stopped {self.role} case {self.number} and removed what it made"


class _Shield:
    depth = 0
    pending = None


def on_interrupt(signum, frame) -> None:
    """Signal handler for SIGINT and SIGTERM (``hftlab conform`` installs it): raise
    `Interrupted` in the main thread, or, while a case's world is being torn down
    (`shielded`), once that is done."""
    if _Shield.depth:
        _Shield.pending = _Shield.pending or signum
        return
    raise Interrupted(signum)


@contextlib.contextmanager
def shielded():
    """Hold back `on_interrupt` while the block runs (a teardown must not be cut short by a
    second Ctrl-C), and raise it at the end."""
    _Shield.depth += 1
    try:
        yield
    finally:
        _Shield.depth -= 1
        if not _Shield.depth and _Shield.pending is not None:
            signum, _Shield.pending = _Shield.pending, None
            raise Interrupted(signum)


def _wait(outcome: futures.Future, timeout: float) -> bool:
    """Whether `outcome` is done within `timeout` seconds. In slices: a signal that the kernel
    gives to another thread than the main one does not wake a wait, and the main thread runs
    the handler (`on_interrupt`) only when it wakes."""
    deadline = time.monotonic() + timeout
    while not outcome.done() and (left := deadline - time.monotonic()) > 0:
        futures.wait([outcome], min(left, 0.1))
    return outcome.done()


def _failure(outcome: futures.Future, case_: Case, ctx: Ctx) -> CaseFailed | None:
    """What went wrong in a case that had `case_.timeout` seconds: None if it passed."""
    if not _wait(outcome, case_.timeout):
        return CaseFailed(f"the case did not finish within {case_.timeout:g} s", log=ctx.log_end())
    exc = outcome.exception()
    if exc is None:
        return None
    if isinstance(exc, CaseFailed):
        return exc
    # A bug in the case, or a peer that met something unexpected: still a report line.
    return CaseFailed(f"{type(exc).__name__}: {exc}")


def _with_crash(failed: CaseFailed | None, ctx: Ctx) -> CaseFailed | None:
    """A failure of a case during which the process exited on its own is told as that: the
    exit explains it better than what the case saw next (no answer, a closed socket)."""
    code = ctx.crashed()
    if failed is None or code is None or failed.explains_exit:
        return failed
    crash = CaseFailed(f"{failed.seen}; meanwhile it exited with status {code}", hint=HINT_EXITED,
                       log=ctx.log_end())
    crash.explains_exit = True
    return crash


def run_case(role: str, case_: Case, command: list, kill_at_once: bool = False) -> Result:
    """Run one case within its timeout and return its `Result`; its world is torn down in
    every case (a pass, a failure, a timeout, an interrupt). `kill_at_once`: the process is
    known to ignore SIGTERM, so its teardown does not wait for it."""
    started = time.monotonic()
    ctx = Ctx(role, command, base_config(**case_.config), kill_at_once)
    outcome = None
    try:
        outcome = background(case_.run, ctx, name=f"conform {role} {case_.number}")
        failed = _with_crash(_failure(outcome, case_, ctx), ctx)
    finally:
        with shielded():
            ctx.close()
            if outcome is not None:  # its waits and sockets end with its world: let it finish
                _wait(outcome, JOIN_TIMEOUT)
    return _result(role, case_, ctx, failed, time.monotonic() - started)


def _result(role: str, case_: Case, ctx: Ctx, failed: CaseFailed | None, seconds: float) -> Result:
    notes = list(ctx.notes)
    left = ""
    if ctx.leftovers and not (failed is not None and failed.hint == HINT_LEFTOVERS):
        left = (f"when it was stopped it left {children.describe(ctx.leftovers)} running in its process "
                "group (stopped now)")
        if failed is None:
            failed = CaseFailed(left, hint=HINT_LEFTOVERS)
            left = ""
    if ctx.ignored_sigterm and not ctx.kill_at_once:
        notes.append(f"it did not exit within {STOP_TIMEOUT:g} s of SIGTERM and was killed; the later "
                     "cases kill it at once")
    r = Result(role, case_.number, case_.title, failed is None, seconds=round(seconds, 2),
               note="; ".join(notes), ignores_sigterm=ctx.ignored_sigterm)
    if failed is not None:
        r.seen = one_line(failed.seen, SEEN_LIMIT)
        if left:
            r.seen += f"; also, {left}"
        if failed.log:
            r.seen += f"; the end of its log: {end_of(failed.log, SEEN_LIMIT)}"
        r.hint = failed.hint or case_.hint
        r.not_ready = isinstance(failed, NotReady) and failed.first
    return r


def _not_run(role: str, case_: Case, why: str) -> Result:
    return Result(role, case_.number, case_.title, False, seen=why, ran=False)


def run_role(role: str, cases: list, command: list, only=None, out=print, time_limit: float = RUN_LIMIT) -> list:
    """Run `cases` (or only number `only`) and print one line per case as it ends; the
    `Result`s. Cases not started within `time_limit` seconds are not run, nor are those
    after a case where the process never became ready. Raises `Interrupted` (after tearing
    the running case down) when `on_interrupt` is the SIGINT or SIGTERM handler."""
    results, blocked, kill_at_once = [], None, False
    deadline = time.monotonic() + time_limit
    for c in cases:
        if only is not None and c.number != only:
            continue
        if blocked is not None:
            r = _not_run(role, c, blocked)
        elif time.monotonic() > deadline:
            r = _not_run(role, c, f"the run's time limit ({time_limit:g} s) was reached")
        else:
            try:
                r = run_case(role, c, command, kill_at_once)
            except KeyboardInterrupt as exc:
                raise Interrupted(getattr(exc, "signum", signal.SIGINT), role, c.number) from None
            if r.not_ready:
                blocked = f"it never became ready (case {r.number})"
            kill_at_once |= r.ignores_sigterm
        results.append(r)
        out(r.line())
    return results


def write_json(path: str, role: str, command: list, results: list) -> None:
    data = {"role": role, "command": command,
            "passed": sum(r.passed for r in results), "failed": sum(not r.passed for r in results),
            "cases": [r.__dict__ for r in results]}
    with open(path, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
