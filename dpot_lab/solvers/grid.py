"""Grids of the solvers."""

from __future__ import annotations

import math

import numpy as np

from dpot_lab.sizes import size_tuple

Domain = tuple[tuple[float, float], tuple[float, float]]
Resolution = int | tuple[int, ...]


def cell_centres(n: int, lower: float = 0.0, upper: float = 1.0) -> np.ndarray:
    """(n,) centres of n equal cells on [lower, upper], mirror-symmetric about the midpoint to the
    bit (so symmetric initial states stay exactly symmetric)."""
    dx = (upper - lower) / n
    return 0.5 * (lower + upper) + (np.arange(n) - 0.5 * (n - 1)) * dx


def check_domain(domain: Domain, name: str = "domain") -> Domain:
    """((x0, x1), (y0, y1)) as floats; ValueError naming ``name`` unless finite with x0 < x1 and
    y0 < y1."""
    try:
        (x0, x1), (y0, y1) = ((float(lo), float(hi)) for lo, hi in domain)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected ((x0, x1), (y0, y1)), got {domain!r}") from None
    if not all(math.isfinite(v) for v in (x0, x1, y0, y1)) or x0 >= x1 or y0 >= y1:
        raise ValueError(f"{name}: expected finite bounds with x0 < x1 and y0 < y1, got {domain!r}")
    return (x0, x1), (y0, y1)


def grid_shape(resolution: Resolution, dim: int, name: str = "resolution") -> tuple[int, ...]:
    """Grid shape from an int (square, cube) or a tuple of ``dim`` ints, each >= 2."""
    try:
        shape = size_tuple(resolution, dim, name)
    except ValueError:
        shape = ()
    if not shape or min(shape) < 2:
        raise ValueError(f"{name}: expected an int >= 2 or {dim} of them, got {resolution!r}")
    return shape
