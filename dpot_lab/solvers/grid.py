"""Grids of the solvers."""

from __future__ import annotations

import numpy as np


def cell_centres(n: int, lower: float = 0.0, upper: float = 1.0) -> np.ndarray:
    """(n,) centres of n equal cells on [lower, upper], mirror-symmetric about the midpoint to the
    bit (so symmetric initial states stay exactly symmetric)."""
    dx = (upper - lower) / n
    return 0.5 * (lower + upper) + (np.arange(n) - 0.5 * (n - 1)) * dx
