"""``hftlab match`` (and ``python -m hftlab.match``): the command line over `hftlab.match.Match`.

    hftlab match [config flags: --fast, --symbols, --replay F, --seed ...] --out DIR
                 --entry NAME=SPEC [--entry NAME=SPEC ...] [--duration S]

A bad entry, two entries of one name or a bad flag is one sentence and exit status 2,
before anything starts. Ctrl-C and SIGTERM end the match as its end would: the files are
written, the table printed, exit status 0. Exit status 1: the exchange could not start.
"""

from __future__ import annotations

import argparse
import signal
import sys

from hftlab import config as _config
from hftlab import replay
from hftlab.launcher import READY_TIMEOUT, LaunchError
from hftlab.match.entries import check_entries
from hftlab.match.run import Match
from hftlab.match.score import table

__all__ = ["MATCH_DEFAULTS", "parser", "config_of", "main"]

# Ready Trader Go's limits, and a walk that trends (a signal that follows it is worth something).
MATCH_DEFAULTS = {"position_limit": 100, "rate_limit": 50, "momentum": 0.3}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hftlab match", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, metavar="DIR", help="the folder for the match's files")
    p.add_argument("--entry", action="append", required=True, metavar="NAME=SPEC",
                   help="a strategy: NAME=ours [OPTIONS] | NAME=slow:MS | NAME=random | NAME=cmd:COMMAND")
    p.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                   help="end after this many seconds (default: at the replay's end, or Ctrl-C)")
    p.add_argument("--ready-timeout", type=float, default=READY_TIMEOUT, metavar="SECONDS",
                   help=f"an entry not ready this long after it starts is out (default: {READY_TIMEOUT:g})")
    p.add_argument("--fast", action="store_true",
                   help="fast cadence: a tick every 50 ms, news every 250 ms, short windows 3/8")
    _config.add_arguments(p)
    return p


def config_of(args) -> _config.Config:
    """The match's Config: the flags given, then --fast's and the match's defaults for
    what was not given. ValueError if it cannot work."""
    config = _config.from_args(args)
    preset = {**MATCH_DEFAULTS, **(_config.FAST if args.fast else {})}
    return config.replace(**{k: v for k, v in preset.items() if getattr(args, k) is None})


def main(argv=None) -> int:
    p = parser()
    args = p.parse_args(argv)
    try:
        config = config_of(args)
        entries = check_entries(args.entry)
        if config.replay:
            replay.load(config.replay, config.symbols)
        match = Match(config, entries, args.out, args.duration, ready_timeout=args.ready_timeout,
                      say=lambda text: print(f"hftlab match: {text}", file=sys.stderr, flush=True))
    except (ValueError, replay.ReplayError) as exc:
        p.error(str(exc))
    if args.duration is not None and not args.duration > 0:
        p.error("--duration must be positive")
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD)}
    signal.signal(signal.SIGINT, signal.default_int_handler)   # Ctrl-C ends the match, even if inherited ignored
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)              # the launchers read their children's status
    try:
        return _play(match, args)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _play(match: Match, args) -> int:
    names = ", ".join(e.name for e in match.entries)
    print(f"hftlab match: {names}; files in {args.out}/", flush=True)
    try:
        match.start()
        print("hftlab match: started" + (f" for {args.duration:g} s" if args.duration else
                                         "; Ctrl-C ends it"), flush=True)
        match.wait()
    except LaunchError as exc:
        print(f"hftlab match: the exchange did not start: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nhftlab match: stopping.", flush=True)
    finally:
        # A second Ctrl-C must not cut the orderly stop (and the files) short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        summary = match.stop()
    print(f"hftlab match: {match.ended or 'stopped'}.", flush=True)
    print(table(summary), flush=True)
    return 0

