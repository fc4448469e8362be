"""Reading a value off a measured error curve between two of its points."""

from __future__ import annotations

import math


def log_interp(error: float, e0: float, e1: float, v0: float, v1: float) -> float:
    """The value at ``error`` on the segment from (e0, v0) to (e1, v1), linear in (log error,
    log value); linear in the error itself against log value where ``e1`` is 0 (an exact point).
    Values must be positive; ``error`` between e0 and e1 gives a value between v0 and v1."""
    if e1 <= 0:
        frac = (e0 - error) / (e0 - e1)
    else:
        frac = (math.log(e0) - math.log(error)) / (math.log(e0) - math.log(e1))
    return math.exp(math.log(v0) + frac * (math.log(v1) - math.log(v0)))
