"""``hftlab conform ROLE -- CMD [ARGS...]``: grade a process against its role's contract.

Like a protocol conformance suite (Autobahn|Testsuite for WebSocket, h2spec for HTTP/2),
it runs CMD in ROLE (gateway, orderbook, strategy, order-manager) against scripted peers
on free ports with a fresh book name, through numbered cases, one module per role
(`hftlab.conform.gateway`, ...; the machinery: `harness`, a case's world; `peers`, its sockets;
`run`, running the cases), and prints one
line per case: its number, what it checks, pass or FAIL, and for a failure what it saw
and a hint. The contract itself is docs/roles.md.

    hftlab conform strategy -- python my_strategy.py
    hftlab conform gateway --case 3 -- python my_gateway.py
    hftlab conform orderbook --list
    hftlab conform order-manager --json report.json -- ./my_om

Exit status: 0 when every case run passed, 1 when one failed or was not run, 2 for a
usage error; interrupted (Ctrl-C, SIGTERM), it tears the running case down, says so in one
line and exits 130 (SIGINT) or 143 (SIGTERM). From Python: `check(role, command)` returns
the `Result`s.
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import signal
import sys

from hftlab.conform.harness import RUN_LIMIT, Case, CaseFailed, Result
from hftlab.conform.run import Interrupted, on_interrupt, run_role, write_json

ROLES = ("gateway", "orderbook", "strategy", "order_manager")

__all__ = ["ROLES", "RUN_LIMIT", "Case", "CaseFailed", "Result", "cases", "check", "main"]


def role_name(text: str) -> str:
    """'order-manager' -> 'order_manager'; ValueError for an unknown role."""
    name = text.replace("-", "_")
    if name not in ROLES:
        raise ValueError(f"unknown role {text!r}; the roles are gateway, orderbook, strategy, order-manager")
    return name


def cases(role: str) -> list:
    """The numbered cases of a role, in order."""
    return importlib.import_module(f"hftlab.conform.{role_name(role)}").CASES


def check(role: str, command, case: int | None = None, out=print, time_limit: float = RUN_LIMIT) -> list:
    """Run `command` (a list, or a string split like a shell would) through the cases of
    `role` (or only case number `case`), within `time_limit` seconds; print a line per case;
    return the `Result`s. (A first word python or python3 is the Python running the lab:
    the launcher sees to it, and messages show the command as typed.)"""
    role = role_name(role)
    argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
    return run_role(role, cases(role), argv, case, out, time_limit)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hftlab conform", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run your own process in a role through that role's numbered cases "
                    "(the contract: docs/roles.md).",
        epilog="example: hftlab conform strategy -- python my_strategy.py")
    p.add_argument("role", help="gateway, orderbook, strategy or order-manager")
    p.add_argument("--case", type=int, default=None, metavar="N", help="run only case N")
    p.add_argument("--list", action="store_true", help="list the role's cases and exit")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the report to PATH")
    return p


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--" in argv:
        at = argv.index("--")
        argv, command = argv[:at], argv[at + 1:]
    else:
        command = []
    p = parser()
    args = p.parse_args(argv)  # exits with status 2 on a usage error
    try:
        role = role_name(args.role)
    except ValueError as exc:
        p.error(str(exc))
    catalogue = cases(role)
    if args.list:
        for c in catalogue:
            print(f"{role} {c.number:>2}  {c.title}")
        return 0
    if not command:
        p.error("give the command to test after --, e.g. hftlab conform strategy -- python my_strategy.py")
    if args.case is not None and args.case not in [c.number for c in catalogue]:
        p.error(f"{role} has cases 1..{len(catalogue)}; no case {args.case}")
    print(f"hftlab conform: {role} -- {shlex.join(command)}", flush=True)
    try:
        results = interruptible(lambda: check(role, command, args.case, out=lambda line: print(line, flush=True)))
    except Interrupted as exc:
        print(exc.message(), flush=True)
        return 128 + exc.signum
    failed = sum(not r.passed for r in results)
    print(f"hftlab conform: {len(results) - failed} of {len(results)} cases passed", flush=True)
    if args.json:
        write_json(args.json, role, command, results)
    return 1 if failed else 0


def interruptible(run):
    """`run()` with SIGINT and SIGTERM turned into `Interrupted` (the running case is torn
    down first: `hftlab.conform.run.on_interrupt`), and the handlers put back after."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in saved:
        signal.signal(sig, on_interrupt)
    try:
        return run()
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    raise SystemExit(main())
