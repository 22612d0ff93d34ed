"""`Match`: one exchange, one feed, several strategies; their processes, the clock, the scores.

The exchange is one `hftlab.launcher.Launcher` (gateway, order manager, orderbook on free
ports, a fresh book), whose order manager writes every order, fill and reject to the
match's event file. Each entry is a Launcher of its own with only a strategy in it,
``max_restarts=0``: a match is a contest, and a strategy that dies stays dead (and the
scoreboard says when), while the others trade on. The entries start side by side (a
thread each), so one slow to be ready does not hold the others back, and the match's
clock (``duration``) starts once every entry is ready or has failed to be.

A match ends after ``duration`` seconds; or, on a replay, once the gateway said
``replay: done`` and the event file has then been quiet for a while (every order had its
answer); or when no entry is left running; or at `stop` (Ctrl-C in ``hftlab match``).

Everything is polled from the caller's thread (`step`, as `Launcher.supervise` is), so a
notebook can drive a match from a loop and show `scoreboard` as it goes.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time

from hftlab import book, children
from hftlab import events as _events
from hftlab.launcher import READY_TIMEOUT, GaveUp, LaunchError, Launcher
from hftlab.match import report
from hftlab.match.entries import check_entries
from hftlab.match.score import Tally

__all__ = ["SERVERS", "SAMPLE_INTERVAL", "REPLAY_DEADLINE", "Match"]

SERVERS = ("gateway", "order_manager", "orderbook")
SAMPLE_INTERVAL = 0.25   # seconds between two rows of scoreboard.csv
REPLAY_DEADLINE = 30.0   # after "replay: done", the match ends within this, quiet or not


class _ModuleLauncher(Launcher):
    """A Launcher whose strategy is another of our modules (the random trader)."""

    def __init__(self, *args, module: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.module = module

    def module_of(self, name: str) -> str:
        return self.module


class _EventReader:
    """The event file's new whole rows since the last call (the order manager appends)."""

    def __init__(self, path: str):
        self.path, self.offset = path, 0

    def new(self) -> list:
        out = []
        while os.path.exists(self.path):
            lines, offset = children.new_lines(self.path, self.offset)
            if offset == self.offset:
                break
            if self.offset == 0 and lines and lines[0] == _events.COLUMNS:
                lines = lines[1:]
            self.offset = offset
            out += [_events.parse(line) for line in lines if line]
        return out


def _one_sentence(exc: Exception) -> str:
    """The launcher's message without the log it quotes."""
    return str(exc).split("\n", 1)[0].split(" The end of its log", 1)[0].rstrip(":")


class Match:
    """A match between `entries` (`Entry`s or ``NAME=SPEC`` strings) on `config`'s feed,
    writing to the folder `out`; ``duration`` seconds (None: until a replay ends, or `stop`).

        with Match(config, ["a=ours", "r=random"], "out", duration=10) as match:
            summary = match.wait()
    """

    def __init__(self, config, entries, out: str, duration: float | None = None, *,
                 ready_timeout: float = READY_TIMEOUT, say=None):
        self.entries = check_entries(entries)
        for entry in self.entries:  # a bad option is one sentence now, not a dead entry later
            entry.config(config)
        self.config, self.out, self.duration = config, out, duration
        self.ready_timeout = ready_timeout
        self.say = say or (lambda text: None)
        self.logs = os.path.join(out, "logs")
        self.events_path = os.path.join(out, report.EVENTS_FILE)
        self.tally = Tally([e.name for e in self.entries])
        self.reader = _EventReader(self.events_path)
        self.lab, self.follower, self.board = None, None, None
        self.players, self.status, self.marks = {}, {}, {}
        self.started = self.clock = None      # monotonic: servers up, entries up
        self.ended, self.summary, self.rows = "", None, []
        self._next_sample = 0.0
        delays = [e.config(config).send_delay for e in self.entries]
        self.quiet = max(1.0, 2 * max(delays))
        self._replay = {"offset": None, "done": None, "size": -1, "grew": 0.0}

    # -- starting -----------------------------------------------------------------------

    def start(self) -> "Match":
        os.makedirs(self.logs, exist_ok=True)
        for old in (self.events_path, os.path.join(self.logs, "orders.csv")):
            with contextlib.suppress(FileNotFoundError):
                os.remove(old)  # an earlier match's rows, or its positions, must not count in this one
        self.board = report.ScoreboardFile(os.path.join(self.out, report.SCOREBOARD_FILE))
        # A replay waits for every entry's news subscription: each sees the file from its first line.
        servers = self.config.replace(events=self.events_path, news_subscribers=len(self.entries))
        self.lab = Launcher(servers, free_ports=True,
                            run_dir=self.logs, names=SERVERS, ready_timeout=self.ready_timeout)
        self.lab.start()
        self.started = time.monotonic()
        self.follower = book.Follower(self.lab.config.shm_name, self.lab.config.symbols)
        threads = [threading.Thread(target=self._start_entry, args=(e,), name=f"match-{e.name}", daemon=True)
                   for e in self.entries]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.clock = time.monotonic()
        self._next_sample = self.clock
        return self

    def _start_entry(self, entry) -> None:
        """Start one entry's strategy; a failure is its status, not the match's end."""
        kwargs = dict(run_dir=os.path.join(self.logs, entry.name), keep_run_dir=True, names=("strategy",),
                      max_restarts=0, ready_timeout=self.ready_timeout)
        config = entry.config(self.lab.config)
        try:
            if entry.kind == "random":
                launcher = _ModuleLauncher(config, module="hftlab.match.random_trader", **kwargs)
            else:
                commands = {"strategy": entry.command} if entry.kind == "cmd" else None
                launcher = Launcher(config, commands=commands, **kwargs)
        except ValueError as exc:
            self.status[entry.name] = f"never ready: {exc}"
            return
        self.players[entry.name] = launcher
        try:
            launcher.start()
        except LaunchError as exc:
            self.status[entry.name] = f"never ready: {_one_sentence(exc)}"
            self.say(f"{entry.name}: never ready: {_one_sentence(exc)}")

    # -- running ------------------------------------------------------------------------

    def elapsed(self) -> float:
        """Seconds since the exchange was up (the scoreboard's time_s)."""
        return time.monotonic() - self.started if self.started is not None else 0.0

    def step(self) -> bool:
        """One look at everything: deaths, the exchange's health, a sample when one is
        due. False once the match is over (then `stop` it)."""
        if self.lab is None or self.summary is not None:
            return False
        self._notice_deaths()
        try:
            for event in self.lab.supervise():
                self.say(f"exchange: {event.message}")
        except GaveUp as exc:
            self.ended = f"the exchange failed: {_one_sentence(exc)}"
            return False
        now = time.monotonic()
        if now >= self._next_sample:
            self._sample()
            self._next_sample = max(self._next_sample + SAMPLE_INTERVAL, now)
        self.ended = self.ended or self._why_over(now)
        return not self.ended

    def _notice_deaths(self) -> None:
        for name, launcher in self.players.items():
            child = launcher.children.get("strategy")
            if name in self.status or child is None or child.running():
                continue
            self.status[name] = f"died at {self.elapsed():.1f} s ({children.how_ended(child.popen.returncode)})"
            self.say(f"{name}: {self.status[name]}; the others trade on. Its log: {child.log_path}")

    def _why_over(self, now: float) -> str:
        """Why the match is over now, or "" if it goes on."""
        if self.duration is not None and now - self.clock >= self.duration:
            return f"{self.duration:g} s are up"
        if all(name in self.status for name in (e.name for e in self.entries)):
            return "no strategy is left running"
        if self.config.replay and self._replay_finished(now):
            return "the replay is over and every order was answered"
        return ""

    def _replay_finished(self, now: float) -> bool:
        """After the gateway's ``replay: done``: the event file quiet for `quiet` s (or the
        hard deadline, REPLAY_DEADLINE, passed)."""
        state, gateway = self._replay, self.lab.children["gateway"]
        if state["done"] is None:
            if state["offset"] is None:
                state["offset"] = gateway.log_start
            lines, state["offset"] = children.new_lines(gateway.log_path, state["offset"])
            if not any("replay: done" in line for line in lines):
                return False
            state["done"] = state["grew"] = now
        size = os.path.getsize(self.events_path) if os.path.exists(self.events_path) else 0
        if size != state["size"]:
            state["size"], state["grew"] = size, now
        return now - state["grew"] >= self.quiet or now - state["done"] >= REPLAY_DEADLINE

    def _read_marks(self) -> dict:
        """The book's prices now (the last ones seen for a symbol the book cannot give)."""
        try:
            quotes = self.follower.quotes() if self.follower is not None else None
        except book.BookError:  # in mid-write, or gone: the last prices stand
            quotes = None
        self.marks.update({s: q.price for s, q in (quotes or {}).items() if q is not None})
        return self.marks

    def _sample(self) -> list:
        """Count the new events and write one row per strategy, marked to the book now."""
        self.tally.add(self.reader.new())
        self.rows = self.tally.rows(self.elapsed(), self._read_marks())
        self.board.write(self.rows)
        return self.rows

    def scoreboard(self) -> list:
        """The latest rows (`hftlab.match.score.Row`, one per strategy), after a look."""
        self.step()
        return list(self.rows)

    def wait(self) -> dict:
        """Run until the match is over; then stop it and return the summary."""
        while self.step():
            time.sleep(min(0.05, max(0.0, self._next_sample - time.monotonic())))  # pacing the looks
        return self.stop()

    def run(self) -> dict:
        """start, wait, stop: the summary."""
        try:
            self.start()
            return self.wait()
        finally:
            self.stop()

    # -- stopping -----------------------------------------------------------------------

    def stop(self) -> dict:
        """Stop the strategies, let the exchange answer what they sent, take the last
        prices and the last sample, stop the exchange, and write the files (once)."""
        if self.summary is not None:
            return self.summary
        self._notice_deaths()
        for launcher in self.players.values():
            launcher.stop()
        if self.lab is None or self.board is None:
            self.summary = {}
            return self.summary
        with contextlib.suppress(TimeoutError):
            children.wait_for(self._events_quiet(), 2.0, "the event file to be quiet", interval=0.1)
        self._sample()
        self.lab.stop()
        if self.follower is not None:
            self.follower.close()
        self.summary = self.tally.summary(self.marks, self._statuses())
        self._write()
        return self.summary

    def _events_quiet(self):
        """A condition: the event file has not grown since the last look."""
        last = {"size": -1}

        def quiet():
            size = os.path.getsize(self.events_path) if os.path.exists(self.events_path) else 0
            same, last["size"] = size == last["size"], size
            return same
        return quiet

    def _statuses(self) -> dict:
        out = {}
        for e in self.entries:
            status = self.status.get(e.name, "finished")
            flooded = self.tally.stats[e.name].rejects.get("message rate limit", 0)
            out[e.name] = status + (f"; {flooded} orders over the rate limit" if flooded else "")
        return out

    def _write(self) -> None:
        c = self.lab.config
        facts = {"ended": self.ended or "stopped", "duration_s": round(self.elapsed(), 3),
                 "book": c.shm_name, "symbols": list(c.symbols), "seed": c.seed, "momentum": c.momentum,
                 "replay": c.replay,
                 "position_limit": c.position_limit, "rate_limit": c.rate_limit, "fee_bps": c.fee_bps,
                 "entries": {e.name: {"kind": e.kind, "changes": e.changes, "command": e.command}
                             for e in self.entries}, "marks": self.marks}
        report.write_summary(os.path.join(self.out, report.SUMMARY_FILE), self.summary, facts)
        report.plot(os.path.join(self.out, report.CHART_FILE), self.board.rows)

    def __enter__(self) -> "Match":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
