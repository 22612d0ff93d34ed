"""One configuration object for the whole system, and its command-line flags.

Every process takes the same knobs, so `Config` is the one place each default lives.
`add_arguments` turns the fields into flags (``tick_interval`` becomes
``--tick-interval``), `from_args` turns parsed flags back into a `Config`, and
`to_args` does the reverse so the launcher can hand a child exactly its parent's config.

A port of 0 means "pick a free port": the process binds, then reports the port it got
in its ready line (see `hftlab.process.ready`).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from dataclasses import dataclass, field, fields

from hftlab import book, protocol

__all__ = ["STRATEGY_ID_RE", "DEFAULT_SYMBOLS", "FAST", "Config", "flag", "format_value",
           "parse_symbols", "add_arguments", "from_args", "is_loopback"]

STRATEGY_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,32}\Z")  # a protocol token (POSQUERY, journal)
DEFAULT_SYMBOLS = ("AAPL", "MSFT", "GOOGL", "AMZN")
# A cadence for demos and tests: a tick every 50 ms and short windows, so the strategy
# trades within a second instead of after the default 20 one-second ticks.
FAST = {"tick_interval": 0.05, "news_interval": 0.25, "heartbeat_interval": 0.5,
        "short_window": 3, "long_window": 8}


def _knob(default, help):
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Config:
    host: str = _knob("127.0.0.1", "address every server binds to and every client dials")
    price_port: int = _knob(9000, "gateway price feed port (0 = any free port)")
    news_port: int = _knob(9001, "gateway news feed port (0 = any free port)")
    order_port: int = _knob(9002, "order manager port (0 = any free port)")
    symbols: tuple = _knob(DEFAULT_SYMBOLS, "comma-separated symbols, e.g. AAPL,MSFT")
    tick_interval: float = _knob(1.0, "seconds between price updates (one per symbol)")
    news_interval: float = _knob(3.0, "seconds between news sentiment updates")
    heartbeat_interval: float = _knob(1.0, "a feed silent this long sends HB")
    seed: int = _knob(42, "random seed: the same seed gives the same prices and news")
    momentum: float = _knob(0.0, "gateway's walk: this fraction of each tick's move carries into "
                                 "the next (0 = a pure random walk; 0.3 = prices trend)")
    shm_name: str = _knob("hftlab_book", "name of the shared-memory price book")
    short_window: int = _knob(5, "short moving average, in ticks")
    long_window: int = _knob(20, "long moving average, in ticks")
    bullish: int = _knob(60, "news sentiment above this is a BUY signal")
    bearish: int = _knob(40, "news sentiment below this is a SELL signal")
    order_qty: int = _knob(10, "quantity of each order (a position is +-this)")
    max_qty: int = _knob(1000, "order manager rejects orders above this quantity")
    price_band: float = _knob(0.10, "order manager rejects prices this fraction away from the book")
    fee_bps: float = _knob(1.0, "order manager's fee on each fill, in basis points of its value "
                                "(1 = 0.01 percent), added to --fee-per-share")
    fee_per_share: float = _knob(0.0, "order manager's fee on each fill, per share")
    position_limit: int = _knob(0, "order manager rejects an order that would take a strategy's "
                                   "position in a symbol beyond +-this (0 = no limit)")
    rate_limit: int = _knob(0, "order manager rejects orders on a connection past this many "
                               "messages in the last second (0 = no limit)")
    events: str = _knob("", "order manager appends a row per order, fill and reject to this CSV "
                            "(hftlab.events; empty = off)")
    journal: str = _knob("hftlab-run/orders.csv", "order manager's journal file")
    fsync: bool = _knob(False, "order manager forces each journal row to the disk (fsync) before "
                               "its ACK: survives a power loss, not only a crash, at a cost per order")
    strategy_id: str = _knob("strategy", "the strategy's name; a restarted strategy with the same "
                                         "name asks the order manager for its positions")
    poll_interval: float = _knob(0.001, "strategy's pause between looks at the book, in seconds, "
                                        "when it does not wait on the doorbell (--no-doorbell)")
    doorbell: bool = _knob(True, "strategy sleeps until the orderbook rings after a write "
                                 "(--no-doorbell: it looks every poll_interval instead)")
    send_delay: float = _knob(0.0, "strategy waits this many seconds more before each send: a "
                                   "slow path, made on purpose (hftlab match's slow:MS)")
    wake_timeout: float = _knob(0.25, "strategy's longest sleep on the doorbell, in seconds: "
                                      "a safety net, and how often its links are kept up when idle")
    bench_ticks: int = _knob(0, "gateway benchmark mode: each SIGUSR1 sends a burst of this many "
                                "price ticks as fast as subscribers take them (0 = off)")
    bench_rate: float = _knob(0.0, "offered rate of a benchmark burst in ticks per second "
                                   "(0 = as fast as possible)")
    replay: str = _knob("", "gateway replays this tick CSV (time,symbol,price; see hftlab record) "
                            "instead of its random walk (empty = the random walk)")
    news_subscribers: int = _knob(1, "a replay starts once this many clients subscribe to the news feed "
                                     "(30 s at most): hftlab match sets one per strategy")
    speed: float = _knob(1.0, "pace of a replay: 1 = as recorded, 2 = twice as fast, "
                              "0 = as fast as the subscribers take it")
    latency_log: str = _knob("", "strategy writes one CSV row per tick it sees, with every "
                                 "hop's timestamp, to this file (empty = off)")
    log_limit_mb: float = _knob(64.0, "a process's log keeps at most this many MiB of each run; past "
                                      "it one line says so and the rest is dropped (0 = no limit)")

    def __post_init__(self):
        if isinstance(self.symbols, str):
            object.__setattr__(self, "symbols", parse_symbols(self.symbols))
        else:
            object.__setattr__(self, "symbols", tuple(self.symbols))
        problems = list(self._problems())
        if problems:
            raise ValueError("; ".join(problems))

    def _problems(self):
        """Each thing wrong with this config, in a sentence (nothing: it can work)."""
        yield from self._symbol_problems()
        yield from self._port_problems()
        yield from self._trading_problems()
        yield from self._run_problems()

    def _symbol_problems(self):
        if not self.symbols:
            yield "at least one symbol is needed"
        for s in self.symbols:
            if not protocol.is_symbol(s):  # the wire's rule, which the book's field fits
                yield f"symbol {s!r} {protocol.SYMBOL_RULE}"
        if len(set(self.symbols)) != len(self.symbols):
            yield "symbols must be unique"
        if len(self.symbols) > book.MAX_SYMBOLS:
            yield f"the book holds at most {book.MAX_SYMBOLS} symbols; got {len(self.symbols)}"

    def _port_problems(self):
        ports = [getattr(self, name) for name in ("price_port", "news_port", "order_port")]
        for name, port in zip(("price_port", "news_port", "order_port"), ports):
            if not 0 <= port <= 65535:
                yield f"{name} must be 0..65535"
        if len(set(p for p in ports if p)) < len([p for p in ports if p]):
            yield "price_port, news_port and order_port must differ (one port serves one thing; 0 = any free port)"

    def _trading_problems(self):
        for name in ("tick_interval", "news_interval", "heartbeat_interval", "poll_interval",
                     "wake_timeout"):
            if not getattr(self, name) > 0:
                yield f"{name} must be positive"
        if not 1 <= self.short_window < self.long_window:
            yield "short_window must be at least 1 and less than long_window"
        if not 0 <= self.bearish <= self.bullish <= 100:
            yield "thresholds must satisfy 0 <= bearish <= bullish <= 100"
        if not 1 <= self.order_qty <= self.max_qty:
            yield "order_qty must be at least 1 and at most max_qty"
        elif self.max_qty < 2 * self.order_qty:
            # Turning long into short is one order of twice order_qty: every one would be rejected.
            yield (f"max_qty ({self.max_qty}) must be at least twice order_qty ({self.order_qty}), "
                   "since the strategy turns a long position short with one order of 2 x order_qty; "
                   "raise --max-qty or lower --order-qty")
        if not STRATEGY_ID_RE.match(self.strategy_id):
            yield f"strategy_id {self.strategy_id!r} must be 1-32 of A-Z a-z 0-9 _ -"
        if not self.price_band > 0:
            yield "price_band must be positive"
        if not (self.fee_bps >= 0 and self.fee_per_share >= 0):
            yield "fee_bps and fee_per_share must not be negative"
        if self.position_limit < 0 or self.rate_limit < 0:
            yield "position_limit and rate_limit must be 0 (no limit) or positive"
        elif 0 < self.position_limit < self.order_qty:
            yield (f"position_limit ({self.position_limit}) must be at least order_qty ({self.order_qty}), "
                   "or every order would be rejected")
        if not self.send_delay >= 0:
            yield "send_delay must not be negative"
        if not 0 <= self.momentum < 1:
            yield "momentum must be at least 0 and below 1"

    def _run_problems(self):
        try:
            book.check_name(self.shm_name)
        except ValueError as exc:
            yield str(exc)
        if self.bench_ticks < 0 or self.bench_rate < 0:
            yield "bench_ticks and bench_rate must not be negative"
        if not self.log_limit_mb >= 0:
            yield "log_limit_mb must be 0 (no limit) or positive"
        if self.news_subscribers < 1:
            yield "news_subscribers must be at least 1"
        if not self.speed >= 0:
            yield "speed must be 0 (as fast as possible) or positive"
        if self.replay and self.bench_ticks:
            yield "a replay and benchmark mode (bench_ticks) cannot be combined"

    def log_limit_bytes(self) -> int | None:
        """`log_limit_mb` in bytes, or None for no limit."""
        return int(self.log_limit_mb * 2**20) or None

    def replace(self, **changes) -> "Config":
        return dataclasses.replace(self, **changes)

    def to_args(self, everything: bool = False) -> list:
        """The flags that rebuild this config in a child process (only non-defaults,
        unless `everything`: a learner's command gets every value, see docs/roles.md)."""
        out = []
        default = Config()
        for f in fields(self):
            value = getattr(self, f.name)
            if everything or value != getattr(default, f.name):
                if isinstance(value, bool):
                    out.append(flag(f.name) if value else "--no-" + flag(f.name)[2:])
                else:
                    out += [flag(f.name), format_value(value)]
        return out

    def to_env(self) -> dict:
        """Every value as an environment variable, ``HFTLAB_PRICE_PORT=9000`` (`env_name`).

        Given to a learner's command (docs/roles.md), so a twenty-line script can read
        ``os.environ`` instead of parsing flags. Lists are comma-separated, booleans 1 or 0."""
        return {env_name(f.name): ("1" if v else "0") if isinstance(v, bool) else format_value(v)
                for f in fields(self) for v in [getattr(self, f.name)]}


def env_name(name: str) -> str:
    """The environment variable of a Config field: ``price_port`` -> ``HFTLAB_PRICE_PORT``."""
    return "HFTLAB_" + name.upper()


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def format_value(value) -> str:
    return ",".join(value) if isinstance(value, tuple) else str(value)


def parse_symbols(text: str) -> tuple:
    return tuple(s.strip().upper() for s in text.split(",") if s.strip())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per Config field; unset flags keep the Config default."""
    group = parser.add_argument_group("system configuration (shared by every process)")
    for f in fields(Config):
        if f.type == "bool":  # --fsync / --no-fsync
            group.add_argument(flag(f.name), dest=f.name, action=argparse.BooleanOptionalAction,
                               default=None,
                               help=f"{f.metadata['help']} (default: {'on' if f.default else 'off'})")
            continue
        kind = parse_symbols if f.type == "tuple" else {"int": int, "float": float}.get(f.type, str)
        group.add_argument(flag(f.name), dest=f.name, type=kind, default=None,
                           metavar=f.name.split("_")[-1].upper(),
                           help=f"{f.metadata['help']} (default: {format_value(f.default)})")


def from_args(args: argparse.Namespace, base: Config | None = None) -> Config:
    """Build a Config from parsed flags; raises ValueError naming what is wrong."""
    base = base or Config()
    given = {f.name: getattr(args, f.name) for f in fields(Config)
             if getattr(args, f.name, None) is not None}
    return base.replace(**given)


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")
