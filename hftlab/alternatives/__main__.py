"""``python -m hftlab.alternatives``: run every comparison and print the tables."""

import argparse
import sys

from hftlab.alternatives import report, run_all, summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hftlab.alternatives",
                                     description=run_all.__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=200_000, help="ticks per feed run")
    parser.add_argument("--latency-ticks", type=int, default=1000, help="paced ticks per latency run")
    parser.add_argument("--book-seconds", type=float, default=0.5,
                        help="longest reading (and snapshotting) phase per book store")
    parser.add_argument("--runs", type=int, default=1, help="repeat everything this many times")
    args = parser.parse_args(argv)
    runs = []
    for run in range(1, args.runs + 1):
        if args.runs > 1:
            print(f"== run {run} of {args.runs}", flush=True)
        runs.append(run_all(args.ticks, args.latency_ticks, book_seconds=args.book_seconds,
                            say=lambda line: print(line, file=sys.stderr, flush=True)))
        print(report(runs[-1]), flush=True)
        print(flush=True)
    if len(runs) > 1:
        print(f"== min / median / max over {len(runs)} runs", flush=True)
        print(summary(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
