"""Start-up time of each `balloonsim` command against `python -c "import click"` in the same interpreter.

    .venv/bin/python benchmarks/startup.py                      # this checkout's .venv/bin/balloonsim
    .venv/bin/python benchmarks/startup.py --compare /other/checkout/.venv/bin/balloonsim --repeats 20

Each round runs the baseline and every command once, in alternation, as fresh processes; each keeps its best
(minimum) wall time, so a busy host hits all of them alike and the ratios hold. A command's start-up is
`balloonsim COMMAND --help`: click parses the options only after importing the command's module, so this is
what the command costs before it does any work. `--compare` measures another installation the same way in the
same rounds (its own interpreter's `import click` is its baseline). Each installation's bytecode is cached first
(balloonsim.bench.bytecode). Measures and prints; asserts nothing.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from balloonsim.bench.bytecode import cache_bytecode, describe

COMMANDS: tuple[tuple[str, ...], ...] = (
    ("--version",),
    ("--help",),
    ("hotplug", "--help"),
    ("hotplug", "--boot", "2G", "--size", "1G", "--at", "4G", "--strategy", "altmap"),
    ("simulate", "--help"),
    ("run", "--help"),
    ("analyze", "--help"),
    ("plot", "--help"),
    ("report", "--help"),
    ("bench", "--help"),
)
BASELINE = ("-c", "import click")


def _wall(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def measure(executables: list[Path], repeats: int) -> list[dict[tuple[str, ...], float]]:
    """Best wall time (s) per command and per executable, the baseline under the key BASELINE."""
    best: list[dict[tuple[str, ...], float]] = [{} for _ in executables]
    for _ in range(repeats):
        for i, exe in enumerate(executables):
            python = str(exe.parent / "python")
            for key, argv in [(BASELINE, [python, *BASELINE]), *((c, [str(exe), *c]) for c in COMMANDS)]:
                wall = _wall(argv)
                best[i][key] = min(best[i].get(key, wall), wall)
    return best


def label(exe: Path) -> str:
    """The checkout's name for CHECKOUT/.venv/bin/balloonsim, else the path."""
    return exe.parents[2].name if exe.parent.parent.name == ".venv" else str(exe)


def table(executables: list[Path], best: list[dict[tuple[str, ...], float]]) -> str:
    header = ["command"]
    for exe in executables:
        header += [f"{label(exe)} ms", "x import click"]
    rows = [[f'python -c "{BASELINE[1]}"', *(x for b in best for x in (f"{b[BASELINE] * 1e3:.0f}", "1.00"))]]
    for command in COMMANDS:
        cells = [f"balloonsim {' '.join(command)}"]
        for b in best:
            cells += [f"{b[command] * 1e3:.0f}", f"{b[command] / b[BASELINE]:.2f}"]
        rows.append(cells)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(header, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 1) + ("-" if i == 0 else ":") for i, w in enumerate(widths)) + "|")
    for r in rows:
        lines.append(
            "| "
            + " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
            + " |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--balloonsim",
        type=Path,
        default=Path(sys.executable).parent / "balloonsim",
        help="the executable measured [the one beside this interpreter]",
    )
    ap.add_argument("--compare", type=Path, action="append", default=[], help="another installation's balloonsim")
    ap.add_argument("--repeats", type=int, default=15, help="rounds; each command keeps its best [15]")
    args = ap.parse_args(argv)
    executables = [args.balloonsim, *args.compare]
    cached = [cache_bytecode(exe.parent / "python") for exe in executables]  # as after a user's first command
    best = measure(executables, args.repeats)
    print(f"best of {args.repeats}, each round alternating all commands; Python {sys.version.split()[0]}")
    for exe, info in zip(executables, cached, strict=True):
        print(f"{label(exe)}: {exe}; {describe(info)}")
    print()
    print(table(executables, best))
    return 0


if __name__ == "__main__":
    sys.exit(main())
