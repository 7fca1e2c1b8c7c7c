"""A daily ramp as an inference-perf stage list (pure).

Traffic over a day is low at night and peaks in the afternoon; a compressed day of `n` stages
of `stage_s` seconds each gives stage `k` the rate

    rate(k) = low + (high - low) · sin²(π · (k + ½) / n)

so the first and last stages run near `low` and the middle ones near `high`. With n = 24 and
stage_s = 3600 it is one day of hourly rates; the experiments use shorter stages.
"""

from __future__ import annotations

import math
from typing import Any


def daily_ramp(n: int, stage_s: float, low: float, high: float) -> list[dict[str, Any]]:
    """The `load.stages` of a compressed day (rates rounded to 0.01 request/s)."""
    if n < 1 or stage_s <= 0 or low < 0 or high < low:
        raise ValueError("daily_ramp: need n >= 1, stage_s > 0 and 0 <= low <= high")
    return [
        {
            "rate": round(low + (high - low) * math.sin(math.pi * (k + 0.5) / n) ** 2, 2),
            "duration": stage_s,
        }
        for k in range(n)
    ]
