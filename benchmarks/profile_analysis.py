"""Where the analysis after a batch spends its time: the caller's imports, the load, the drawers' imports, each
figure on its drawer, the report. The quickstart's goal (analysis < batch) is bound by this path.

    .venv/bin/python benchmarks/profile_analysis.py [RESULTS_DIR] [--repeats 5]

Without RESULTS_DIR it runs the quickstart first (`balloonsim run experiments/quickstart.toml --no-report` into a
temporary directory). Each repeat copies the batch's data (not its CSVs, figures or report) to a fresh directory
and runs `balloonsim.analysis.finish()` there in a fresh interpreter, as `balloonsim run` does after its batch,
with each phase timed from the child's first line (what the drawers do is timed in the drawers: they append to
the same log). The median of each mark over the repeats is printed, then the critical path and the figures'
CPU. Measures and prints; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
ANALYSIS_OUTPUTS = ("summary.csv", "comparisons.csv", "metrics.csv", "REPORT.md", "report.html", "plots")
CHILD = """
import json, os, sys, time
T0 = time.perf_counter()
log = open(sys.argv[2], "a", buffering=1)
def mark(what, **more):
    log.write(json.dumps({"what": what, "t": time.perf_counter() - T0, "pid": os.getpid(), **more}) + "\\n")
from balloonsim.analysis import pipeline
import balloonsim.analysis.plots as plots
import balloonsim.analysis.report as report
mark("imports")
def timed(module, name):
    original = getattr(module, name)
    def wrapper(*args, **kwargs):
        mark(name + " begins")
        value = original(*args, **kwargs)
        mark(name + " ends")
        return value
    setattr(module, name, wrapper)
timed(pipeline, "load")
timed(plots, "_load_drawers")
timed(report, "draft")
timed(report, "write_report")
draw = plots._draw
def drawn(name, args):
    began = time.perf_counter() - T0
    value = draw(name, args)
    mark("figure", figure=name, began=began)
    return value
plots._draw = drawn
pipeline.finish(sys.argv[1])
mark("finish")
"""


def _data_copy(results: Path, into: Path) -> Path:
    """The batch's own files, without what the analysis writes."""
    shutil.copytree(results, into, ignore=lambda _d, names: [n for n in names if n in ANALYSIS_OUTPUTS])
    return into


def _one(results: Path, scratch: Path, k: int) -> list[dict]:
    target = _data_copy(results, scratch / f"r{k}")
    log = scratch / f"log{k}.jsonl"
    subprocess.run([sys.executable, "-c", CHILD, str(target), str(log)], check=True, stderr=subprocess.DEVNULL, cwd="/")
    return [json.loads(line) for line in log.read_text().splitlines()]


def _first(marks: list[dict], what: str) -> float | None:
    return next((m["t"] for m in marks if m["what"] == what), None)


def summarize(marks: list[dict]) -> dict[str, float]:
    """One repeat's marks as phases (seconds from the child's first line)."""
    figures = [m for m in marks if m["what"] == "figure"]
    drawers = {m["pid"] for m in figures}
    out = {
        "imports": _first(marks, "imports"),
        "load begins": _first(marks, "load begins"),
        "load ends": _first(marks, "load ends"),
        "drawer imports begin": _first(marks, "_load_drawers begins"),
        "drawer imports end": _first(marks, "_load_drawers ends"),
        "first figure begins": min(m["began"] for m in figures),
        "last figure ends": max(m["t"] for m in figures),
        "report draft ends": _first(marks, "draft ends"),
        "report written": _first(marks, "write_report ends"),
        "finish": _first(marks, "finish"),
        "figures' CPU": sum(m["t"] - m["began"] for m in figures),
        "drawers": float(len(drawers)),
    }
    drawn = Counter(m["figure"] for m in figures)
    for m in figures:
        key = f"figure {m['figure']}" + (f" (x{drawn[m['figure']]})" if drawn[m["figure"]] > 1 else "")
        out[key] = out.get(key, 0.0) + m["t"] - m["began"]
    return {k: v for k, v in out.items() if v is not None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="?", type=Path, help="a finished batch [the quickstart, run now]")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="balloonsim-analysis-") as tmp:
        scratch = Path(tmp)
        results = args.results
        if results is None:
            results = scratch / "quickstart"
            exe = Path(sys.executable).parent / "balloonsim"
            subprocess.run(
                [str(exe), "run", str(HERE.parent / "experiments" / "quickstart.toml"), "--out", str(results)]
                + ["--quiet", "--no-report"],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        runs = [summarize(_one(results, scratch, k)) for k in range(args.repeats)]
    keys = list(dict.fromkeys(k for r in runs for k in r))
    median = {k: statistics.median(r[k] for r in runs if k in r) for k in keys}
    print(f"analysis of {results.name}: finish() in a fresh interpreter, median of {args.repeats} repeats (s)\n")
    width = max(len(k) for k in keys)
    for k in keys:
        if k != "drawers":
            print(f"  {k.ljust(width)}  {median[k]:7.3f}")
    path = [
        ("the caller's imports", median["imports"]),
        ("load", median["load ends"] - median["load begins"]),
        ("first drawer's imports", median["drawer imports end"] - median["drawer imports begin"]),
        ("figures", median["last figure ends"] - median["first figure begins"]),
        ("report, after the last figure", median["finish"] - median["last figure ends"]),
    ]
    print("\nphases: " + ", ".join(f"{name} {seconds:.2f}" for name, seconds in path))
    cpu = median["figures' CPU"]
    longest = max((k for k in keys if k.startswith("figure ")), key=median.__getitem__)
    print(
        f"figures: {cpu:.2f} s of CPU on {median['drawers']:.0f} drawers; the longest, "
        f"{longest.removeprefix('figure ')}, {median[longest]:.2f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
