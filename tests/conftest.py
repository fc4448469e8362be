"""Suite-wide fixtures."""

from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread per test module (restored after): the models, grids and FFTs here are
    small, and on a 2-core machine two threads spin against each other and run several times
    slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory) -> Path:
    """One generator cache for the notebook runs of this session (kept out of ~/.cache)."""
    return tmp_path_factory.mktemp("dpot_lab_cache")
