"""`balloonsim validate`: the model against recordings of real kernels, or (--record) new recordings."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from balloonsim.errors import UserError

REPO = Path(__file__).resolve().parents[2]
VALIDATION = REPO / "validation"


def _record(cases: tuple[str, ...], kernels: tuple[str, ...], out: Path) -> None:
    if not (VALIDATION / "harness" / "record.py").exists():
        raise UserError(f"--record needs the harness in {VALIDATION / 'harness'} (a source checkout of balloonsim)")
    sys.path.insert(0, str(REPO))
    try:
        from validation.harness.cases import get_cases
        from validation.harness.record import record
    finally:
        sys.path.remove(str(REPO))
    try:
        get_cases(list(cases) or None)
    except KeyError as exc:
        raise UserError(str(exc.args[0])) from None
    _, failed = record(list(cases) or None, list(kernels) or None, out, log=lambda m: click.echo(m, err=True))
    if failed:
        raise click.ClickException(f"{len(failed)} recording(s) failed; see above")


def _table(rows, known_order: list[int]) -> str:
    head = ("case", "kernel", "quantity", "real", "model", "tolerance", "agree")
    cells = []
    for r in rows:
        mark = "yes" if r.agree else f"known [{known_order.index(r.known_index) + 1}]" if r.known else "NO"
        cells.append((r.case, r.kernel, r.quantity, str(r.real), str(r.model), r.tolerance, mark))
    widths = [min(60, max(len(h), *(len(c[i]) for c in cells))) for i, h in enumerate(head)] if cells else []
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip()]
    for c in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip())
    return "\n".join(lines)


@click.command()
@click.argument("cases", nargs=-1)
@click.option("--record", is_flag=True, help="Run the real guests (QEMU; root for apt) and rewrite the recordings.")
@click.option("--kernel", "kernels", multiple=True, help="Only this kernel release (6.1, 6.12, 6.18); repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print {'cases': [...]} instead of the table.")
@click.option("--disagreements", is_flag=True, help="Show only the rows that do not agree.")
@click.option(
    "--recorded",
    type=click.Path(file_okay=False, path_type=Path),
    default=VALIDATION / "recorded",
    show_default="validation/recorded",
    help="Directory of recordings.",
)
@click.option(
    "--known",
    "known_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=VALIDATION / "known-disagreements.toml",
    show_default="validation/known-disagreements.toml",
    help="The listed known disagreements.",
)
@click.option(
    "--write-coverage",
    is_flag=True,
    help="Also rewrite what a study's report says about the metrics the recordings check "
    "(balloonsim/validate/coverage.json); needs every case and kernel.",
)
def validate(cases, record, kernels, as_json, disagreements, recorded, known_path, write_coverage) -> None:
    """Compare the model with real Linux kernels recorded under QEMU.

    The recordings and how they are made: validation/README.md. Exit status 0 when every quantity agrees within
    its tolerance or is a listed known disagreement.
    """
    from balloonsim.validate.compare import apply_known, compare
    from balloonsim.validate.known import load_known
    from balloonsim.validate.parse import RecordingError, load_recordings

    if write_coverage and (cases or kernels):
        raise UserError("--write-coverage needs every case and kernel: leave out the cases and --kernel")
    if record:
        _record(cases, kernels, recorded)
    recs = load_recordings(recorded)
    names = {r.case for r in recs}
    unknown = [c for c in cases if c not in names]
    if unknown:
        raise UserError(f"no recording of case {unknown[0]!r} in {recorded} (known: {', '.join(sorted(names))})")
    recs = [r for r in recs if (not cases or r.case in cases) and (not kernels or r.kernel in kernels)]
    known = load_known(known_path)
    rows = []
    for rec in recs:
        try:
            rows += compare(rec)
        except (KeyError, TypeError, StopIteration) as exc:
            raise RecordingError(f"{rec.path.name}: a step lacks {exc!s} (re-record it)") from None
    apply_known(rows, known)
    shown = [r for r in rows if not r.agree] if disagreements else rows
    failing = [r for r in rows if not r.ok]
    if as_json:
        click.echo(json.dumps({"cases": [r.as_dict() for r in shown]}, indent=1))
    else:
        reasons = dict(sorted({r.known_index: r.known for r in rows if r.known}.items()))  # in file order
        click.echo(_table(shown, list(reasons)))
        if reasons:
            click.echo("\nknown disagreements (validation/known-disagreements.toml):")
            for n, reason in enumerate(reasons.values(), 1):
                click.echo(f"  [{n}] {reason}")
        click.echo("\n" + summary(recs, rows))
    if failing:
        sys.exit(1)
    if write_coverage:
        from balloonsim.validate.coverage import COVERAGE_FILE, coverage, dumps

        COVERAGE_FILE.write_text(dumps(coverage(recs, rows, known)))
        click.echo(f"coverage: {COVERAGE_FILE}", err=True)


def summary(recs, rows) -> str:
    cases = sorted({r.case for r in recs})
    kernels = sorted({r.kernel for r in recs}, key=lambda k: tuple(int(x) for x in k.split(".")))
    agree = sum(r.agree for r in rows)
    known = sum(1 for r in rows if not r.agree and r.known)
    bad = len(rows) - agree - known
    return (
        f"{_count(len(cases), 'case')} on {_count(len(kernels), 'kernel')} ({', '.join(kernels)}), "
        f"{_count(len(recs), 'recording')}: {_count(len(rows), 'quantity', 'quantities')}, {agree} agree, "
        f"{_count(known, 'known disagreement')}, {bad} disagree"
    )


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"
