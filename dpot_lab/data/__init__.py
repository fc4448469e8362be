"""PDE data: the xarray data model, readers for peer formats, the native HDF5 format, generators
and the training mixture. Names load on first use."""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "open_dataset": "dpot_lab.data.open",
    "save": "dpot_lab.data.native",
    "to_netcdf": "dpot_lab.data.native",
    "check_finite": "dpot_lab.data.schema",
    "validate": "dpot_lab.data.schema",
    "field_names": "dpot_lab.data.schema",
    "generate_cached": "dpot_lab.data.generation",
    "generate": "dpot_lab.data.generation",
    "GENERATORS": "dpot_lab.data.generation",
    "Mixture": "dpot_lab.data.mixture",
    "resize": "dpot_lab.data.transforms",
    "pad_channels": "dpot_lab.data.transforms",
}


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        return getattr(importlib.import_module(_NAMES[name]), name)
    raise AttributeError(f"module 'dpot_lab.data' has no attribute {name!r}")


__all__ = sorted(_NAMES)
