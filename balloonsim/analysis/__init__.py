"""Turn a results directory into an answer: summary.csv, comparisons.csv, plots/ and REPORT.md/report.html.

`finish(dir)` runs the three steps in order; `balloonsim run` calls it at the end unless --no-report.
The four steps load on first use (PEP 562): the package itself imports nothing, so a light module of it (the
command line's, `confidence`) does not bring pandas and scipy with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from balloonsim.analysis.pipeline import analyze, finish, plot, report

__all__ = ["analyze", "finish", "plot", "report"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from balloonsim.analysis import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
