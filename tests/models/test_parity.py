"""Release parity: ``load_official`` reproduces the DPOT release's outputs.

Two independent witnesses: the golden files written by the release's own code
(``/work/shared/fixtures/official_dpot``), and ``ReleaseDPOT`` below, the release's arithmetic
written plainly (channels-first, release key names, a loop over the kept Fourier corner), built
with random weights for randomly drawn configurations.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dpot_lab.models import load_official

ROOT = Path(__file__).resolve().parents[2]
FIXTURE_PLACES = [  # beside the checkout, inside it, or the workplace's copy
    ROOT.parent / "shared" / "fixtures" / "official_dpot",
    ROOT / "shared" / "fixtures" / "official_dpot",
    Path("/work/shared/fixtures/official_dpot"),
]
FIXTURES = next((p for p in FIXTURE_PLACES if p.is_dir()), None)
FIXTURE_NAMES = ["dpot2d_full_spectrum", "dpot2d_truncated_modes_normalized", "dpot3d"]
# Constructor keywords the weights determine (everything but modes, temporal_modes and act).
INFERABLE = [
    "img_size", "patch_size", "in_channels", "out_channels", "in_timesteps", "out_timesteps",
    "n_blocks", "embed_dim", "out_layer_dim", "depth", "mlp_ratio", "n_cls", "normalize",
    "time_agg",
]  # fmt: skip

needs_fixtures = pytest.mark.skipif(FIXTURES is None, reason="release fixtures not found")


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def field(out):
    """The field prediction of a model output (ours may return (field, logits))."""
    return out[0] if isinstance(out, tuple) else out


def fixture(name: str) -> dict:
    return torch.load(FIXTURES / f"{name}.pt", weights_only=True)


# --------------------------------------------------------------------------- reference model
class ReleaseFilter(nn.Module):
    """The release's AFNO filter on a channels-first latent (B, D, *S): complex block MLP on the
    corner ``[:modes, ..., :modes_last]`` of the rfftn spectrum, zeros elsewhere, plus the input."""

    def __init__(self, dim: int, n_blocks: int, modes: int, modes_last: int, n_spatial: int):
        super().__init__()
        bs = dim // n_blocks
        self.n_blocks, self.block_size, self.n_spatial = n_blocks, bs, n_spatial
        self.limits = [modes] * (n_spatial - 1) + [modes_last]
        self.w1 = nn.Parameter(torch.rand(2, n_blocks, bs, bs) / bs**2)
        self.b1 = nn.Parameter(torch.rand(2, n_blocks, bs) / bs**2)
        self.w2 = nn.Parameter(torch.rand(2, n_blocks, bs, bs) / bs**2)
        self.b2 = nn.Parameter(torch.rand(2, n_blocks, bs) / bs**2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, D, *S)
        h = x.movedim(1, -1)  # (B, *S, D)
        b, *spatial, d = h.shape
        dims = tuple(range(1, self.n_spatial + 1))
        spec = torch.fft.rfftn(h, dim=dims, norm="ortho")  # (B, *S[:-1], S[-1]//2+1, D)
        w1, w2 = torch.complex(self.w1[0], self.w1[1]), torch.complex(self.w2[0], self.w2[1])
        b1, b2 = torch.complex(self.b1[0], self.b1[1]), torch.complex(self.b2[0], self.b2[1])
        out = torch.zeros_like(spec)
        corner = [range(min(k, n)) for k, n in zip(self.limits, spec.shape[1:-1], strict=True)]
        for idx in itertools.product(*corner):
            z = spec[(slice(None), *idx)].reshape(b, self.n_blocks, self.block_size)
            a = torch.einsum("bni,nio->bno", z, w1) + b1
            a = torch.complex(F.gelu(a.real), F.gelu(a.imag))
            out[(slice(None), *idx)] = (torch.einsum("bni,nio->bno", a, w2) + b2).reshape(b, d)
        y = torch.fft.irfftn(out, s=spatial, dim=dims, norm="ortho") + h
        return y.movedim(-1, 1)


class ReleaseBlock(nn.Module):
    def __init__(self, dim, mlp_dim, n_blocks, modes, modes_last, n_spatial):
        super().__init__()
        conv = nn.Conv2d if n_spatial == 2 else nn.Conv3d
        self.norm1 = nn.GroupNorm(8, dim)
        self.filter = ReleaseFilter(dim, n_blocks, modes, modes_last, n_spatial)
        self.norm2 = nn.GroupNorm(8, dim)
        self.mlp = nn.Sequential(conv(dim, mlp_dim, 1), nn.GELU(), conv(mlp_dim, dim, 1))

    def forward(self, x):  # (B, D, *S)
        return x + self.mlp(self.norm2(self.filter(self.norm1(x))))


class ReleaseDPOT(nn.Module):
    """The release's DPOTNet / DPOTNet3D arithmetic: (B, *S, T_in, C) -> ((B, *S, T_out, C_out),
    class logits or None). Parameter names are the release's."""

    def __init__(self, n_spatial, img_size, patch_size, in_channels, out_channels, in_timesteps,
                 out_timesteps, embed_dim, depth, n_blocks, mlp_ratio, modes, temporal_modes,
                 out_layer_dim, n_cls, normalize, time_agg):  # fmt: skip
        super().__init__()
        n, p, c, d = n_spatial, patch_size, in_channels, embed_dim
        conv = nn.Conv2d if n == 2 else nn.Conv3d
        deconv = nn.ConvTranspose2d if n == 2 else nn.ConvTranspose3d
        self.n_spatial, self.normalize, self.time_agg = n, normalize, time_agg
        self.out_channels, self.out_timesteps = out_channels, out_timesteps
        latent = [s // p for s in img_size]
        hidden = c * p + n + 1
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Sequential(
            conv(c + n + 1, hidden, p, stride=p), nn.GELU(), conv(hidden, d, 1)
        )
        self.pos_embed = nn.Parameter(0.02 * torch.randn(1, d, *latent))
        if normalize:
            self.scale_feats_mu = nn.Linear(2 * c, d)
            self.scale_feats_sigma = nn.Linear(2 * c, d)
        self.time_agg_layer = nn.Module()
        self.time_agg_layer.w = nn.Parameter(
            torch.randn(in_timesteps, d, d) / (in_timesteps * math.sqrt(d))
        )
        if time_agg == "exp_mlp":
            self.time_agg_layer.gamma = nn.Parameter(2 ** torch.linspace(-10, 10, d)[None])
        last = modes if n == 2 else temporal_modes
        self.blocks = nn.ModuleList(
            ReleaseBlock(d, int(d * mlp_ratio), n_blocks, modes, last, n) for _ in range(depth)
        )
        if n_cls:
            self.cls_head = nn.Sequential(
                nn.Linear(d, d), nn.GELU(), nn.Linear(d, d), nn.GELU(), nn.Linear(d, n_cls)
            )
        od = out_layer_dim
        self.out_layer = nn.Sequential(
            deconv(d, od, p, stride=p), nn.GELU(), conv(od, od, 1), nn.GELU(),
            conv(od, out_channels * out_timesteps, 1),
        )  # fmt: skip

    def forward(self, x):  # (B, *S, T, C)
        n = self.n_spatial
        b, *spatial, t, c = x.shape
        if self.normalize:
            dims = tuple(range(1, n + 2))
            mu = x.mean(dim=dims, keepdim=True)  # (B, 1, .., 1, C)
            sigma = x.std(dim=dims, keepdim=True) + 1e-6
            x = (x - mu) / sigma
            stats = torch.cat([mu, sigma], dim=-1).reshape(b, -1)  # (B, 2C)
            scale_mu = self.scale_feats_mu(stats).reshape(b, -1, *[1] * n)  # (B, D, 1, ..)
            scale_sigma = self.scale_feats_sigma(stats).reshape(b, -1, *[1] * n)
        axes = [torch.linspace(0, 1, s) for s in (*spatial, t)]
        grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)  # (*S, T, n+1)
        x = torch.cat([x, grid.expand(b, *grid.shape)], dim=-1)  # (B, *S, T, C+n+1)
        x = x.movedim(-2, 1).reshape(b * t, *spatial, -1).movedim(-1, 1)  # (BT, C+n+1, *S)
        x = self.patch_embed.proj(x) + self.pos_embed  # (BT, D, *S/p)
        d, latent = x.shape[1], x.shape[2:]
        x = x.reshape(b, t, d, *latent).permute(0, *range(3, 3 + n), 1, 2)  # (B, *S/p, T, D)
        tau = torch.linspace(0, 1, t)[:, None]  # (T, 1)
        if self.time_agg == "exp_mlp":
            x = x * torch.cos(tau @ self.time_agg_layer.gamma)  # (T, D) time embedding
        x = torch.einsum("tij,...ti->...j", self.time_agg_layer.w, x).movedim(-1, 1)  # (B, D, *S/p)
        if self.normalize:
            x = scale_sigma * x + scale_mu
        for blk in self.blocks:
            x = blk(x)
        cls = (
            self.cls_head(x.mean(dim=tuple(range(2, 2 + n)))) if hasattr(self, "cls_head") else None
        )
        y = self.out_layer(x).movedim(1, -1)  # (B, *S, C_out·T_out)
        y = y.reshape(b, *spatial, self.out_timesteps, self.out_channels)
        if self.normalize:
            y = y * sigma + mu
        return y, cls


def draw_config(seed: int, n_spatial: int, truncate: bool, normalize: bool, time_agg: str) -> dict:
    """Random release keywords (plus n_spatial) from ``seed``; modes truncate the latent or not."""
    g = torch.Generator().manual_seed(seed)

    def pick(options):
        return options[int(torch.randint(len(options), (1,), generator=g))]

    patch = pick([1, 2, 4] if n_spatial == 2 else [1, 2])
    latent = [pick([3, 4, 6, 8] if n_spatial == 2 else [3, 4]) for _ in range(n_spatial)]
    n_blocks = pick([1, 2, 4])
    c = pick([1, 2, 3, 4])
    cfg = dict(
        n_spatial=n_spatial,
        img_size=tuple(s * patch for s in latent),
        patch_size=patch,
        in_channels=c,
        out_channels=c if normalize else pick([1, 2, 3]),
        in_timesteps=pick([1, 2, 3, 5]),
        out_timesteps=pick([1, 2, 3]),
        embed_dim=8 * n_blocks * pick([1, 2]),
        depth=pick([1, 2]),
        n_blocks=n_blocks,
        mlp_ratio=pick([1, 2]),
        modes=2 if truncate else max(latent) + pick([0, 5]),
        temporal_modes=1 if truncate else 8,
        out_layer_dim=pick([4, 8]),
        n_cls=pick([0, 3]),
        normalize=normalize,
        time_agg=time_agg,
    )
    return cfg


def perturbed(model: nn.Module, seed: int) -> nn.Module:
    """Add noise to every parameter so that zero-initialised biases matter too."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model.eval()


# --------------------------------------------------------------------------- golden files
@needs_fixtures
@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_golden_files_from_dict_file_and_bare_state_dict(name, tmp_path):
    fx = fixture(name)
    state = fx["checkpoint"]["model"]
    path = tmp_path / "release.pt"
    torch.save({"model": state}, path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 3D: temporal_modes is not among the saved keywords
        models = [load_official(src, **fx["config"]) for src in (fx["checkpoint"], path, state)]
    with torch.no_grad():
        for model in models:
            assert rel_l2(field(model(fx["input"])), fx["output"]) < 1e-5


@needs_fixtures
@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_golden_files_without_keywords(name):
    """Every size comes from the weights; the warning names exactly what does not."""
    fx = fixture(name)
    cfg, state = fx["config"], fx["checkpoint"]["model"]
    with pytest.warns(UserWarning, match="could not infer") as record:
        model = load_official(state)
    message = str(record[0].message)
    expected = ["modes", "act"] + (["temporal_modes"] if "3d" in name else [])
    assert f"could not infer {expected}" in message
    got = model.config
    n = got.n_spatial
    release_view = dict(
        img_size=got.img_size, patch_size=got.patch_size, in_channels=got.in_channels,
        out_channels=got.out_channels, in_timesteps=got.in_timesteps,
        out_timesteps=got.out_timesteps, n_blocks=got.n_blocks, embed_dim=got.embed_dim,
        out_layer_dim=got.out_layer_dim, depth=got.depth, mlp_ratio=got.mlp_ratio,
        n_cls=got.n_cls, normalize=got.normalize, time_agg=got.time_agg,
    )  # fmt: skip
    want = {k: cfg[k] for k in INFERABLE}
    want["img_size"] = (cfg["img_size"],) * n
    assert release_view == want
    # The weights cannot show `modes`; given it alone, the outputs are the release's.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_official(state, modes=cfg["modes"])
    with torch.no_grad():
        assert rel_l2(field(model(fx["input"])), fx["output"]) < 1e-5


@needs_fixtures
def test_keywords_that_contradict_the_weights_are_refused():
    fx = fixture("dpot2d_full_spectrum")
    with pytest.raises(ValueError, match=r"embed_dim: given 48, weights say 64"):
        load_official(fx["checkpoint"], **{**fx["config"], "embed_dim": 48})


# --------------------------------------------------------------------------- random configs
CASES = [  # (seed, n_spatial, truncate, normalize, time_agg)
    (0, 2, True, False, "exp_mlp"),
    (1, 2, False, True, "exp_mlp"),
    (2, 2, True, True, "exp_mlp"),
    (3, 2, False, False, "mlp"),
    (4, 3, True, True, "exp_mlp"),
    (5, 3, False, False, "exp_mlp"),
]


@pytest.mark.parametrize(("seed", "n_spatial", "truncate", "normalize", "time_agg"), CASES)
def test_random_configs_match_the_release_arithmetic(
    seed, n_spatial, truncate, normalize, time_agg
):
    torch.manual_seed(seed)
    cfg = draw_config(seed, n_spatial, truncate, normalize, time_agg)
    ref = perturbed(ReleaseDPOT(**cfg), seed)  # non-square grids in general
    kwargs = {k: v for k, v in cfg.items() if k != "n_spatial"}
    kwargs["act"] = "gelu"
    if n_spatial == 2:
        kwargs.pop("temporal_modes")  # the 2D release constructor has no such keyword
    model = load_official({"model": ref.state_dict()}, **kwargs).eval()
    assert model.config.mode_rule == "release" and model.config.n_spatial == n_spatial
    x = torch.randn(2, *cfg["img_size"], cfg["in_timesteps"], cfg["in_channels"]) * 2 + 0.5
    with torch.no_grad():
        want, want_cls = ref(x)
        got = model(x, return_cls=cfg["n_cls"] > 0)
    assert rel_l2(field(got), want) < 1e-5
    if cfg["n_cls"]:
        assert rel_l2(got[1], want_cls) < 1e-5


# --------------------------------------------------------------------------- benchmark baseline
def _transcription():
    spec = importlib.util.spec_from_file_location(
        "release_transcription", ROOT / "benchmarks" / "release_transcription.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_fixtures
@pytest.mark.parametrize("name", FIXTURE_NAMES[:2])
def test_benchmark_transcription_reproduces_the_golden_files(name):
    """The speed benchmark's baseline (benchmarks/release_transcription.py) is the release."""
    fx = fixture(name)
    cfg = {k: v for k, v in fx["config"].items() if k != "mixing_type"}
    net = _transcription().ReleaseDPOTNet(**cfg)
    net.load_state_dict(fx["checkpoint"]["model"], strict=True)
    with torch.no_grad():
        y, _ = net(fx["input"])
    assert rel_l2(y, fx["output"]) < 1e-5
