"""The model inside its wrappers (DDP, FSDP, torch.compile)."""

from __future__ import annotations

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


__all__ = ["unwrap"]
