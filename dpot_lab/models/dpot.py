"""DPOT: the auto-regressive denoising operator transformer (Hao et al., ICML 2024), 2D and 3D.

Input and output are channels-last fields ``(B, *S, T, C)`` with ``S = (X, Y)`` or ``(X, Y, Z)``.
The latent grid is channels-last too, ``(B, *S/p, D)``, so every 1×1 convolution of the paper is a
plain matmul on the last axis. Two steps are fused without changing the mathematics:

- the grid channels (x, y[, z], t) enter the patch convolution as a precomputed additive term, so
  the input is never concatenated with them;
- the patch embedding's last 1×1 layer and the positional embedding are folded into the temporal
  aggregation (all three are linear), so the per-frame D-wide latent ``(B, *S/p, T, D)`` is never
  built: the frames go straight from the narrow patch features to the aggregated latent.

The model predicts the next ``T_out`` frames themselves (no residual to the last input frame).

Under autocast (bf16) the wide matmuls run in the low precision, while what rounding would spoil
stays float32: the time embedding and the fused aggregation weights, the residual stream (the
latent between blocks), and the output head after its transposed patch convolution.
"""

from __future__ import annotations

import math
from dataclasses import asdict, fields
from typing import Annotated, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from dpot_lab.configfile import (
    Bool,
    Cardinal,
    Count,
    Int,
    Positive,
    Str,
    int_or_list,
    integer,
    one_of,
    rule,
    section,
)
from dpot_lab.models.afno import ACTIVATIONS, MODE_RULES, FourierMixing, activation
from dpot_lab.sizes import size_tuple

TIME_AGGREGATIONS = ("exp_mlp", "mlp")
Width = integer(ge=8)  # a latent width: GroupNorm takes 8 groups


@section
class DPOTConfig:
    """Sizes and options of a DPOT model. ``img_size`` is the grid; an int means square (cube).

    Each field carries its type and bounds, for the model and for every run config that sets one
    (a mistake raises a one-line ``ValueError`` naming the field); ``DATA_FIELDS`` are the sizes
    that follow from the data a model is trained on."""

    img_size: int_or_list(Count) = 128  # a tuple is taken too
    patch_size: Count = 8
    in_channels: Count = 4
    out_channels: Count | None = None  # None: same as in_channels
    in_timesteps: Count = 10
    out_timesteps: Count = 1
    embed_dim: Width = 512
    depth: Count = 4
    n_blocks: Count = 4
    mlp_ratio: Positive = 1.0
    modes: Count = 32
    modes_z: Count = 8  # 3D only: modes kept on the last (rfft) axis, the release's temporal_modes
    out_layer_dim: Count = 32
    # kernel of a depthwise conv across patch edges in the head; 0: none
    head_conv: Annotated[Cardinal, rule(lambda k: k % 2 or not k, "0 or an odd kernel size")] = 0
    n_cls: Cardinal = 0  # dataset-classification head width; 0 = no head
    normalize: Bool = False
    act: Annotated[Str, one_of(sorted(ACTIVATIONS))] = "gelu"
    time_agg: Annotated[Str, one_of(TIME_AGGREGATIONS)] = "exp_mlp"
    mode_rule: Annotated[Str, one_of(MODE_RULES)] = "symmetric"
    embed_hidden: Count | None = None  # None: C·p + n_grid, the release's width
    n_spatial: Annotated[Int, one_of((2, 3))] = 2

    DATA_FIELDS: ClassVar[tuple[str, ...]] = (
        "img_size", "in_channels", "in_timesteps", "out_timesteps",
    )  # fmt: skip

    def __post_init__(self):
        size = self.img_size = size_tuple(self.img_size, self.n_spatial, "img_size")
        if self.out_channels is None:
            self.out_channels = self.in_channels
        if any(s % self.patch_size for s in size):
            raise ValueError(f"img_size {size} is not divisible by patch_size {self.patch_size}")
        if self.embed_dim % 8:
            raise ValueError(
                f"embed_dim: expected a multiple of 8 (GroupNorm groups), got {self.embed_dim}"
            )
        if self.embed_dim % self.n_blocks:
            raise ValueError(
                f"n_blocks: expected a divisor of embed_dim={self.embed_dim}, got {self.n_blocks}"
            )
        if self.normalize and self.out_channels != self.in_channels:
            raise ValueError(
                "normalize=True needs out_channels == in_channels (output is de-normalised)"
            )
        if self.embed_hidden is None:
            self.embed_hidden = self.release_embed_hidden

    @property
    def release_embed_hidden(self) -> int:
        """The release's patch-embedding width: C·p plus the grid channels (x, y[, z], t)."""
        return self.in_channels * self.patch_size + self.n_spatial + 1

    @property
    def latent_size(self) -> tuple[int, ...]:
        return tuple(s // self.patch_size for s in self.img_size)

    @property
    def mlp_dim(self) -> int:
        return int(self.embed_dim * self.mlp_ratio)

    def to_dict(self) -> dict:
        """Plain types only (lists for tuples): safe inside a ``weights_only`` checkpoint."""
        d = asdict(self)
        d["img_size"] = list(self.img_size)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> DPOTConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown DPOTConfig keys {unknown}; known keys: {sorted(known)}")
        return cls(**d)


def adapt_model_config(source_config: DPOTConfig, **changes: Any) -> DPOTConfig:
    """The fine-tuning model's config: ``source_config`` with ``changes`` applied.

    Derived sizes follow the changes unless given: ``embed_hidden`` (C·p + grid channels) when it
    had its default, ``out_channels`` when it equalled ``in_channels``, and a square (cubic)
    ``img_size`` gains or loses an axis with ``n_spatial``. Everything else (modes, mode rule,
    widths) is kept, so the pre-trained blocks fit.
    """
    src = source_config
    known = set(src.to_dict())
    unknown = sorted(set(changes) - known)
    if unknown:
        raise ValueError(
            f"adapt_model_config: unknown DPOTConfig fields {unknown}; known: {sorted(known)}"
        )
    d = src.to_dict()
    if "embed_hidden" not in changes and src.embed_hidden == src.release_embed_hidden:
        d["embed_hidden"] = None
    if "out_channels" not in changes and src.out_channels == src.in_channels:
        d["out_channels"] = None
    n = changes.get("n_spatial", src.n_spatial)
    if n != src.n_spatial and "img_size" not in changes:
        if len(set(src.img_size)) != 1:
            raise ValueError(
                f"adapt_model_config: n_spatial {src.n_spatial} -> {n} needs img_size: the source "
                f"grid {src.img_size} is not square, so it cannot be extended"
            )
        d["img_size"] = src.img_size[:1] * n
    d.update(changes)
    return DPOTConfig.from_dict(d)


def _group_norm(x: torch.Tensor, norm: nn.GroupNorm) -> torch.Tensor:
    """GroupNorm on a channels-last tensor (B, *S, D) -> (B, *S, D).

    Runs torch's native kernel on a (B, D, N, 1) channels-last view (no layout copy). torch 2.13's
    CPU kernel crashes in backward on such a view when the input needs no grad but the affine
    weights do (a frozen trunk before a trained block): that case normalises a channels-first copy.
    The affine weights are cast to ``x``'s dtype (FSDP may gather them in bf16), so the norm runs
    in the residual stream's precision.
    """
    b, d, g = x.shape[0], x.shape[-1], norm.num_groups
    trains_affine = norm.weight.requires_grad or norm.bias.requires_grad
    weight, bias = norm.weight.to(x.dtype), norm.bias.to(x.dtype)
    if torch.is_grad_enabled() and trains_affine and not x.requires_grad:
        first = x.reshape(b, -1, d).transpose(1, 2).contiguous()  # (B, D, N)
        y = F.group_norm(first, g, weight, bias, norm.eps)
        return y.transpose(1, 2).reshape(x.shape)
    view = x.reshape(b, -1, 1, d).permute(0, 3, 1, 2)  # (B, D, N, 1), channels-last strides
    y = F.group_norm(view, g, weight, bias, norm.eps)
    return y.permute(0, 2, 3, 1).reshape(x.shape)


def _linspace(n: int, device, dtype=torch.float32) -> torch.Tensor:
    return torch.linspace(0, 1, n, device=device, dtype=dtype)


class PatchEmbed(nn.Module):
    """Per-frame patch features: (B, *S, T, C) -> (B, *S/p, T, hidden), GELU applied.

    Holds the release's two layers: ``proj`` (patch convolution over C + grid channels) and ``out``
    (the 1×1 layer to D, applied by the model inside the temporal aggregation).
    """

    def __init__(self, cfg: DPOTConfig):
        super().__init__()
        n, p = cfg.n_spatial, cfg.patch_size
        conv = nn.Conv2d if n == 2 else nn.Conv3d
        self.n_spatial, self.patch, self.channels = n, p, cfg.in_channels
        self.proj = conv(cfg.in_channels + n + 1, cfg.embed_hidden, kernel_size=p, stride=p)
        self.out = nn.Linear(cfg.embed_hidden, cfg.embed_dim)
        self.act = activation(cfg.act)

    def grid_term(self, spatial: tuple[int, ...], t: int, device) -> torch.Tensor:
        """Bias plus the grid channels' share of the patch convolution: (*S/p, T, hidden)."""
        n, c, w = self.n_spatial, self.channels, self.proj.weight  # w (hidden, C+n+1, p, ...)
        axes = torch.meshgrid(*(_linspace(s, device, w.dtype) for s in spatial), indexing="ij")
        conv = F.conv2d if n == 2 else F.conv3d
        space = conv(torch.stack(axes)[None], w[:, c : c + n], self.proj.bias, stride=self.patch)
        space = space[0].movedim(0, -1)  # (*S/p, hidden)
        time = _linspace(t, device, w.dtype)[:, None] * w[:, c + n].sum(dim=tuple(range(1, n + 1)))
        return space.unsqueeze(-2) + time  # (*S/p, T, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, *S, T, C)
        b, *spatial, t, c = x.shape
        n, p = self.n_spatial, self.patch
        lat = [s // p for s in spatial]
        # (B, X/p, p, Y/p, p, [Z/p, p,] T, C) -> (B, X/p, Y/p, [Z/p,] T, p, p, [p,] C)
        split = x.reshape(b, *(v for s in lat for v in (s, p)), t, c)
        order = [0, *range(1, 2 * n, 2), 2 * n + 1, *range(2, 2 * n + 1, 2), 2 * n + 2]
        patches = split.permute(order).reshape(b, *lat, t, p**n * c)
        w = self.proj.weight[:, :c].movedim(1, -1).reshape(self.proj.out_channels, -1)
        h = F.linear(patches, w) + self.grid_term(tuple(spatial), t, x.device)
        return self.act(h)  # (B, *S/p, T, hidden)


class TimeAggregator(nn.Module):
    """The release's temporal aggregation: z_j = Σ_t Σ_i W[t,i,j] · cos(γ_i t_k) · x[t,i]."""

    def __init__(self, cfg: DPOTConfig):
        super().__init__()
        t, d = cfg.in_timesteps, cfg.embed_dim
        self.w = nn.Parameter(torch.randn(t, d, d) / (t * math.sqrt(d)))
        if cfg.time_agg == "exp_mlp":
            self.gamma = nn.Parameter(2 ** torch.linspace(-10, 10, d).unsqueeze(0))  # (1, D)
        else:
            self.register_parameter("gamma", None)

    def embedding(self) -> torch.Tensor:
        """The cosine time embedding cos(γ_i t_k) (T, D), float32 at least under any autocast
        (γ reaches 2¹⁰: phases rounded to bf16 would be off by radians); ones for
        ``time_agg="mlp"``.

        The effective per-frame weights are ``embedding()[:, :, None] * w`` (T, D, D).
        """
        dtype = torch.promote_types(self.w.dtype, torch.float32)
        t = _linspace(self.w.shape[0], self.w.device, dtype)[:, None]  # (T, 1)
        if self.gamma is None:
            return torch.ones_like(t).expand(-1, self.w.shape[1])
        with torch.autocast(self.w.device.type, enabled=False):
            return torch.cos(t * self.gamma.to(dtype))  # (T, 1) * (1, D)


class Block(nn.Module):
    """``x + MLP(GN2(AFNO(GN1(x))))`` on a channels-last latent (B, *S, D)."""

    def __init__(self, cfg: DPOTConfig):
        super().__init__()
        d = cfg.embed_dim
        self.norm1 = nn.GroupNorm(8, d)
        self.filter = FourierMixing(
            d, cfg.n_blocks, cfg.modes, cfg.n_spatial, cfg.modes_z, cfg.mode_rule, cfg.act
        )
        self.norm2 = nn.GroupNorm(8, d)
        self.mlp = nn.Sequential(
            nn.Linear(d, cfg.mlp_dim), activation(cfg.act), nn.Linear(cfg.mlp_dim, d)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.filter(_group_norm(x, self.norm1))
        return x + self.mlp(_group_norm(h, self.norm2))


class OutputHead(nn.Module):
    """Transposed patch convolution, then two position-wise layers:
    (B, *S/p, D) -> (B, *S, T_out, C).

    Without ``head_conv`` the position-wise layers run before the pixels are put in grid order, so
    only the narrow final tensor (C·T_out wide) is permuted. With it (an odd kernel k), a
    residual depthwise k^n convolution with periodic padding runs on the hidden pixels in grid
    order first: a pixel then sees its neighbours across the patch edge, not only its own token.
    """

    def __init__(self, cfg: DPOTConfig):
        super().__init__()
        n, p, od, k = cfg.n_spatial, cfg.patch_size, cfg.out_layer_dim, cfg.head_conv
        deconv = nn.ConvTranspose2d if n == 2 else nn.ConvTranspose3d
        self.n_spatial, self.patch = n, p
        self.t_out, self.c_out = cfg.out_timesteps, cfg.out_channels
        self.deconv = deconv(cfg.embed_dim, od, kernel_size=p, stride=p)
        self.fc1 = nn.Linear(od, od)
        self.fc2 = nn.Linear(od, cfg.out_channels * cfg.out_timesteps)
        self.act = activation(cfg.act)
        self.edge = None
        if k:
            conv = nn.Conv2d if n == 2 else nn.Conv3d
            self.edge = conv(od, od, k, padding=k // 2, groups=od, padding_mode="circular")
            nn.init.zeros_(self.edge.weight)  # starts as the plain head
            nn.init.zeros_(self.edge.bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (B, *S/p, D)
        b, *lat, d = z.shape
        n, p = self.n_spatial, self.patch
        w = self.deconv.weight.movedim(1, -1).reshape(d, -1)  # (D, p^n·od), order (i, j[, k], o)
        y = (z @ w).view(b, *lat, *(p,) * n, -1)  # (B, *S/p, p, ..., od); autocast's precision
        # (B, X/p, Y/p, [Z/p,] p, p, [p,] k) -> (B, X/p, p, Y/p, p, [Z/p, p,] k)
        order = [0, *(v for i in range(n) for v in (1 + i, 1 + n + i)), 2 * n + 1]
        grid = [s * p for s in lat]
        with torch.autocast(z.device.type, enabled=False):  # the narrow layers: no autocast
            y = self.act(y.to(self.fc1.weight.dtype) + self.deconv.bias)  # the weights' precision
            if self.edge is not None:
                y = y.permute(order).reshape(b, *grid, -1)  # (B, *S, od)
                y = y + self.edge(y.movedim(-1, 1)).movedim(1, -1)
            y = self.fc2(self.act(self.fc1(y)))  # (B, *S/p, p, ..., T_out·C) or (B, *S, T_out·C)
        if self.edge is None:
            y = y.permute(order)
        return y.reshape(b, *grid, self.t_out, self.c_out)


def interpolate_pos_embed(pos: torch.Tensor, latent: tuple[int, ...]) -> torch.Tensor:
    """A positional embedding on another latent grid: (1, *L, D) -> (1, *latent, D), bicubic in
    2D, trilinear in 3D."""
    mode = "bicubic" if pos.dim() == 4 else "trilinear"
    grid = pos.movedim(-1, 1)  # (1, D, *L)
    grid = F.interpolate(grid, size=latent, mode=mode, align_corners=False)
    return grid.movedim(1, -1).contiguous()


class DPOT(nn.Module):
    """DPOT on 2D grids: ``model(x)`` maps (B, X, Y, T_in, C) to (B, X, Y, T_out, C)."""

    n_spatial = 2

    def __init__(self, config: DPOTConfig | None = None, **overrides):
        super().__init__()
        cfg = config if config is not None else DPOTConfig(n_spatial=self.n_spatial, **overrides)
        if config is not None and overrides:
            cfg = DPOTConfig.from_dict({**cfg.to_dict(), **overrides})
        if cfg.n_spatial != self.n_spatial:
            raise ValueError(
                f"{type(self).__name__} needs n_spatial={self.n_spatial}, got {cfg.n_spatial}"
            )
        self.config = cfg
        d = cfg.embed_dim
        self.patch_embed = PatchEmbed(cfg)
        self.pos_embed = nn.Parameter(torch.zeros(1, *cfg.latent_size, d))  # (1, *S/p, D)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.time_agg = TimeAggregator(cfg)
        if cfg.normalize:
            self.scale_feats_mu = nn.Linear(2 * cfg.in_channels, d)
            self.scale_feats_sigma = nn.Linear(2 * cfg.in_channels, d)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        for blk in self.blocks:
            blk.filter.set_grid(cfg.latent_size)
        if cfg.n_cls > 0:
            act = activation(cfg.act)
            self.cls_head = nn.Sequential(
                nn.Linear(d, d), act, nn.Linear(d, d), act, nn.Linear(d, cfg.n_cls)
            )
        self.head = OutputHead(cfg)
        for m in (getattr(self, "cls_head", None), getattr(self, "scale_feats_mu", None),
                  getattr(self, "scale_feats_sigma", None)):  # fmt: skip
            if m is not None:
                m.apply(_init_linear)

    # ---------------------------------------------------------------- checks
    def check_input(self, x: torch.Tensor) -> None:
        """ValueError naming expected and received shapes when ``x`` does not fit the model."""
        cfg, n = self.config, self.n_spatial
        expected = f"(B, {', '.join('XYZ'[:n])}, T_in={cfg.in_timesteps}, C={cfg.in_channels})"
        if x.dim() != n + 3:
            raise ValueError(f"expected a {n + 3}-D input {expected}, got shape {tuple(x.shape)}")
        *spatial, t, c = x.shape[1:]
        if c != cfg.in_channels:
            raise ValueError(
                f"expected {cfg.in_channels} channels {expected}, got shape {tuple(x.shape)}"
            )
        if t != cfg.in_timesteps:
            raise ValueError(
                f"expected T_in={cfg.in_timesteps} {expected}, got shape {tuple(x.shape)}"
            )
        if any(s % cfg.patch_size for s in spatial):
            raise ValueError(
                f"grid {tuple(spatial)} is not divisible by patch_size {cfg.patch_size}; "
                f"expected {expected} with grid {cfg.img_size}"
            )
        if tuple(spatial) != cfg.img_size:
            raise ValueError(
                f"grid {tuple(spatial)} differs from the model's img_size {cfg.img_size}; "
                f"call model.resize({tuple(spatial)}) to re-target the positional embedding"
            )

    # ---------------------------------------------------------------- forward
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, *S, T, C) normalised input -> aggregated latent (B, *S/p, D), float32 at least
        under autocast (the residual stream)."""
        u = self.patch_embed(x)  # (B, *S/p, T, hidden)
        dtype = self.pos_embed.dtype  # the residual stream's: the weights' own under autocast
        with torch.autocast(x.device.type, enabled=False):  # weights only: no batch dimension
            emb, w = self.time_agg.embedding().to(dtype), self.time_agg.w  # (T, D), (T, D, D)
            out = self.patch_embed.out
            # W_t = diag(emb_t) w_t; fused_t = W_out^T W_t, scaling the narrow factor (T, hidden, D)
            fused = torch.bmm(out.weight.t().unsqueeze(0) * emb.unsqueeze(1), w)
            # Σ_t W_t (D, D); a broadcast product (einsum makes it D tiny matmuls, slow backward)
            w_sum = (emb.unsqueeze(-1) * w).sum(dim=0)
            shift = (self.pos_embed[0] + out.bias) @ w_sum  # (*S/p, D): Σ_t (pos + b_out) W_t
            # the long contraction over time and hidden width: float32 at least
            z = u.reshape(*u.shape[:-2], -1).to(fused.dtype) @ fused.reshape(-1, fused.shape[-1])
        return z.to(dtype) + shift  # (B, *S/p, D)

    def forward(self, x: torch.Tensor, return_cls: bool = False):
        """(B, *S, T_in, C) -> (B, *S, T_out, C); with ``return_cls`` also logits (B, n_cls)."""
        self.check_input(x)
        cfg = self.config
        space_time = tuple(range(1, self.n_spatial + 2))
        if cfg.normalize:
            mu = x.mean(dim=space_time, keepdim=True)  # (B, 1, .., 1, C)
            sigma = x.std(dim=space_time, keepdim=True) + 1e-6
            x = (x - mu) / sigma
        z = self.encode(x)  # (B, *S/p, D)
        if cfg.normalize:
            stats = torch.cat([mu, sigma], dim=-1).flatten(1)  # (B, 2C)
            view = (z.shape[0],) + (1,) * self.n_spatial + (-1,)
            with torch.autocast(x.device.type, enabled=False):  # (B, 2C) -> (B, D): cheap
                scale, shift = self.scale_feats_sigma(stats), self.scale_feats_mu(stats)
            z = scale.view(view) * z + shift.view(view)
        for blk in self.blocks:
            z = blk(z)
        y = self.head(z)  # (B, *S, T_out, C)
        if cfg.normalize:
            y = y * sigma + mu
        if not return_cls:
            return y
        if cfg.n_cls == 0:
            raise ValueError("this model has no classification head (n_cls=0)")
        return y, self.cls_head(z.mean(dim=tuple(range(1, self.n_spatial + 1))))

    # ---------------------------------------------------------------- utilities
    @torch.no_grad()
    def resize(self, img_size: int | tuple[int, ...]) -> DPOT:
        """Re-target the model to another grid: the positional embedding is interpolated, every
        other weight is kept. Returns ``self``."""
        cfg = DPOTConfig.from_dict({**self.config.to_dict(), "img_size": img_size})
        if cfg.latent_size != self.config.latent_size:
            self.pos_embed = nn.Parameter(interpolate_pos_embed(self.pos_embed, cfg.latent_size))
            for blk in self.blocks:
                blk.filter.set_grid(cfg.latent_size)
        self.config = cfg
        return self

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def extra_repr(self) -> str:
        cfg = self.config
        return (
            f"img_size={cfg.img_size}, patch={cfg.patch_size}, C={cfg.in_channels}, "
            f"T_in={cfg.in_timesteps}, T_out={cfg.out_timesteps}, D={cfg.embed_dim}, "
            f"depth={cfg.depth}, params={self.num_parameters() / 1e6:.2f}M"
        )


class DPOT3D(DPOT):
    """DPOT on 3D grids: ``model(x)`` maps (B, X, Y, Z, T_in, C) to (B, X, Y, Z, T_out, C)."""

    n_spatial = 3


def _init_linear(m: nn.Module) -> None:
    """The release's init for its Linear layers: trunc-normal(0.02) weights, zero bias."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        nn.init.zeros_(m.bias)


def build_model(config: DPOTConfig) -> DPOT:
    """The 2D or 3D class that fits ``config.n_spatial``."""
    return (DPOT if config.n_spatial == 2 else DPOT3D)(config)


__all__ = ["DPOTConfig", "DPOT", "DPOT3D", "adapt_model_config", "build_model"]
