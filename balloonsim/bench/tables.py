"""A benchmark result as Markdown tables: readable in a terminal, pasteable into benchmarks/README.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from balloonsim.bench.bytecode import describe as describe_bytecode
from balloonsim.units import format_size


def _num(x: Any, fmt: str = ",.0f") -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int | float):
        return format(x, fmt)
    return str(x)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    right = [i > 0 for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return (
            "| "
            + " | ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=True))
            + " |"
        )

    sep = "|" + "|".join("-" * (w + 1) + (":" if r else "-") for w, r in zip(widths, right, strict=True)) + "|"
    return [line(header), sep, *(line(r) for r in rows)]


def format_table(result: dict[str, Any]) -> str:
    """The measurements and goals as Markdown tables (readable in a terminal, pasteable into a README)."""
    m = result["machine"]
    res = result["results"]
    host = result.get("host_cpu", {})
    others = ", ".join(f"{k} {v['others_cores']:.2f}" for k, v in host.items() if "others_cores" in v)
    lines = [
        f"balloonsim bench{' --quick' if result.get('quick') else ''}: {m['cpu']}, {m['cores']} cores, "
        f"{m.get('memory_gib')} GiB, "
        f"Python {m['python']}, simpy {m['simpy']}, {m['date']}, git {m.get('git')}, "
        f"{result.get('bench_wall_s', 0):.0f} s",
        f"host: cores busy with other processes on average: {others or 'unknown'}; "
        f"load average {result.get('load_before')} -> {result.get('load_after')}",
        *([describe_bytecode(result["bytecode"])] if "bytecode" in result else []),
        "",
    ]
    if "bare" in res or "reference" in res:
        rows = []
        if "bare" in res:
            b = res["bare"]
            rows.append(
                [
                    "1. bare SimPy: timeout events/s",
                    _num(b["events_per_s"]),
                    f"best of {b['repeats']}, {b['events']:,} events",
                ]
            )
        if "reference" in res:
            r = res["reference"]
            note = f"best of {r['repeats']}, {r['simpy_events']:,} events in {r['wall_s'] * 1e3:.1f} ms"
            rows.append(["2. reference: SimPy events/s", _num(r["events_per_s"]), note])
            rows.append(["2. reference / bare SimPy", _num(r.get("ratio_to_bare"), ".3f"), "events/s over events/s"])
            rows.append(
                [
                    "2. reference: simulated s / wall s",
                    _num(r["sim_s_per_wall_s"]),
                    f"{r['sim_s']:.0f} s simulated; construction {r['construct_s'] * 1e3:.1f} ms (excluded)",
                ]
            )
            if "bare" in res:
                rows.append(
                    [
                        "2. simulated s per wall s / bare SimPy events/s",
                        _num(r["sim_s_per_wall_s"] / res["bare"]["events_per_s"], ".3f"),
                        "what users feel, against SimPy's own limit",
                    ]
                )
        lines += _table(["measure", "value", "notes"], rows) + [""]
    if "scale" in res:
        rows = []
        for p in res["scale"]["points"]:
            if "error" in p:
                rows.append([format_size(p["size"]), p["strategy"], "-", "-", "-", "-", "-", "-", "-", p["error"]])
                continue
            rows.append(
                [
                    format_size(p["size"]),
                    p["strategy"],
                    format_size(p["boot"]),
                    _num(p["blocks"]),
                    _num(p["wall_s"], ".3f"),
                    _num(p["us_per_block"], ".1f"),
                    _num(p["marginal_us_per_block"], ".1f"),
                    _num(p["peak_rss_mib"], ".0f"),
                    _num(p.get("others_cores"), ".2f"),
                    "ok" if p["ok"] else "; ".join(p["errors"]) or "not all online",
                ]
            )
        lines += ["3. scale: hot-add of one range + online in 128 MiB blocks, one subprocess per row", ""]
        lines += _table(
            [
                "size",
                "strategy",
                "boot",
                "blocks",
                "wall s",
                "us/block",
                "marginal us/block",
                "peak RSS MiB",
                "others' cores",
                "result",
            ],
            rows,
        ) + [""]
        one = res["scale"].get("one_at_a_time", [])
        if one:
            rows = []
            for p in one:
                if "error" in p:
                    rows.append([format_size(p["size"]), p["strategy"], "-", "-", "-", "-", "-", "-", p["error"]])
                    continue
                stopped = f"stopped at the {p['budget_s']:.0f} s budget"
                outcome = "ok" if p["ok"] else ("; ".join(p["errors"]) or stopped)
                rows.append(
                    [
                        format_size(p["size"]),
                        p["strategy"],
                        f"{p['blocks_done']:,}/{p['blocks']:,}",
                        _num(p["wall_s"], ".2f"),
                        _num(p["us_per_block"], ".1f"),
                        _num(p["last_tenth_us_per_block"], ".1f"),
                        str(p.get("repeats", 1)),
                        _num(p["peak_rss_mib"], ".0f"),
                        outcome,
                    ]
                )
            lines += ["3b. scale: one add_memory() + online per 128 MiB block, as drivers add memory", ""]
            header = ["size", "strategy", "blocks", "wall s", "us/block", "last tenth us/block", "runs", "peak RSS MiB"]
            lines += _table([*header, "result"], rows) + [""]
        cli = res["scale"].get("cli", [])
        if cli:
            rows = [
                [
                    p.get("command", format_size(p.get("size", 0))),
                    _num(p.get("wall_s"), ".2f"),
                    _num(p.get("peak_rss_mib"), ".0f"),
                    str(p.get("exit", p.get("error", "-"))),
                ]
                for p in cli
            ]
            lines += ["3c. scale: the command itself (imports included)", ""]
            lines += _table(["command", "wall s", "peak RSS MiB", "exit"], rows) + [""]
    if "startup" in res:
        st = res["startup"]
        rows = [[name, _num(v["ms"], ".0f"), _num(v["x_import_click"], ".2f")] for name, v in st["commands"].items()]
        lines += [f"5. CLI start-up: fresh processes, alternating, best of {st['repeats']}", ""]
        lines += _table(["command", "ms", "x import click"], rows) + [""]
    if "sweeps" in res:
        sw = res["sweeps"]
        if "skipped" in sw:
            lines += [f"4. sweeps: skipped ({sw['skipped']})", ""]
        else:
            rows = []
            for p in [*sw["modes"].values(), sw["growth"]]:
                if "error" in p:
                    rows.append([p["mode"], "-", "-", "-", "-", "-", "-", "-", "-", "-", p["error"]])
                    continue
                rows.append(
                    [
                        p["mode"],
                        _num(p["runs"]),
                        _num(p["wall_s"], ".2f"),
                        _num(p["batch_s"], ".2f"),
                        _num(p["runs_per_s"], ".1f"),
                        _num(p["run_s"] / p["runs"] * 1e3 if p.get("runs") else None, ".1f"),
                        _num(p.get("worker_busy"), ".0%"),
                        _num(p.get("runner_cpu_s"), ".1f"),
                        _num(p["runner_peak_rss_mib"], ".0f"),
                        _num(p.get("others_cores"), ".2f"),
                        f"{p['failed']} failed; {p['executor']}",
                    ]
                )
            lines += [
                f"4. sweeps: {Path(sw['experiment']).name}, fresh temp dir each, quiet, no report "
                "(wall includes executor start/stop; batch is the runner's own timer)",
                "",
            ]
            lines += _table(
                [
                    "mode",
                    "runs",
                    "wall s",
                    "batch s",
                    "runs/s",
                    "ms/run",
                    "workers busy",
                    "runner CPU s",
                    "runner RSS MiB",
                    "others' cores",
                    "notes",
                ],
                rows,
            )
            lines += [
                "",
                f"speedup jobs 2 / jobs 1: {_num(sw.get('speedup_jobs2'), '.2f')} (ceiling with these start-up and "
                f"stop times, a batch exactly halved: {_num(sw.get('speedup_jobs2_ceiling'), '.2f')}); "
                f"dask overhead vs jobs 2: {_num(sw.get('dask_overhead_pct'), '+.0f')}% wall, "
                f"{_num(sw.get('dask_batch_overhead_pct'), '+.0f')}% batch; runner RSS growth "
                f"{_num(sw.get('runner_rss_growth'), '.3f')}x; CPU of the whole batch (runner and workers), "
                f"jobs 2 / jobs 1: {_num(sw.get('cpu_jobs2_over_jobs1'), '.3f')}",
            ]
            cap = sw.get("parallel_capacity", {})
            if "capacity" in cap:
                lines += [
                    f"parallel capacity (two bare-SimPy processes together over one alone; 2.00 = two idle cores), "
                    f"measured before each round: {', '.join(f'{c:.2f}' for c in cap['all'])}"
                ]
            analysis = sw.get("analysis")
            if analysis:
                lines += [
                    f"analysis after a jobs 2 run (analyze, plots, report, its imports included): "
                    f"{analysis['analysis_s']:.2f} s against the batch's {analysis['batch_s']:.2f} s, "
                    f"{analysis['analysis_over_batch']:.2f}x (best round; each round: "
                    f"{', '.join(f'{r:.2f}' for r in analysis['all_over_batch'])})"
                ]
            for i, r in enumerate(sw.get("rounds", []), 1):
                dask_pct = _num(r.get("dask_overhead_pct"), "+.0f")
                lines += [
                    f"round {i}: capacity {_num(r.get('capacity'), '.2f')}, jobs 2 / jobs 1 "
                    f"{_num(r.get('speedup_jobs2'), '.2f')}x, dask over jobs 2 {dask_pct}%, "
                    f"analysis / batch {_num(r.get('analysis_over_batch'), '.2f')}x"
                ]
            lines += [""]
    if result.get("goals"):
        rows = [
            [
                g["measure"],
                _num(g["value"], ".3g"),
                f"{g['op']} {g['goal']:g}",
                "not measured" if g["reached"] is None else ("yes" if g["reached"] else "no"),
                g["note"],
            ]
            for g in result["goals"]
        ]
        lines += ["goals (ratios of figures measured side by side, so that they hold on a busy host)", ""]
        lines += _table(["measure", "measured", "goal", "reached", "notes"], rows)
    return "\n".join(lines).rstrip() + "\n"
