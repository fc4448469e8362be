"""PDE data: the xarray data model, readers for peer formats, the native HDF5 format, generators
and the training mixture. Names load on first use."""

from __future__ import annotations

from dpot_lab.exports import lazy_names

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
    "make_loader": "dpot_lab.data.loader",
    "RunLoader": "dpot_lab.data.loader",
    "ResidentLoader": "dpot_lab.data.resident",
    "run_loader": "dpot_lab.data.resident",
    "resize": "dpot_lab.data.transforms",
    "pad_channels": "dpot_lab.data.transforms",
}

__getattr__, __dir__ = lazy_names(__name__, _NAMES)


__all__ = sorted(_NAMES)
