"""Two helpers every layer shares: the model inside its wrappers, and a grid size as a tuple."""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral

from torch import nn


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside DDP/FSDP (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers,
    in either nesting; a plain model is returned as is."""
    while True:
        for attr in ("module", "_orig_mod"):
            inner = getattr(model, attr, None)
            if isinstance(inner, nn.Module):
                model = inner
                break
        else:
            return model


def size_tuple(size: int | Sequence[int], n: int, what: str = "size") -> tuple[int, ...]:
    """``size`` as an ``n``-tuple of ints: an int is repeated (square, cubic), a sequence must
    have ``n`` entries. ``what`` names the value in the error."""
    if isinstance(size, Integral) and not isinstance(size, bool):
        return (int(size),) * n
    out = tuple(int(s) for s in size)
    if len(out) != n:
        raise ValueError(f"{what} {out} does not have {n} entries")
    return out


__all__ = ["size_tuple", "unwrap"]
