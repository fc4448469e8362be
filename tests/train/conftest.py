"""Small trajectory files shared by the training tests (written once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest
from train_helpers import advected_fields

import dpot_lab as dl


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("train_data")


@pytest.fixture(scope="session")
def adv1(data_dir) -> Path:
    """1 channel, 32², 16 frames, 24 trajectories."""
    return dl.data.save(advected_fields(), data_dir / "adv1.h5")


@pytest.fixture(scope="session")
def adv3(data_dir) -> Path:
    """3 channels, 40², 14 frames, 12 trajectories (another channel count and resolution)."""
    ds = advected_fields(n_samples=12, n_time=14, size=40, channels=3, seed=1)
    return dl.data.save(ds, data_dir / "adv3.h5")
