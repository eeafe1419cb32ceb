"""Turn a results directory into an answer: summary.csv, comparisons.csv, plots/ and REPORT.md/report.html.

`finish(dir)` runs the three steps in order; `balloonsim run` calls it at the end unless --no-report.
"""

from __future__ import annotations

from balloonsim.analysis.pipeline import analyze, finish, plot, report

__all__ = ["analyze", "finish", "plot", "report"]
