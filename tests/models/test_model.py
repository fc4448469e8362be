"""DPOT model behaviour: Fourier mode rules, grids, resize, gradients, input checks, presets,
mixed precision and torch.compile."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F

from dpot_lab.models import DPOT, DPOT3D, DPOTConfig, afno, create_model
from dpot_lab.models.afno import FourierMixing


def tiny(**overrides) -> DPOT:
    """A 2D model small enough for many tests: 16² grid, patch 4 (4×4 latent), C=2, T 3 -> 2."""
    cfg = dict(img_size=16, patch_size=4, in_channels=2, in_timesteps=3, out_timesteps=2,
               embed_dim=16, depth=1, n_blocks=2, modes=4, out_layer_dim=8)  # fmt: skip
    return DPOT(**{**cfg, **overrides})


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


# --------------------------------------------------------------------------- Fourier mode rules
def complex_block_mlp(f: FourierMixing, z: torch.Tensor) -> torch.Tensor:
    """The filter's MLP on one Fourier coefficient, in complex arithmetic: (D,) -> (D,)."""
    w1, w2 = torch.complex(f.w1[0], f.w1[1]), torch.complex(f.w2[0], f.w2[1])
    b1, b2 = torch.complex(f.b1[0], f.b1[1]), torch.complex(f.b2[0], f.b2[1])
    a = torch.einsum("ni,nio->no", z.reshape(f.n_blocks, f.block_size), w1) + b1
    a = torch.complex(F.gelu(a.real), F.gelu(a.imag))
    return (torch.einsum("ni,nio->no", a, w2) + b2).reshape(-1)


def noisy_filter(rule: str, modes: int, dim: int = 16) -> FourierMixing:
    torch.manual_seed(0)
    f = FourierMixing(dim, n_blocks=2, modes=modes, mode_rule=rule)
    with torch.no_grad():
        for p in f.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return f


@pytest.mark.parametrize(
    ("rule", "kx", "kept"),
    [
        ("symmetric", -1, True),
        ("symmetric", -2, True),
        ("symmetric", -3, False),  # |k_x| = modes: outside
        ("release", -1, False),  # the release keeps [:modes] of the full-FFT axis
        ("release", 2, True),
        ("release", 3, False),
    ],
)
def test_mode_rule_on_a_single_fourier_mode(rule, kx, kept):
    """A latent that is one Fourier mode (k_x, k_y=1) goes through the MLP iff the rule keeps it."""
    h_size, w_size, d, modes, ky = 8, 8, 16, 3, 1
    f = noisy_filter(rule, modes, d)
    torch.manual_seed(1)
    amp, phase0 = torch.rand(d) + 0.5, 2 * math.pi * torch.rand(d)
    gx, gy = torch.meshgrid(torch.arange(h_size), torch.arange(w_size), indexing="ij")
    phase = 2 * math.pi * (kx * gx / h_size + ky * gy / w_size)
    h = (amp * torch.cos(phase[..., None] + phase0))[None]  # (1, H, W, D)
    spec = torch.fft.rfft2(h, dim=(1, 2), norm="ortho")[0]  # (H, W//2+1, D)
    row = kx % h_size
    others = spec.abs().sum(-1)
    others[row, ky] = 0
    assert others.max() < 1e-4 and spec[row, ky].abs().min() > 0.1  # exactly one mode in h
    with torch.no_grad():
        out = torch.fft.rfft2(f(h) - h, dim=(1, 2), norm="ortho")[0]  # the filter's own part
        expected = complex_block_mlp(f, spec[row, ky]) if kept else torch.zeros(d, dtype=spec.dtype)
        torch.testing.assert_close(out[row, ky], expected, atol=2e-5, rtol=1e-4)
        # a kept mode where h is zero carries the MLP's response to 0 (the filter is on)
        torch.testing.assert_close(out[1, 1], complex_block_mlp(f, torch.zeros_like(spec[0, 0])))


@pytest.mark.parametrize("latent", [(8, 8), (8, 6), (5, 8)])
def test_mode_rules_agree_when_nothing_is_truncated(latent):
    sym, rel = noisy_filter("symmetric", modes=8), noisy_filter("release", modes=8)
    rel.load_state_dict(sym.state_dict())
    h = torch.randn(2, *latent, 16)
    with torch.no_grad():
        torch.testing.assert_close(sym(h), rel(h), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize(
    ("latent", "modes", "rule"),
    [((8, 8), 32, "release"), ((8, 8), 3, "symmetric"), ((5, 6), 2, "symmetric"),
     ((7, 4), 3, "release"), ((4, 4, 4), 2, "symmetric"), ((3, 4, 5), 8, "release")],
)  # fmt: skip
def test_dft_matmuls_match_the_ffts(monkeypatch, latent, modes, rule):
    """Small latents transform by DFT matmuls: the same outputs and gradients as the FFT path
    (kept bands on both sides of 0, truncated and odd axes, 3D)."""
    torch.manual_seed(0)
    f = FourierMixing(16, 2, modes, n_spatial=len(latent), modes_z=modes, mode_rule=rule)
    with torch.no_grad():
        for p in f.parameters():
            p.add_(0.1 * torch.randn_like(p))
    h = torch.randn(3, *latent, 16, requires_grad=True)
    g = torch.randn(3, *latent, 16)
    results, limit_dft = [], afno.DFT_MAX_MODES
    assert math.prod(len(k) for k in f.kept_modes(latent)) <= limit_dft
    for limit in (limit_dft, 0):
        monkeypatch.setattr(afno, "DFT_MAX_MODES", limit)
        h.grad = None
        f.zero_grad()
        out = f(h)
        out.backward(g)
        results.append([out.detach(), h.grad.clone(), *(p.grad.clone() for p in f.parameters())])
    for got, want in zip(*results, strict=True):
        assert rel_l2(got, want) < 1e-6


def test_dft_matrices_of_the_models_grid_are_unsaved_buffers(monkeypatch):
    """The filters hold their grid's DFT matrices (moved with the model, graph inputs under
    torch.compile); a forward on that grid builds none, resize re-targets them."""
    torch.manual_seed(0)
    model = tiny()  # latent 4×4
    f = model.blocks[0].filter
    want = afno.dft_matrices((4, 4), f.kept_modes((4, 4)), torch.device("cpu"))
    assert torch.equal(f.dft_forward, want[0]) and torch.equal(f.dft_inverse, want[1])
    assert not [k for k in model.state_dict() if "dft" in k]
    big = tiny().resize(32)  # latent 8×8
    assert big.blocks[0].filter.dft_forward.shape[1] == 64
    x, x_big = torch.randn(1, 16, 16, 3, 2), torch.randn(1, 32, 32, 3, 2)

    def rebuilt(*args, **kwargs):
        raise AssertionError("DFT matrices rebuilt in the forward")

    monkeypatch.setattr(afno, "dft_matrices", rebuilt)
    with torch.no_grad():
        model(x), big(x_big)


# --------------------------------------------------------------------------- grids and resize
def test_non_square_grid_forward_and_backward():
    torch.manual_seed(0)
    model = tiny(img_size=(32, 16), modes=3)  # latent 8×4: the x axis is truncated, y is not
    x = torch.randn(2, 32, 16, 3, 2)
    y = model(x)
    assert y.shape == (2, 32, 16, 2, 2)
    ((y - x[..., -1:, :]) ** 2).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape, name
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_resize_retargets_the_grid_and_keeps_other_weights():
    torch.manual_seed(0)
    model = tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert model.resize((24, 32)) is model
    assert model.config.img_size == (24, 32) and model.pos_embed.shape == (1, 6, 8, 16)
    assert model(torch.randn(1, 24, 32, 3, 2)).shape == (1, 24, 32, 2, 2)
    after = model.state_dict()
    assert set(after) == set(before)
    for key in before:
        if key != "pos_embed":
            assert torch.equal(after[key], before[key]), key
    with pytest.raises(ValueError, match=r"resize"):
        model(torch.randn(1, 16, 16, 3, 2))  # the old grid no longer fits


def test_resize_interpolates_pos_embed():
    torch.manual_seed(0)
    model = tiny()
    pos = model.pos_embed.clone()
    model.resize(16)  # same size: identity
    assert torch.equal(model.pos_embed, pos)
    with torch.no_grad():
        model.pos_embed.copy_(torch.linspace(-1, 1, 16).expand(1, 4, 4, 16))  # constant in space
    model.resize((32, 8))
    expected = torch.linspace(-1, 1, 16).expand(1, 8, 2, 16)
    torch.testing.assert_close(model.pos_embed, expected, atol=1e-6, rtol=0)
    model3d = DPOT3D(img_size=8, patch_size=4, in_channels=1, in_timesteps=2, embed_dim=8,
                     depth=1, n_blocks=1, modes=2, out_layer_dim=4)  # fmt: skip
    with torch.no_grad():
        model3d.pos_embed.fill_(0.25)
    model3d.resize((16, 8, 12))
    assert model3d.pos_embed.shape == (1, 4, 2, 3, 8)
    torch.testing.assert_close(model3d.pos_embed, torch.full((1, 4, 2, 3, 8), 0.25))


# --------------------------------------------------------------------------- gradients
def test_field_loss_reaches_every_parameter_but_the_class_head():
    torch.manual_seed(0)
    model = tiny(n_cls=3)
    x, target = torch.randn(2, 16, 16, 3, 2), torch.randn(2, 16, 16, 2, 2)
    y, _ = model(x, return_cls=True)
    ((y - target) ** 2).mean().backward()
    names = [n for n, _ in model.named_parameters()]
    assert any(n.startswith("cls_head.") for n in names)
    for name, p in model.named_parameters():
        if name.startswith("cls_head."):
            assert p.grad is None, name
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    model.zero_grad(set_to_none=True)
    _, logits = model(x, return_cls=True)
    assert logits.shape == (2, 3)
    F.cross_entropy(logits, torch.tensor([0, 2])).backward()
    for name, p in model.named_parameters():
        if name.startswith("cls_head."):
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_frozen_trunk_gives_the_same_block_gradients():
    """Freezing everything before the last block (fine-tuning) changes no gradient it gets."""
    torch.manual_seed(0)
    model = tiny(depth=2)
    x, target = torch.randn(2, 16, 16, 3, 2), torch.randn(2, 16, 16, 2, 2)

    def last_block_grads():
        model.zero_grad(set_to_none=True)
        ((model(x) - target) ** 2).mean().backward()
        return {n: p.grad.clone() for n, p in model.blocks[1].named_parameters()}

    full = last_block_grads()
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("blocks.1.") or name.startswith("head."))
    frozen = last_block_grads()
    assert model.blocks[0].norm1.weight.grad is None
    for name in full:
        torch.testing.assert_close(frozen[name], full[name], rtol=1e-5, atol=1e-7)


def test_no_class_head_without_classes():
    model = tiny(n_cls=0)
    assert not any("cls_head" in n for n, _ in model.named_parameters())
    with pytest.raises(ValueError, match="n_cls=0"):
        model(torch.randn(1, 16, 16, 3, 2), return_cls=True)


# --------------------------------------------------------------------------- input checks
@pytest.mark.parametrize(
    ("shape", "expected", "received"),
    [
        ((1, 16, 16, 2), r"5-D input \(B, X, Y, T_in=3, C=2\)", "(1, 16, 16, 2)"),  # rank
        ((1, 16, 16, 3, 3), r"2 channels .*C=2", "(1, 16, 16, 3, 3)"),
        ((1, 16, 16, 4, 2), r"T_in=3", "(1, 16, 16, 4, 2)"),
        ((1, 18, 16, 3, 2), r"patch_size 4.*grid \(16, 16\)", "(18, 16)"),
        ((1, 32, 16, 3, 2), r"img_size \(16, 16\)", "(32, 16)"),
    ],
)
def test_bad_input_names_expected_and_received_shapes(shape, expected, received):
    with pytest.raises(ValueError, match=expected) as err:
        tiny()(torch.randn(shape))
    assert received in str(err.value)


# --------------------------------------------------------------------------- presets
PAPER_SIZES = {"Ti": 7.53e6, "S": 30.80e6, "M": 122.13e6, "L": 509.0e6, "H": 1031e6}


@pytest.mark.parametrize("name", list(PAPER_SIZES))
def test_preset_parameter_counts_match_the_paper(name):
    with torch.device("meta"):  # no memory: L and H would take 4 / 8 GB
        model = create_model(name, n_cls=12)
    count = model.num_parameters()
    assert abs(count / PAPER_SIZES[name] - 1) < 0.005, count
    if name == "Ti":  # the meta count is the real count
        assert create_model("Ti", n_cls=12).num_parameters() == count


@pytest.mark.parametrize("name", ["nano", "micro"])
def test_cpu_presets_train(name):
    """One Adam step on a fixed sample lowers the loss on it."""
    torch.manual_seed(0)
    model = create_model(name)
    cfg = model.config
    x = torch.randn(1, *cfg.img_size, cfg.in_timesteps, cfg.in_channels)
    target = x[..., -1:, :].flip(1)  # a fixed map to learn
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    y = model(x)
    assert y.shape == (1, *cfg.img_size, 1, cfg.in_channels)
    loss = F.mse_loss(y, target)
    loss.backward()
    opt.step()
    with torch.no_grad():
        assert F.mse_loss(model(x), target) < loss


# --------------------------------------------------------------------------- precision, compile
@pytest.mark.parametrize("transform", ["fft", "dft"])
def test_bf16_autocast_is_close_to_fp32_and_transforms_stay_fp32(monkeypatch, transform):
    """Under autocast the Fourier transforms (FFTs, or the DFT matmuls on small latents) take
    and give float32."""
    torch.manual_seed(0)
    model = tiny(embed_dim=32, depth=2, n_blocks=4).eval()
    x = torch.randn(2, 16, 16, 3, 2)
    if transform == "fft":
        monkeypatch.setattr(afno, "DFT_MAX_MODES", 0)
    with torch.no_grad():
        ref = model(x)
        seen = []
        for owner, name in ((torch.fft, "rfftn"), (torch.fft, "irfftn"), (afno, "dft")):
            original = getattr(owner, name)

            def spy(inp, *args, _original=original, **kwargs):
                out = _original(inp, *args, **kwargs)
                seen.append((inp.dtype, out.dtype))
                return out

            monkeypatch.setattr(owner, name, spy)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = model(x)
    assert len(seen) == 2 * model.config.depth  # one transform each way per block
    assert {t for pair in seen for t in pair} <= {torch.float32, torch.complex64}
    assert torch.isfinite(y).all()
    assert rel_l2(y, ref) < 3e-2


def test_torch_compile_matches_eager():
    """One compile of a tiny model; ``fullgraph=True`` asserts that dynamo does not break the
    graph (inductor runs the complex FFTs as eager fallback kernels inside the graph)."""
    torch.manual_seed(0)
    model = tiny(embed_dim=8, n_blocks=1, modes=2, out_layer_dim=4).eval()
    x = torch.randn(2, 16, 16, 3, 2)
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        got, want = compiled(x), model(x)
    assert rel_l2(got, want) < 1e-5


# --------------------------------------------------------------------------- field rules
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"depth": 0}, "depth: expected an int >= 1, got 0"),
        ({"mlp_ratio": 0.0}, "mlp_ratio: expected a float > 0, got 0.0"),
        ({"act": "swishy"}, "act: expected one of ["),
        ({"n_spatial": 4}, "n_spatial: expected one of [2, 3], got 4"),
        ({"n_blocks": 3}, "n_blocks: expected a divisor of embed_dim=16, got 3"),
        ({"head_conv": 2}, "head_conv: expected 0 or an odd kernel size, got 2"),
    ],
)
def test_config_field_rules_are_its_own(overrides, message):
    """DPOTConfig checks its fields; a run config's model section says the same, field rules and
    rules between fields alike (one validation path)."""
    from dpot_lab.train.config import TrainConfig

    base = dict(img_size=16, patch_size=4, embed_dim=16, n_blocks=2)
    with pytest.raises(ValueError, match=re.escape(message)):
        DPOTConfig(**{**base, **overrides})
    model = {k: v for k, v in {**base, **overrides}.items() if k != "img_size"}  # from the data
    with pytest.raises(ValueError, match=re.escape(f"config: model.{message}")):
        TrainConfig.from_dict({"model": model, "data": {"resolution": 16}})


@pytest.mark.parametrize("n_spatial", [2, 3])
def test_head_conv_starts_as_the_plain_head_and_mixes_across_patch_edges(tmp_path, n_spatial):
    """The edge convolution starts at zero (the plain head's output), is trained, crosses patch
    edges (a change in one token reaches the pixels next to its patch) and survives a checkpoint."""
    from dpot_lab.models.checkpoint import load_checkpoint, save_checkpoint

    size = (16, 16) if n_spatial == 2 else (12, 12, 12)
    cfg = dict(
        img_size=size,
        patch_size=4,
        in_channels=2,
        in_timesteps=2,
        embed_dim=16,
        n_blocks=2,
        depth=1,
        modes=2,
        modes_z=2,
        out_layer_dim=8,
        n_spatial=n_spatial,
    )
    cls = DPOT if n_spatial == 2 else DPOT3D
    torch.manual_seed(0)
    plain = cls(DPOTConfig(**cfg))
    edged = cls(DPOTConfig(**cfg, head_conv=3))
    assert edged.load_state_dict(plain.state_dict(), strict=False).missing_keys == [
        "head.edge.weight",
        "head.edge.bias",
    ]
    x = torch.randn(2, *size, 2, 2)
    torch.testing.assert_close(edged(x), plain(x), rtol=0, atol=0)
    edged(x).square().mean().backward()
    assert edged.head.edge.weight.grad.abs().sum() > 0
    with torch.no_grad():
        edged.head.edge.weight.normal_()
    z = torch.randn(1, *(s // 4 for s in size), 16)  # latent tokens
    z2 = z.clone()
    z2[(0, 1) + (1,) * (n_spatial - 1)] += 1.0  # one token, the patch at cells 4..7 on each axis
    for head, reach in ((plain.head, 0), (edged.head, 1)):
        changed = (head(z2) - head(z)).abs().amax(dim=(-2, -1))[0] > 0  # (*S)
        outside = changed.clone()
        outside[(slice(4, 8),) * n_spatial] = False
        rows = changed.nonzero()[:, 0]
        assert int(rows.min()) == 4 - reach and int(rows.max()) == 7 + reach
        assert bool(outside.any()) == bool(reach)
    save_checkpoint(tmp_path / "e.pt", edged)
    again = load_checkpoint(tmp_path / "e.pt")
    assert again.config.head_conv == 3
    torch.testing.assert_close(again(x), edged(x))
