"""A grid size as a tuple: the one rule for "an int, or one entry per axis" that the model, the
data and the solvers share."""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral


def size_tuple(size: int | Sequence[int], n: int, what: str = "size") -> tuple[int, ...]:
    """``size`` as an ``n``-tuple of ints: an int is repeated (square, cubic), a sequence must
    have ``n`` integer entries. ``what`` names the value in the error."""
    if isinstance(size, Integral) and not isinstance(size, bool):
        return (int(size),) * n
    try:
        out = tuple(int(s) for s in size)
        whole = all(int(s) == s for s in size)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: expected an int or {n} ints, got {size!r}") from None
    if len(out) != n or not whole:
        raise ValueError(f"{what}: expected an int or {n} ints, got {size!r}")
    return out


def grid_text(shape: Sequence[int]) -> str:
    """A grid for messages: (32, 32) -> "32×32"."""
    return "×".join(str(int(n)) for n in shape)
