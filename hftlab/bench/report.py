"""The bench's results for people: a text table for the terminal and histograms.

Both read only the results dict that `hftlab.bench.bench` returns (the ``--json``
content, plus the raw samples for plots), so a saved run can be reported again.
"""

from __future__ import annotations

import numpy as np

from hftlab.bench.measure import RAM_DIR
from hftlab.bench.bare import BASELINE_HOPS
from hftlab.bench.runner import HOPS

__all__ = ["report", "plot", "report_journal_cost"]


def report(r: dict) -> str:
    """The results as a table for a terminal."""
    return "\n".join(_header(r) + [""] + _throughput_section(r) + [""] + _latency_section(r) + [""]
                     + _book_and_orders(r) + [""] + _cpu_section(r) + [""] + _targets_section(r))


def _header(r: dict) -> list:
    """What the figures were measured on: the machine, the clock, where the files were."""
    m = r["machine"]
    return [
        f"machine: {m['nproc']} CPUs, {m['cpu']}, Python {m['python']}, {m['system']}",
        f"clock: {r['clock']}; strategy waits "
        + ("on the doorbell" if r.get("doorbell") else f"polling every {r['poll_interval_s'] * 1e3:g} ms"),
        f"files: the journal and the logs in {r['files_in']}"
        + (" (in RAM: these figures measure IPC, not a disk; --journal-cost DIR measures one)"
           if r["files_in"] == RAM_DIR else ""),
    ]


def _throughput_section(r: dict) -> list:
    """THROUGHPUT: the bursts into the book beside the fair baseline and the stream's ceiling."""
    runs = r["throughput_runs"]
    return [
        f"THROUGHPUT  {runs['n']} bursts of {r['burst']['ticks']:,} ticks, gateway -> book (median run)",
        f"  hftlab orderbook  {r['throughput_ticks_per_s']:>12,.0f} ticks/s   "
        f"runs min {runs['min']:,.0f} / median {runs['median']:,.0f} / max {runs['max']:,.0f}; "
        f"{runs['gaps']} gaps, {runs['lost']} lost",
        f"  fair baseline     {r['fair_baseline_throughput_ticks_per_s']:>12,.0f} ticks/s   "
        "(split, convert, one seqlocked write a tick, bare) "
        f"hftlab/fair = {r['ratios']['throughput_vs_fair']:.2f}",
        f"  stream ceiling    {r['stream_ceiling_ticks_per_s']:>12,.0f} ticks/s   "
        f"(a reader that only splits lines) hftlab/ceiling = {r['ratios']['throughput']:.2f}",
        "  CPU during the burst (cores): " + ", ".join(
            f"{k} {v:.2f}" for k, v in r["burst"]["cpu_cores"].items() if v is not None),
    ]


def _latency_section(r: dict) -> list:
    """LATENCY: one row of percentiles per hop, hftlab's then the bare path's, and the CPU."""
    fmt = lambda x: "-" if x is None else f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"
    lines = [
        f"LATENCY  paced at {r['paced_ticks_per_s']:,.0f} ticks/s for {r['duration_s']:g} s, in microseconds",
        f"  {'hop':<26}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}{'n':>8}",
    ]

    def row(name, p):
        lines.append(f"  {name:<26}" + "".join(f"{fmt(p[k]):>9}" for k in ("p50", "p90", "p99", "max"))
                     + f"{p['n']:>8}")

    for h in HOPS:
        row("hftlab " + h.replace("_", " "), r["hops_us"][h])
    row("hftlab TICK-TO-TRADE", r["tick_to_trade_us"])
    for h in BASELINE_HOPS:
        row("bare " + h.replace("_", " "), r["baseline"]["hops_us"][h])
    row("bare TICK-TO-TRADE", r["baseline_tick_to_trade_us"])
    if "poll_floor_tick_to_trade_us" in r:
        row(f"bare, polling {r['poll_interval_s'] * 1e3:g} ms", r["poll_floor_tick_to_trade_us"])
    ratio = r["ratios"]["tick_to_trade_p50"]
    return lines + [
        f"  tick-to-trade p50 hftlab/bare = {ratio if ratio is not None else '-'}",
        "  CPU while paced (cores): " + ", ".join(
            f"{k} {v:.3f}" for k, v in {**r["paced"]["cpu_cores"], **{"bare " + k: v for k, v in
                                        r["baseline"]["cpu_cores"].items()}}.items() if v is not None),
    ]


def _book_and_orders(r: dict) -> list:
    """BOOK, CONFLATION, ORDERS: the footprint, the ticks never seen, the orders counted."""
    s = r["strategy"]
    return [
        f"BOOK  {r['book_bytes']} bytes of layout, {r['book_mapped_bytes']} bytes mapped, "
        f"{r['gaps']} gaps in the whole run",
        f"CONFLATION  the strategy saw {s['ticks_seen']:,} of the paced ticks and never saw "
        f"{s['ticks_missed']:,} (the book keeps only the latest price); bare poller missed "
        f"{r['baseline']['ticks_missed']:,}",
        f"ORDERS  {s['orders_journaled']} journalled, {s['orders_in_window']} in the paced window "
        "(tick-to-trade n" + (f"; the window goes on until {r['min_orders']} orders)"
                              if r.get("min_orders") else ")"),
    ]


def _cpu_section(r: dict) -> list:
    """CPU per process, idle and paced."""
    lines = ["CPU per process (cores), " + r["cpu_idle_cores"]["source"]]
    for phase in ("idle", "paced"):
        lines.append(f"  {phase:<6}" + ", ".join(
            f"{k} {'n/a' if v is None else f'{v:.3f}'}" for k, v in r["cpu_idle_cores"][phase].items()))
    return lines


def _targets_section(r: dict) -> list:
    """TARGETS: each with its figure and whether this run met it."""
    lines = ["TARGETS  (printed, never asserted: one run, this machine)"]
    for t in r["targets"].values():
        mark = {True: "met", False: "NOT met", None: "n/a"}[t["met"]]
        lines.append(f"  {t['target']:<48} {'-' if t['figure'] is None else t['figure']!s:>10}  {mark}")
    return lines


def plot(r: dict, path: str | None = None):
    """Histograms of every hop and of tick-to-trade, hftlab beside the baseline.

    Saves a PNG if `path` is given (Agg backend, no display needed); returns the figure."""
    import matplotlib
    if path:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ours, base = r["samples_ns"]["hftlab"], r["samples_ns"]["baseline"]
    panels = [("tick to trade", ours["tick_to_trade"], base["tick_to_trade"]),
              ("gateway -> book (bare: source -> shm)", ours["gateway_to_book"], base["source_to_shm"]),
              ("book -> strategy saw it (bare: shm -> poller)", ours["book_to_strategy"], base["shm_to_poller"]),
              ("strategy saw it -> decided", ours["strategy_decides"], []),
              ("order -> order manager (bare: poller -> sink)", ours["order_to_om"], base["poller_to_sink"])]
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.2 * len(panels)))
    every = [v for _, a, b in panels for v in (*a, *b) if v > 0]
    bins = np.logspace(np.log10(max(min(every), 1e3) / 1e3 * 0.9), np.log10(max(every) / 1e3 * 1.1), 60)
    for ax, (title, a, b) in zip(axes, panels):
        for values, label in ((a, "hftlab"), (b, "bare baseline")):
            if len(values):
                us = np.clip(np.asarray(values, dtype=float) / 1e3, bins[0], bins[-1])
                # Each sample weighs 1/n: the bars are fractions of the samples, comparable
                # between the two (density=True would divide by the log bins' widths).
                ax.hist(us, bins=bins, alpha=0.6, weights=np.full(len(us), 1 / len(us)),
                        label=f"{label} (p50 {np.median(us):,.0f} us, n={len(us)})")
        ax.set_xscale("log")
        ax.set_ylabel("fraction")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
    axes[-1].set_xlabel("microseconds (log scale); one clock: time.time_ns()")
    fig.suptitle(f"hftlab bench: {r['paced_ticks_per_s']:,.0f} ticks/s paced, poll "
                 f"{r['poll_interval_s'] * 1e3:g} ms, {r['machine']['nproc']} CPUs, "
                 f"Python {r['machine']['python']}",
                 fontsize=10)
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=90)
        plt.close(fig)
    return fig


def report_journal_cost(r: dict, directory: str) -> str:
    """The --journal-cost results as lines for a terminal."""
    lines = [f"order round trip (ORDER to ACK), journal in {directory}, microseconds:"]
    for key in ("off", "on"):
        p = r[key]
        lines.append(f"  fsync {key:<3}  p50 {p['p50']:>9,.1f}  p90 {p['p90']:>9,.1f}  p99 {p['p99']:>9,.1f}"
                     f"  max {p['max']:>9,.1f}  ({p['n']} orders)")
    lines.append(f"  an fsync costs an order about {r['on']['p50'] - r['off']['p50']:,.0f} us (p50 difference)")
    return "\n".join(lines)
