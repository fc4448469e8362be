"""bf16 autocast that stays right: the time embedding, the fused aggregation weights, the residual
stream and the output head keep float32, and the shipped and a random-weight Ti model stay within
1 % (relative L2) of their float32 outputs."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import dpot_lab as dl
from dpot_lab.models.dpot import DPOT

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from train_helpers import advected_fields  # noqa: E402

SHIPPED = Path(dl.__file__).parent / "assets" / "pretrained.pt"
BF16 = dict(device_type="cpu", dtype=torch.bfloat16)


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


@pytest.fixture(scope="module")
def shipped() -> DPOT:
    return dl.load_checkpoint(SHIPPED).eval()


def smooth_input(model: DPOT, n: int = 3) -> torch.Tensor:
    """Smooth drifting fields on the model's grid, channels padded with ones: (n, X, Y, T, C)."""
    cfg = model.config
    ds = advected_fields(n_samples=n, n_time=cfg.in_timesteps, size=cfg.img_size[0], channels=2)
    x = torch.tensor(np.stack([ds[v].values for v in ds.data_vars], -1)).permute(0, 2, 3, 1, 4)
    return torch.cat([x, torch.ones(*x.shape[:-1], cfg.in_channels - 2)], dim=-1)


def test_time_embedding_is_computed_in_fp32_under_autocast():
    torch.manual_seed(0)
    agg = dl.create_model("Ti").time_agg  # γ up to 2¹⁰
    fp32 = agg.embedding()
    with torch.autocast(**BF16):
        under = agg.embedding()
        t = torch.linspace(0, 1, agg.w.shape[0])[:, None]
        rounded = torch.cos(t @ agg.gamma)  # the product as autocast would take it
    assert under.dtype == torch.float32 and torch.equal(under, fp32)
    # what the island prevents: bf16 phases are off by radians in many channels
    assert (rounded.float() - fp32).abs().gt(0.1).float().mean() > 0.1


def test_residual_stream_and_head_output_stay_fp32_under_autocast():
    torch.manual_seed(0)
    model = dl.create_model("nano").eval()
    x = torch.randn(1, *model.config.img_size, model.config.in_timesteps, 4)
    seen = {}
    model.blocks[0].register_forward_hook(lambda m, args, out: seen.update(block=args[0].dtype))
    model.head.register_forward_hook(lambda m, args, out: seen.update(head=out.dtype))
    with torch.no_grad(), torch.autocast(**BF16):
        model(x)
    assert seen == {"block": torch.float32, "head": torch.float32}


@pytest.mark.parametrize("data", ["smooth", "random"])
def test_shipped_model_under_bf16_is_within_1_percent_of_fp32(shipped, data):
    torch.manual_seed(0)
    x = smooth_input(shipped) if data == "smooth" else torch.randn(4, 64, 64, 10, 4)
    with torch.no_grad():
        ref = shipped(x)
        with torch.autocast(**BF16):
            low = shipped(x)
    assert rel_l2(low, ref) < 0.01


def test_random_weight_ti_under_bf16_is_within_1_percent_of_fp32():
    torch.manual_seed(0)
    model = dl.create_model("Ti").eval()
    x = torch.randn(1, 128, 128, 10, 4)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast(**BF16):
            low = model(x)
    assert low.dtype == torch.float32
    assert rel_l2(low, ref) < 0.01
