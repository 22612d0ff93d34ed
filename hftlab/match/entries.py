"""A match's entries: ``NAME=SPEC`` on the command line, an `Entry` in Python.

    ours [OPTIONS]     our strategy; OPTIONS are Config flags (``--short-window 3``) for it alone
    slow:MS [OPTIONS]  ours, waiting MS milliseconds before each send (Config ``send_delay``)
    random [OPTIONS]   the seeded random trader (`hftlab.match.random_trader`)
    cmd:COMMAND        a learner's program in the strategy's role (docs/roles.md), as
                       ``hftlab run --strategy-cmd COMMAND`` runs it

Everything is checked here, before any process starts, so a typo is one sentence
(a ValueError) and not a match that dies half-way. An entry's OPTIONS may change how it
trades, never where the exchange is: the exchange is one for all (`SHARED`).
"""

from __future__ import annotations

import argparse
import shlex
from typing import NamedTuple

from hftlab import config as _config
from hftlab.config import STRATEGY_ID_RE, Config

__all__ = ["KINDS", "SHARED", "Entry", "parse_entry", "check_entries"]

KINDS = ("ours", "slow", "random", "cmd")
# The Config fields every entry must share: they say where the one exchange and its feed are.
SHARED = ("host", "price_port", "news_port", "order_port", "shm_name", "symbols", "events", "journal",
          "strategy_id", "replay", "speed", "seed", "momentum", "tick_interval", "news_interval")


class Entry(NamedTuple):
    """One strategy of a match: its `name` (its strategy_id), its `kind` (one of `KINDS`),
    the Config `changes` it makes for itself alone, and for ``cmd:`` the `command`."""
    name: str
    kind: str
    changes: dict
    command: str = ""

    def config(self, base: Config) -> Config:
        """The entry's config: the match's `base`, its own name, its own changes."""
        return base.replace(strategy_id=self.name, **self.changes)


class _Parser(argparse.ArgumentParser):
    """Config's flags, raising ValueError instead of exiting: an entry's options are one
    argument of the match's command line, and their error is the match's one sentence."""

    def error(self, message):
        raise ValueError(message)


def _options(name: str, words: list) -> dict:
    """The Config changes that `words` (flags with Config's names) ask for."""
    parser = _Parser(prog=name, add_help=False)
    _config.add_arguments(parser)
    try:
        args = parser.parse_args(words)
    except ValueError as exc:
        raise ValueError(f"entry {name!r}: {exc}") from None
    changes = {k: v for k, v in vars(args).items() if v is not None}
    shared = [_config.flag(k) for k in changes if k in SHARED]
    if shared:
        raise ValueError(f"entry {name!r} cannot set {', '.join(shared)}: every entry trades on the "
                         "match's one exchange and feed")
    try:
        Config().replace(**changes)
    except ValueError as exc:
        raise ValueError(f"entry {name!r}: {exc}") from None
    return changes


def _slow(name: str, head: str) -> float:
    """The send delay in seconds of ``slow:MS``."""
    try:
        ms = float(head[len("slow:"):])
    except ValueError:
        ms = -1.0
    if not ms >= 0 or ms == float("inf"):
        raise ValueError(f"entry {name!r}: slow:MS wants milliseconds (a number, 0 or more), "
                         f"as in slow:100; got {head!r}")
    return ms / 1000


def parse_entry(text: str) -> Entry:
    """``NAME=SPEC`` as an `Entry`; ValueError, one sentence, if it is not one."""
    name, sep, spec = text.partition("=")
    name, spec = name.strip(), spec.strip()
    if not sep or not STRATEGY_ID_RE.match(name):
        raise ValueError(f"an entry is NAME=SPEC with a NAME of 1-32 of A-Z a-z 0-9 _ -; got {text!r}")
    if spec.startswith("cmd:"):
        command = spec[len("cmd:"):].strip()
        try:
            empty = not shlex.split(command)
        except ValueError as exc:  # an unclosed quote
            raise ValueError(f"entry {name!r}: its command cannot be split ({exc})") from None
        if empty:
            raise ValueError(f"entry {name!r}: cmd: wants a command, as in cmd:python my_strategy.py")
        return Entry(name, "cmd", {}, command)
    try:
        head, *words = shlex.split(spec) or [""]
    except ValueError as exc:  # an unclosed quote
        raise ValueError(f"entry {name!r}: its SPEC cannot be split ({exc})") from None
    if head.startswith("slow:"):
        delay = _slow(name, head)
        return Entry(name, "slow", {**_options(name, words), "send_delay": delay})
    if head in ("ours", "random"):
        return Entry(name, head, _options(name, words))
    raise ValueError(f"entry {name!r}: SPEC must be ours [OPTIONS], slow:MS, random or cmd:COMMAND; "
                     f"got {spec!r}")


def check_entries(entries) -> list:
    """`entries` (Entry or ``NAME=SPEC`` text) as a list of Entry; ValueError if there are
    none or two share a name (their orders and positions would be one strategy's)."""
    out = [e if isinstance(e, Entry) else parse_entry(e) for e in entries]
    if not out:
        raise ValueError("a match needs at least one entry (--entry NAME=SPEC)")
    seen = set()
    for entry in out:
        if entry.name in seen:
            raise ValueError(f"two entries are named {entry.name!r}: each strategy in a match needs "
                             "a name of its own")
        seen.add(entry.name)
    return out
