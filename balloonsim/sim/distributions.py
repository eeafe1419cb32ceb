"""Delay and size distributions typed in scenarios: `5`, or `{dist = "lognormal", median = 5, sigma = 0.5}`."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator


class Dist(BaseModel):
    """A non-negative random variable: fixed, exponential, lognormal or uniform."""

    model_config = ConfigDict(extra="forbid")
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
        return self

    def sample(self, rng: np.random.Generator) -> float:
        if self.dist == "fixed":
            return float(self.value)
        if self.dist == "exponential":
            return float(rng.exponential(self.mean)) if self.mean else 0.0
        if self.dist == "lognormal":
            return float(self.median * math.exp(self.sigma * rng.standard_normal()))
        return float(rng.uniform(self.low, self.high))
