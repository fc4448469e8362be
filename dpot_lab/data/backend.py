"""xarray backend: ``xr.open_dataset(path, engine="dpot_lab")`` reads any format that
:func:`dpot_lab.data.open.open_dataset` reads.

Registered in pyproject.toml::

    [project.entry-points."xarray.backends"]
    dpot_lab = "dpot_lab.data.backend:DPOTLabBackendEntrypoint"
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import h5py
import xarray as xr
from xarray.backends import BackendEntrypoint


class DPOTLabBackendEntrypoint(BackendEntrypoint):
    """Opens PDEBench, FNO, PDEArena, The Well, DPOT and native dpot-lab files lazily."""

    description = "PDE data files (PDEBench, FNO, PDEArena, The Well, DPOT, dpot-lab native)"
    open_dataset_parameters = (
        "filename_or_obj",
        "drop_variables",
        "format",
        "split",
        "fields",
        "spatial_dims",
    )

    def open_dataset(
        self,
        filename_or_obj,
        *,
        drop_variables: str | Iterable[str] | None = None,
        format: str | None = None,
        split: str | None = None,
        fields: Sequence[str] | None = None,
        spatial_dims: int | None = None,
    ) -> xr.Dataset:
        from dpot_lab.data.open import open_dataset

        kw = {
            k: v
            for k, v in (("split", split), ("fields", fields), ("spatial_dims", spatial_dims))
            if v is not None
        }
        ds = open_dataset(os.fspath(filename_or_obj), format=format, **kw)
        if drop_variables is not None:
            ds = ds.drop_vars(drop_variables, errors="ignore")
        return ds

    def guess_can_open(self, filename_or_obj) -> bool:
        """Claims only native dpot-lab files, so that netCDF files keep their own engines."""
        from dpot_lab.data import native
        from dpot_lab.data.lazy import open_h5

        try:
            path = os.fspath(filename_or_obj)
            return h5py.is_hdf5(path) and native.detect(open_h5(path))[0]
        except (TypeError, OSError, ValueError):
            return False
