"""`balloonsim run EXPERIMENT.toml`: thin; parses options, calls the library, prints the summary."""

from __future__ import annotations

from pathlib import Path

import click

from balloonsim.errors import UserError


@click.command("run")
@click.argument("experiment", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), help="Results directory [results/<name>].")
@click.option("--jobs", "-j", type=click.IntRange(min=1), help="Worker processes [number of cores].")
@click.option(
    "--dask",
    metavar="ADDR|local",
    help="Run on Dask: 'local' starts worker processes reachable only by this run (TLS on 127.0.0.1), "
    "or a scheduler's address, e.g. tcp://host:8786.",
)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a key, e.g. base.guest.boot=8G.")
@click.option("--dry-run", is_flag=True, help="Print the design size and first runs; run nothing, write nothing.")
@click.option("--force", is_flag=True, help="Replace results of a different experiment in the directory.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option("--events", is_flag=True, help="Also keep every run's event log.")
@click.option(
    "--timeseries",
    type=click.Choice(["parquet", "csv"]),
    default="parquet",
    show_default=True,
    help="Format of the time series (and events) file.",
)
@click.option("--no-report", is_flag=True, help="Do not run the analysis and report afterwards.")
@click.option(
    "--report",
    "redraw",
    is_flag=True,
    help="Redraw the analysis and report even when every run was done already (otherwise nothing is written).",
)
@click.pass_context
def run(
    ctx: click.Context,
    experiment: Path,
    out: Path | None,
    jobs: int | None,
    dask: str | None,
    overrides: tuple[str, ...],
    dry_run: bool,
    force: bool,
    quiet: bool,
    events: bool,
    timeseries: str,
    no_report: bool,
    redraw: bool,
) -> None:
    """Run every combination of an experiment's factors, replicated; resume if interrupted.

    Results go to results/<name>/: runs.csv, timing.csv, time series, metadata.json. Rerunning skips finished
    runs and retries failed ones; raising replications or adding levels runs only the new runs; rerunning a
    finished experiment changes nothing (add --report to redraw the report). Exit status: 0 all ok, 1 some
    runs failed, 2 bad input.

    \b
    Examples:
      balloonsim run experiments/pressure.toml --dry-run
      balloonsim run experiments/quickstart.toml --dry-run --set replications=3 --out /tmp/q
    """
    if not dry_run and experiment.is_file():
        from balloonsim.experiment.forkserver import start_early

        start_early(jobs, dask)  # the workers' imports begin now, beside the runner's below
    # the runner and its libraries (pydantic, numpy, pyarrow) load only once there is something to run:
    # `balloonsim run --help` costs click and this module
    from balloonsim.experiment.runner import default_out_dir, run_experiment

    if dry_run:
        from balloonsim.experiment.loader import load_experiment
        from balloonsim.experiment.plan import describe_plan

        exp = load_experiment(experiment, overrides)
        click.echo(describe_plan(exp, out or default_out_dir(exp)))
        return
    try:
        summary = run_experiment(
            experiment,
            out_dir=out,
            jobs=jobs,
            dask=dask,
            overrides=overrides,
            force=force,
            quiet=quiet,
            events=events,
            timeseries=timeseries,
        )
    except KeyboardInterrupt:
        click.echo("balloonsim: interrupted; finished runs are kept, rerun the same command to resume", err=True)
        ctx.exit(130)
    click.echo(summary.text())
    code = 1 if summary.failed else 0
    report = summary.out_dir / "REPORT.md"
    if not no_report and summary.ok and (redraw or not summary.unchanged):
        click.echo("analysis: summary, comparisons, figures and report ...", err=True)
        code = max(code, _report(summary.out_dir))
        if code <= 1 and report.exists():
            click.echo(f"report: {report}")
    elif summary.unchanged and report.exists():
        click.echo(f"report: {report} (unchanged; --report redraws it)")
    ctx.exit(code)


def _report(out_dir: Path) -> int:
    """Analysis, plots and report (`balloonsim.analysis.finish`); 1 if they fail, the results kept."""
    from balloonsim.analysis import finish  # pandas, scipy, matplotlib: only once the runs are done
    from balloonsim.experiment.worker import error_text

    try:
        finish(out_dir)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - results are safe on disk; say what went wrong and exit 1
        click.echo(f"balloonsim: report failed: {error_text(exc)}", err=True)
        return 1
    return 0
