"""safe_load tells a checkpoint that would run code from a damaged one."""

import os

import pytest
import torch

from dpot_lab.models.checkpoint import safe_load


class Arbitrary:
    """Any class of the user's: weights-only loading refuses to build it."""

    def __init__(self):
        self.value = 3


class CallsSystem:
    """Unpickling this would call os.system: the malicious case."""

    def __reduce__(self):
        return (os.system, ("true",))


@pytest.mark.parametrize(
    "obj, name",
    [(Arbitrary(), f"{__name__}.Arbitrary"), (CallsSystem(), "system")],
    ids=["class", "os.system"],
)
def test_a_pickled_object_is_refused_as_code_not_as_corruption(obj, name, tmp_path):
    path = tmp_path / "ckpt.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "extra": obj}, path)
    with pytest.raises(ValueError) as err:
        safe_load(path)
    text = str(err.value)
    assert text.startswith(f"refusing to load {path}: ") and "would run code" in text
    assert name in text  # names what it refused
    assert "corrupt" not in text and "weights_only" not in text  # no advice to load unsafely


def test_plain_tensors_still_load(tmp_path):
    path = tmp_path / "ckpt.pt"
    torch.save({"model": {"w": torch.arange(3.0)}, "step": 4}, path)
    loaded = safe_load(path)
    assert loaded["step"] == 4 and torch.equal(loaded["model"]["w"], torch.arange(3.0))
