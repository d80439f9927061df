"""Measurement helpers the benchmarks share (run them as scripts: bench/ is on sys.path)."""

from __future__ import annotations

import math
import os


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile (the smallest value with at least p % at or below it)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[k]


def system_busy_s() -> float:
    """CPU time used by everything on the machine (user + nice + system), seconds."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    return (int(fields[1]) + int(fields[2]) + int(fields[3])) / os.sysconf("SC_CLK_TCK")
