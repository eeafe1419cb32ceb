"""How sure the analysis asks to be: the significance level of the comparisons and the level of every interval.

Its own module, without numpy or pandas, so that the command line can show the default without loading the
analysis (`balloonsim analyze --help` costs click alone).
"""

from __future__ import annotations

ALPHA = 0.05  # a difference is significant when its Holm-corrected p is below this
LEVEL = 0.95  # confidence level of every interval (means, medians, rates, differences)
