"""Do two builds of balloonsim give the same distribution of results? Many seeds of chosen configurations, compared.

    # with each build's own interpreter (the main checkout's venv, then this one's), the same selection:
    /work/main/.venv/bin/python benchmarks/distribution_check.py run --out /tmp/main.csv [--seeds 100]
    .venv/bin/python benchmarks/distribution_check.py run --out /tmp/new.csv [--seeds 100]
    .venv/bin/python benchmarks/distribution_check.py compare /tmp/main.csv /tmp/new.csv [--alpha 0.01]

A change of scheduling (when processes wake, the order of events at one instant) may change a run's bytes but
must not change what the runs say: per configuration and metric, the two samples (seeds 0..N-1 each) are compared
with a two-sample Mann-Whitney U test and a Kolmogorov-Smirnov test (do the distributions differ?) and, the seeds
being the same on both sides, a Wilcoxon signed-rank test of the per-seed differences (does the change shift
the runs one way?). Every metric whose samples differ at all is listed with how many seeds differ, both means
and medians, the mean per-seed difference with its 95 % interval, and the p-values; a metric is flagged when a
p-value is below alpha after Holm's correction over all the metrics compared (about 1,500 tests: at 0.01
uncorrected, fifteen would be flagged by chance). The configurations are the
reference scenario and, per shipped experiment, the design points chosen in `POINTS` (spread over its factors).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from pathlib import Path
from typing import Any

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"

# design point indexes per experiment (iter_points order): spread over the factors that change the mechanisms
POINTS: dict[str, list[int]] = {
    "accounting": [0, 3, 6],
    "gigantic": [0, 7, 14],
    "hot-remove": [2, 5, 11, 20],
    "hyperv-field-report": [0, 4, 8],
    "numa": [0, 9, 17],
    "partial-backing": [0, 3, 5, 7, 14, 30],
    "pressure": [0, 1, 14, 15, 28, 29],
    "quickstart": [0, 1, 2, 3, 5, 7],
}
SKIP = {"simpy_events"}  # the count of SimPy events is what a scheduling change changes on purpose


def configurations() -> list[tuple[str, dict[str, Any]]]:
    """(name, scenario) for the reference scenario and each chosen design point."""
    from balloonsim.bench.event_rate import REFERENCE_SCENARIO
    from balloonsim.experiment.design import iter_points
    from balloonsim.experiment.loader import load_experiment

    out: list[tuple[str, dict[str, Any]]] = [("reference", REFERENCE_SCENARIO)]
    for name, indexes in POINTS.items():
        exp = load_experiment(EXPERIMENTS / f"{name}.toml", check_runs=False)
        points = {p.index: p for p in iter_points(exp)}
        for i in indexes:
            out.append((f"{name}#{i}", points[i].config))
    return out


def run(out: Path, seeds: int, only: str | None) -> None:
    import balloonsim

    rows: list[dict[str, Any]] = []
    for name, config in configurations():
        if only and not name.startswith(only):
            continue
        started = time.perf_counter()
        for seed in range(seeds):
            metrics = balloonsim.simulate(config, seed=seed).metrics
            rows.append({"config": name, "seed": seed, **metrics})
        print(f"{name}: {seeds} seeds in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    columns: list[str] = []
    for r in rows:
        columns.extend(k for k in r if k not in columns)
    with out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, columns)
        writer.writeheader()
        writer.writerows(rows)


def _number(text: str) -> float | None:
    if text in ("", "nan"):
        return math.nan
    if text in ("True", "False"):
        return float(text == "True")
    try:
        return float(text)
    except ValueError:
        return None


def compare(a_path: Path, b_path: Path, alpha: float) -> int:
    import numpy as np
    from scipy import stats

    def load(path: Path) -> dict[tuple[str, int], dict[str, str]]:
        with path.open(newline="") as fh:
            return {(r["config"], int(r["seed"])): r for r in csv.DictReader(fh)}

    a, b = load(a_path), load(b_path)
    keys = sorted(set(a) & set(b))
    configs = sorted({c for c, _ in keys}, key=lambda c: (c != "reference", c))
    lines: list[tuple[str, tuple[float, float, float]]] = []  # (text, p-values)
    tests = 0
    identical: list[str] = []
    for config in configs:
        seeds = [s for c, s in keys if c == config]
        metrics = [m for m in a[(config, seeds[0])] if m not in ("config", "seed") and m not in SKIP]
        differing = 0
        for metric in metrics:
            xa = [_number(a[(config, s)].get(metric, "")) for s in seeds]
            xb = [_number(b[(config, s)].get(metric, "")) for s in seeds]
            if any(v is None for v in xa + xb):
                same = sum(a[(config, s)].get(metric) == b[(config, s)].get(metric) for s in seeds)
                if same != len(seeds):
                    differing += 1
                    lines.append((f"{config:24} {metric:28} {len(seeds) - same:7d} (text)", (1.0, 1.0, 1.0)))
                continue
            tests += 1
            va, vb = np.array(xa, dtype=float), np.array(xb, dtype=float)
            diff = int(np.sum(~((va == vb) | (np.isnan(va) & np.isnan(vb)))))
            if not diff:
                continue
            differing += 1
            fa, fb = va[~np.isnan(va)], vb[~np.isnan(vb)]
            p_mwu = p_ks = p_w = math.nan
            if len(fa) and len(fb) and not (np.all(fa == fa[0]) and np.all(fb == fa[0])):
                p_mwu = stats.mannwhitneyu(fa, fb, alternative="two-sided").pvalue
                p_ks = stats.ks_2samp(fa, fb).pvalue
            both = ~(np.isnan(va) | np.isnan(vb))
            d = vb[both] - va[both]
            if np.any(d != 0):
                p_w = stats.wilcoxon(d, zero_method="zsplit").pvalue
            half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d)) if len(d) > 1 else math.nan
            text = (
                f"{config:24} {metric:28} {diff:7d} {np.nanmean(va):12.5g} {np.nanmean(vb):12.5g} "
                f"{np.nanmedian(va):10.4g} {np.nanmedian(vb):10.4g} {d.mean():+11.4g} +-{half:<9.3g} "
                f"{p_mwu:8.3g} {p_ks:8.3g} {p_w:8.3g}"
            )
            lines.append((text, (p_mwu, p_ks, p_w)))
        if not differing:
            identical.append(config)
    # Holm over every test of every metric compared (three per metric)
    ps = sorted(p for _, trio in lines for p in trio if not math.isnan(p))
    m = 3 * tests
    cut = -1.0  # the largest p-value Holm rejects (none: -1)
    for i, p in enumerate(ps):
        if p > alpha / (m - i):
            break
        cut = p
    print(
        f"{'config':24} {'metric':28} {'seeds!=':>7} {'mean A':>12} {'mean B':>12} {'med A':>10} {'med B':>10} "
        f"{'mean B-A':>11} {'95% +-':<11} {'p MWU':>8} {'p KS':>8} {'p Wilc':>8}"
    )
    moved = 0
    for text, trio in lines:
        flag = " *" if any(p <= cut for p in trio if not math.isnan(p)) else ""
        moved += bool(flag)
        print(text + flag)
    print(f"\nconfigurations with every metric identical for every seed: {', '.join(identical) or 'none'}")
    print(f"metrics compared: {tests} in {len(configs)} configurations; differing in some seed: {len(lines)}")
    print(f"metrics whose distribution moved (* : p < {alpha} by a test, Holm-corrected over {m} tests): {moved}")
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--seeds", type=int, default=100)
    r.add_argument("--only", help="configurations whose name starts with this")
    c = sub.add_parser("compare")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    c.add_argument("--alpha", type=float, default=0.01)
    args = ap.parse_args()
    if args.cmd == "run":
        run(args.out, args.seeds, args.only)
    else:
        sys.exit(compare(args.a, args.b, args.alpha))


if __name__ == "__main__":
    main()
