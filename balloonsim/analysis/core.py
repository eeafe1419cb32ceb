"""`Analysis`: loaded results plus the summary and comparison tables every later step reads.

`pipeline` makes one; figures, tables, findings and the report take one. The type lives apart from both so
that imports run one way only (pipeline -> report -> findings -> core), never back.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from balloonsim.analysis.confidence import ALPHA
from balloonsim.analysis.load import Results


@dataclass
class Analysis:
    """Loaded results plus the two tables every later step reads."""

    results: Results
    by: str | None
    summary: pd.DataFrame
    comparisons: pd.DataFrame
    alpha: float = ALPHA
