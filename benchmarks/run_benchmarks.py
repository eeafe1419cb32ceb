"""Run the full benchmark (`balloonsim bench`, all sections) and keep its figures.

    .venv/bin/python benchmarks/run_benchmarks.py            # -> benchmarks/results.json, table on stdout
    .venv/bin/python benchmarks/run_benchmarks.py --quick    # the < 1 min set, same outputs

The table is Markdown: paste it into benchmarks/README.md with the machine line above it.  Takes about
3 minutes on 2 cores.  Measures and prints; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from balloonsim.bench.suite import measure
from balloonsim.bench.tables import format_table

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the smaller set (scale up to 256 GiB, fewer runs)")
    ap.add_argument("--only", action="append", metavar="NAME", help="bare, reference, scale, sweeps")
    ap.add_argument(
        "--wait-quiet",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="before each section wait up to this long for other processes to leave the CPUs [120]",
    )
    ap.add_argument("--out", type=Path, default=HERE / "results.json", help="JSON output [benchmarks/results.json]")
    args = ap.parse_args(argv)
    result = measure(
        quick=args.quick,
        only=args.only,
        wait_quiet_s=args.wait_quiet,
        progress=lambda msg: print(f"bench: {msg}", file=sys.stderr, flush=True),
    )
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(format_table(result), end="")
    print(f"\nwrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
