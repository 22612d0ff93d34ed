"""The ``hftlab`` command.

    hftlab run [--duration S] [--fast]   all four processes in one terminal, restarting
                                         one that dies (--no-restart: stop them all)
    hftlab status                        what is running, and the book
    hftlab clean                         remove what a crashed run left behind
    hftlab record --duration S --out F   write a running lab's prices and news to a CSV
    hftlab run --replay F [--speed X]    the lab on a recorded (or your own) tick file
    hftlab gateway | orderbook | strategy | order-manager    one process, as in four terminals
    hftlab run --strategy-cmd "python my_strategy.py"   your own process in a role (docs/roles.md)
    hftlab conform ROLE -- CMD [ARGS...]  grade your own process against its role's cases
    hftlab match --out DIR --entry a=ours --entry r=random   strategies against one exchange, scored

Every command takes the same configuration flags (``--help`` lists them).

Signals in ``hftlab run``: Ctrl-C (SIGINT) and SIGTERM both stop all four processes in
order and exit with status 0. SIGINT works even when ``hftlab run`` inherited it
ignored (a background job of a shell script inherits SIGINT and SIGQUIT ignored): a
command that says "Ctrl-C stops" must stop on Ctrl-C. SIGCHLD is set back to its default
so that the launcher can reap its children and read their exit status. When its output
pipe is closed (``hftlab run | head``) it stops everything as on Ctrl-C, with no traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import time

from hftlab import book, children, net
from hftlab import config as _config
from hftlab import process, replay
from hftlab.launcher import NAMES, STOP_TIMEOUT, GaveUp, LaunchError, Launcher

__all__ = ["MODULE_COMMANDS", "PROCESS_COMMANDS", "parser", "main", "cmd_run",
           "cmd_status", "cmd_clean"]

# Commands that live in their own module and parse their own flags.
MODULE_COMMANDS = {"bench": "bench", "record": "record", "conform": "conform", "match": "match"}
PROCESS_COMMANDS = {"gateway": "gateway", "orderbook": "orderbook", "strategy": "strategy",
                    "order-manager": "order_manager", "order_manager": "order_manager"}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hftlab", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser("run", help="start all four processes until Ctrl-C or --duration")
    run.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                     help="stop after this many seconds (default: run until Ctrl-C)")
    run.add_argument("--fast", action="store_true",
                     help="fast cadence: a tick every 50 ms, news every 250 ms, short windows 3/8")
    run.add_argument("--free-ports", action="store_true",
                     help="take any free ports and a fresh book name (runs beside another lab)")
    run.add_argument("--run-dir", default="hftlab-run",
                     help="where the logs and the journal go (default: ./hftlab-run)")
    run.add_argument("--no-restart", action="store_true",
                     help="when a process dies, stop them all (default: restart it, at most "
                          "3 times a minute)")
    for role in ("gateway", "orderbook", "strategy", "order-manager"):
        run.add_argument(f"--{role}-cmd", dest=f"{role.replace('-', '_')}_cmd", default=None,
                         metavar="COMMAND",
                         help=f"run this command as the {role.replace('-', ' ')} instead of ours "
                              f"(split like a shell would; the contract is docs/roles.md)")
    _config.add_arguments(run)
    status = sub.add_parser("status", help="show which processes answer and what the book holds")
    _config.add_arguments(status)
    clean = sub.add_parser("clean", help="remove shared-memory books left by crashed runs")
    _config.add_arguments(clean)
    sub.add_parser("bench", help="measure throughput and latency of the real processes (see hftlab bench --help)",
                   add_help=False)
    sub.add_parser("conform", help="grade your own process against its role (see hftlab conform --help)",
                   add_help=False)
    sub.add_parser("record", help="write a running lab's prices and news to a CSV (see hftlab record --help)",
                   add_help=False)
    sub.add_parser("match", help="several strategies, one exchange, one feed: fills, P&L and a scoreboard "
                                 "(see hftlab match --help)", add_help=False)
    for name in PROCESS_COMMANDS:
        if "_" not in name:
            sub.add_parser(name, help=f"run the {name.replace('-', ' ')} alone (see hftlab {name} --help)",
                           add_help=False)
    return p


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and (argv[0] in PROCESS_COMMANDS or argv[0] in MODULE_COMMANDS):
        name = PROCESS_COMMANDS.get(argv[0]) or MODULE_COMMANDS[argv[0]]
        return importlib.import_module(f"hftlab.{name}").main(argv[1:])
    p = parser()
    args = p.parse_args(argv)
    if args.command is None:
        p.print_help()
        return 0
    try:
        config = _config.from_args(args)
    except ValueError as exc:
        p.error(str(exc))
    if config.replay:  # a bad tick file is one sentence before anything starts
        try:
            replay.load(config.replay, config.symbols)
        except replay.ReplayError as exc:
            p.error(str(exc))
    return {"run": cmd_run, "status": cmd_status, "clean": cmd_clean}[args.command](config, args)


class _Stop(Exception):
    """SIGTERM reached `hftlab run`: stop like Ctrl-C."""


def _stop_on_sigterm(signum, frame):
    raise _Stop()


def cmd_run(config, args) -> int:
    # Ctrl-C stops us even when SIGINT was inherited ignored; SIGTERM takes the same path
    # (see the module docstring); children we start must be reapable.
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    if args.fast:
        # Flags given explicitly still win over the fast preset.
        config = config.replace(**{k: v for k, v in _config.FAST.items() if getattr(args, k) is None})
    commands = {name: getattr(args, f"{name}_cmd") for name in NAMES if getattr(args, f"{name}_cmd")}
    try:
        launcher = Launcher(config, free_ports=args.free_ports, run_dir=args.run_dir, commands=commands)
    except ValueError as exc:  # an empty or unparsable command
        print(f"hftlab: {exc}", file=sys.stderr)
        return 2
    print(f"hftlab: starting {', '.join(NAMES)}; logs and journal in {launcher.run_dir}/", flush=True)
    tails = {}
    try:
        status = _run_and_watch(launcher, args, tails)
    finally:
        # A second Ctrl-C or SIGTERM must not cut the orderly stop short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        launcher.stop()
        with contextlib.suppress(BrokenPipeError):
            _show(_new_lines(launcher, tails))
            forced = _report_forced_stops(launcher)
            print(f"hftlab: stopped. journal: {launcher.config.journal}", flush=True)
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    return 1 if forced else status


def _run_and_watch(launcher, args, tails) -> int:
    """Start the processes, then show their logs and supervise them until the time is up, a
    stop (Ctrl-C, SIGTERM, a closed output pipe) or giving up; the exit status."""
    try:
        _start_all(launcher, tails)
        return _follow_lab(launcher, args, tails)
    except GaveUp as exc:
        print(f"hftlab: {exc}", file=sys.stderr, flush=True)
        return 1
    except LaunchError as exc:
        print(f"hftlab: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nhftlab: stopping.", flush=True)
        return 0
    except _Stop:
        print("hftlab: SIGTERM; stopping.", flush=True)
        return 0
    except BrokenPipeError:
        # `hftlab run | head`: nobody reads our output any more. Python ignores SIGPIPE, so
        # we learn it here; stop as on Ctrl-C, and write nothing more to the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        with contextlib.suppress(OSError):
            print("hftlab: the output pipe was closed; stopping.", file=sys.stderr, flush=True)
        return 0


def _start_all(launcher, tails) -> None:
    for name in NAMES:
        launcher.start_one(name)
        _show(_new_lines(launcher, tails))
    c = launcher.config
    pids = ", ".join(f"{name} {child.pid}" for name, child in launcher.children.items())
    print(f"hftlab: running ({pids}). prices {c.host}:{c.price_port}, news {c.host}:{c.news_port}, "
          f"orders {c.host}:{c.order_port}, book {c.shm_name!r}. Ctrl-C stops.", flush=True)


def _follow_lab(launcher, args, tails) -> int:
    """Show the logs, and restart what dies (or, with --no-restart, stop), until --duration."""
    end = time.monotonic() + args.duration if args.duration is not None else float("inf")
    while time.monotonic() < end:
        _show(_new_lines(launcher, tails))
        if args.no_restart:
            dead = launcher.dead()
            if dead:
                for name, code, log in dead:
                    print(f"hftlab: {name} stopped unexpectedly with status {code}; "
                          f"the end of its log:\n{log}", file=sys.stderr)
                print("hftlab: --no-restart: stopping everything.", file=sys.stderr, flush=True)
                return 1
        else:
            for event in launcher.supervise():
                _show(_new_lines(launcher, tails))
                print(f"hftlab: {event.message}", file=sys.stderr if event.kind == "died" else sys.stdout,
                      flush=True)
        time.sleep(0.05)  # pacing the terminal output, not waiting for a condition
    print(f"hftlab: {args.duration:g} s are up; stopping.", flush=True)
    return 0


def _report_forced_stops(launcher) -> bool:
    """Say which process had to be killed, or left processes behind, when the lab stopped,
    and how to fix it; True if any did (`hftlab run` then exits with status 1)."""
    said = False
    for name, child in launcher.children.items():
        label = launcher.label(name)
        if child.forced:
            print(f"hftlab: {label} was still running {STOP_TIMEOUT:g} s after SIGTERM and was killed "
                  "(SIGKILL): make it exit on SIGTERM (docs/roles.md, Stop)", file=sys.stderr, flush=True)
            said = True
        if child.leftovers:
            print(f"hftlab: {label} left {children.describe(child.leftovers)} running after it stopped "
                  "(stopped now): stop what it starts when it gets SIGTERM (docs/roles.md, Stop)",
                  file=sys.stderr, flush=True)
            said = True
    return said


def _new_lines(launcher, tails) -> list:
    """The complete lines each process logged since we last looked, as (time, name, text)."""
    out = []
    for name, child in launcher.children.items():
        lines, tails[name] = children.new_lines(child.log_path, tails.get(name, child.log_start))
        for line in lines:
            parsed = process.parse_log_line(line)
            out.append((parsed.time, name, parsed.text) if parsed else ("", name, line))
    return out


def _show(lines) -> None:
    """Print log lines in time order, the process name first."""
    for stamp, name, text in sorted(lines, key=lambda t: t[0]):
        print(f"{name:<13} | {stamp + ' ' if stamp else ''}{text}".rstrip(), flush=True)


def _answers(host: str, port: int) -> bool:
    try:
        net.dial(host, port, timeout=0.5).close()
        return True
    except OSError:
        return False


def cmd_status(config, args) -> int:
    for label, port in (("gateway prices", config.price_port), ("gateway news", config.news_port),
                        ("order manager", config.order_port)):
        state = "listening" if _answers(config.host, port) else "not running"
        print(f"{label:<15} {config.host}:{port:<6} {state}")
    try:
        price_book = book.SharedPriceBook.attach(config.shm_name)
    except book.BookError as exc:
        print(f"book            {exc}")
        return 0
    with price_book:
        h = price_book.header()
        feed = book.FEED_STATES.get(h["feed_state"], "?")
        if h["feed_state"] == book.FEED_DOWN:
            feed += " (prices are stale)"
        writer = "alive" if price_book.writer_alive() else "DEAD (run hftlab clean)"
        print(f"book            {config.shm_name!r}: writer pid {h['writer_pid']} {writer}, feed {feed}, "
              f"{h['updates']} updates, {h['gaps']} gaps, "
              f"{price_book.nbytes} bytes ({price_book.mapped_bytes} mapped)")
        now = time.time_ns()
        for symbol, q in price_book.quotes().items():
            if q is None:
                print(f"  {symbol:<8} no price yet")
            else:
                print(f"  {symbol:<8} {q.price:>10.2f}  seq {q.seq:<8} {(now - q.written_ns) / 1e9:6.1f} s ago")
    return 0


def cmd_clean(config, args) -> int:
    names = {config.shm_name}
    if os.path.isdir("/dev/shm"):  # Linux lists segments here; macOS offers no listing
        names |= {n for n in os.listdir("/dev/shm") if n.startswith("hftlab_")}
    removed = 0
    for name in sorted(names):
        try:
            pid = book.remove_stale(name)
        except (ValueError, book.BookError) as exc:
            print(f"left {name!r} alone: {exc}")
            continue
        if pid is not None:
            removed += 1
            left_by = f"left by dead process {pid}" if pid else "not a valid book"
            print(f"removed shared-memory segment {name!r} ({left_by})")
    for name in book.sweep_orphan_bells():
        removed += 1
        print(f"removed the doorbell folder of book {name!r} (the book itself is gone)")
    if not removed:
        print("nothing to clean: no stale hftlab segments")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
