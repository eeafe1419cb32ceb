"""Delay and size distributions typed in scenarios: `5`, or `{dist = "lognormal", median = 5, sigma = 0.5}`."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

# numpy's ziggurat samplers draw their tails as r - log1p(-u) with u a 53-bit uniform, so the largest values
# they can return are r + 36.74 / r = 13.7 for the standard normal (r 3.654) and 7.70 + 36.74 = 44.4 for the
# standard exponential. Every draw is bounded with these, so a parameter that could overflow a float or
# stall a run (lognormal sigma = 1000) is refused up front.
Z_MAX = 14.0
EXP_MAX = 45.0
# Delays and sizes beyond this are a typo, not a model: 1e15 is 31 million years in seconds, 888 TiB in bytes.
MAX_DRAW = 1e15


class Dist(BaseModel):
    """A non-negative random variable: fixed, exponential, lognormal or uniform."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    dist: Literal["fixed", "exponential", "lognormal", "uniform"] = "fixed"
    value: float | None = Field(None, ge=0)  # fixed
    mean: float | None = Field(None, ge=0)  # exponential
    median: float | None = Field(None, gt=0)  # lognormal
    sigma: float = Field(0.5, ge=0)  # lognormal
    low: float | None = Field(None, ge=0)  # uniform
    high: float | None = Field(None, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _scalar(cls, v):
        if isinstance(v, int | float) and not isinstance(v, bool):
            return {"dist": "fixed", "value": v}
        return v

    @model_validator(mode="after")
    def _complete(self):
        need = {"fixed": ("value",), "exponential": ("mean",), "lognormal": ("median",), "uniform": ("low", "high")}[
            self.dist
        ]
        missing = [k for k in need if getattr(self, k) is None]
        if missing:
            raise ValueError(f"{self.dist} needs {', '.join(missing)}")
        if self.dist == "uniform" and self.high < self.low:
            raise ValueError("uniform: high < low")
        largest = self.largest_draw()
        if not largest <= MAX_DRAW:
            raise ValueError(
                f"{self.dist} with these parameters can draw {largest:.3g}, more than {MAX_DRAW:g}"
                + (": lower sigma" if self.dist == "lognormal" else "")
            )
        return self

    def largest_draw(self) -> float:
        """An upper bound of every value `sample` can return (inf when it could overflow)."""
        if self.dist == "fixed":
            return float(self.value)
        if self.dist == "exponential":
            return float(self.mean) * EXP_MAX
        if self.dist == "lognormal":
            exponent = math.log(self.median) + self.sigma * Z_MAX
            return math.exp(exponent) if exponent < 709 else math.inf
        return float(self.high)

    def sample(self, rng: np.random.Generator) -> float:
        if self.dist == "fixed":
            return float(self.value)
        if self.dist == "exponential":
            return float(rng.exponential(self.mean)) if self.mean else 0.0
        if self.dist == "lognormal":
            return float(self.median * math.exp(self.sigma * rng.standard_normal()))
        return float(rng.uniform(self.low, self.high))
