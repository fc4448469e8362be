"""The DPOT release's 2D model arithmetic, computed the way the release does: the speed baseline.

Channels-first latent, the grid concatenated to the input, patch embedding per frame, the
positional embedding added to every frame before the temporal aggregation, and the AFNO filter
with eight separate real einsums writing into four full-size zero-filled scratch tensors. Only
the arithmetic is reproduced (parameter names are the release's, so its checkpoints load with
``load_state_dict``); it is a benchmark baseline, not part of the package.
``tests/models/test_parity.py`` checks it against the release's golden outputs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ReleaseAFNO2D(nn.Module):
    """AFNO filter, inner residual included: channels-first (B, D, H, W) -> (B, D, H, W)."""

    def __init__(self, dim: int, n_blocks: int, modes: int):
        super().__init__()
        bs = dim // n_blocks
        self.n_blocks, self.block_size, self.modes = n_blocks, bs, modes
        scale = 1 / bs**2
        self.w1 = nn.Parameter(scale * torch.rand(2, n_blocks, bs, bs))
        self.b1 = nn.Parameter(scale * torch.rand(2, n_blocks, bs))
        self.w2 = nn.Parameter(scale * torch.rand(2, n_blocks, bs, bs))
        self.b2 = nn.Parameter(scale * torch.rand(2, n_blocks, bs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)  # (B, H, W, D)
        b, h, w, d = x.shape
        residual = x
        spec = torch.fft.rfft2(x, dim=(1, 2), norm="ortho")  # (B, H, W//2+1, D)
        spec = spec.reshape(b, h, w // 2 + 1, self.n_blocks, self.block_size)
        shape = (b, h, w // 2 + 1, self.n_blocks, self.block_size)
        o1_real = torch.zeros(shape, device=x.device)
        o1_imag = torch.zeros(shape, device=x.device)
        o2_real = torch.zeros(shape, device=x.device)
        o2_imag = torch.zeros(shape, device=x.device)
        k = self.modes
        re, im = spec[:, :k, :k].real, spec[:, :k, :k].imag
        mm = "...bi,bio->...bo"
        o1_real[:, :k, :k] = F.gelu(
            torch.einsum(mm, re, self.w1[0]) - torch.einsum(mm, im, self.w1[1]) + self.b1[0]
        )
        o1_imag[:, :k, :k] = F.gelu(
            torch.einsum(mm, im, self.w1[0]) + torch.einsum(mm, re, self.w1[1]) + self.b1[1]
        )
        o2_real[:, :k, :k] = (
            torch.einsum(mm, o1_real[:, :k, :k], self.w2[0])
            - torch.einsum(mm, o1_imag[:, :k, :k], self.w2[1])
            + self.b2[0]
        )
        o2_imag[:, :k, :k] = (
            torch.einsum(mm, o1_imag[:, :k, :k], self.w2[0])
            + torch.einsum(mm, o1_real[:, :k, :k], self.w2[1])
            + self.b2[1]
        )
        spec = torch.view_as_complex(torch.stack([o2_real, o2_imag], dim=-1))
        spec = spec.reshape(b, h, w // 2 + 1, d)
        x = torch.fft.irfft2(spec, s=(h, w), dim=(1, 2), norm="ortho") + residual
        return x.permute(0, 3, 1, 2)  # (B, D, H, W)


class ReleaseBlock(nn.Module):
    def __init__(self, dim: int, mlp_ratio: float, n_blocks: int, modes: int):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.GroupNorm(8, dim)
        self.filter = ReleaseAFNO2D(dim, n_blocks, modes)
        self.norm2 = nn.GroupNorm(8, dim)
        self.mlp = nn.Sequential(nn.Conv2d(dim, hidden, 1), nn.GELU(), nn.Conv2d(hidden, dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, D, H, W)
        residual = x
        x = self.norm1(x)
        x = self.filter(x)
        x = self.norm2(x)
        x = self.mlp(x)
        return x + residual


class ReleaseDPOTNet(nn.Module):
    """The release's 2D DPOT: (B, X, Y, T_in, C) -> ((B, X, Y, T_out, C_out), logits (B, n_cls))."""

    def __init__(
        self,
        img_size: int = 128,
        patch_size: int = 8,
        in_channels: int = 4,
        out_channels: int = 4,
        in_timesteps: int = 10,
        out_timesteps: int = 1,
        n_blocks: int = 4,
        embed_dim: int = 512,
        out_layer_dim: int = 32,
        depth: int = 4,
        modes: int = 32,
        mlp_ratio: float = 1.0,
        n_cls: int = 12,
        normalize: bool = False,
        act: str = "gelu",
        time_agg: str = "exp_mlp",
    ):
        super().__init__()
        if act != "gelu" or time_agg != "exp_mlp":
            raise ValueError("the transcription covers act='gelu' and time_agg='exp_mlp' only")
        p, c, d = patch_size, in_channels, embed_dim
        self.patch, self.normalize = p, normalize
        self.out_channels, self.out_timesteps = out_channels, out_timesteps
        latent = img_size // p
        hidden = out_channels * p + 3
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Sequential(
            nn.Conv2d(c + 3, hidden, p, stride=p), nn.GELU(), nn.Conv2d(hidden, d, 1)
        )
        self.pos_embed = nn.Parameter(torch.zeros(1, d, latent, latent))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if normalize:
            self.scale_feats_mu = nn.Linear(2 * c, d)
            self.scale_feats_sigma = nn.Linear(2 * c, d)
        self.time_agg_layer = nn.Module()
        t = in_timesteps
        self.time_agg_layer.w = nn.Parameter(torch.randn(t, d, d) / (t * math.sqrt(d)))
        self.time_agg_layer.gamma = nn.Parameter(2 ** torch.linspace(-10, 10, d).unsqueeze(0))
        self.blocks = nn.ModuleList(
            ReleaseBlock(d, mlp_ratio, n_blocks, modes) for _ in range(depth)
        )
        self.cls_head = nn.Sequential(
            nn.Linear(d, d), nn.GELU(), nn.Linear(d, d), nn.GELU(), nn.Linear(d, n_cls)
        )
        od = out_layer_dim
        self.out_layer = nn.Sequential(
            nn.ConvTranspose2d(d, od, p, stride=p),
            nn.GELU(),
            nn.Conv2d(od, od, 1),
            nn.GELU(),
            nn.Conv2d(od, out_channels * out_timesteps, 1),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, sx, sy, t, c = x.shape  # (B, X, Y, T, C)
        if self.normalize:
            mu = x.mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1, C)
            sigma = x.std(dim=(1, 2, 3), keepdim=True) + 1e-6
            x = (x - mu) / sigma
            stats = torch.cat([mu, sigma], dim=-1)  # (B, 1, 1, 1, 2C)
            scale_mu = self.scale_feats_mu(stats).squeeze(-2).permute(0, 3, 1, 2)  # (B, D, 1, 1)
            scale_sigma = self.scale_feats_sigma(stats).squeeze(-2).permute(0, 3, 1, 2)
        gx = (
            torch.linspace(0, 1, sx, device=x.device).reshape(1, sx, 1, 1, 1).repeat(b, 1, sy, t, 1)
        )
        gy = (
            torch.linspace(0, 1, sy, device=x.device).reshape(1, 1, sy, 1, 1).repeat(b, sx, 1, t, 1)
        )
        gt = torch.linspace(0, 1, t, device=x.device).reshape(1, 1, 1, t, 1).repeat(b, sx, sy, 1, 1)
        x = torch.cat([x, torch.cat([gx, gy, gt], dim=-1)], dim=-1)  # (B, X, Y, T, C+3)
        x = x.permute(0, 3, 4, 1, 2).reshape(b * t, c + 3, sx, sy)  # ((B T), C+3, X, Y)
        x = self.patch_embed.proj(x) + self.pos_embed  # ((B T), D, X/p, Y/p)
        d, lx, ly = x.shape[1:]
        x = x.reshape(b, t, d, lx, ly).permute(0, 3, 4, 1, 2).contiguous()  # (B, X/p, Y/p, T, D)
        tau = torch.linspace(0, 1, t, device=x.device).unsqueeze(-1)  # (T, 1)
        t_embed = torch.cos(tau @ self.time_agg_layer.gamma)  # (T, D)
        x = torch.einsum("tij,...ti->...j", self.time_agg_layer.w, x * t_embed)  # (B, X/p, Y/p, D)
        x = x.permute(0, 3, 1, 2).contiguous()  # (B, D, X/p, Y/p)
        if self.normalize:
            x = scale_sigma * x + scale_mu
        for blk in self.blocks:
            x = blk(x)
        cls_pred = self.cls_head(x.mean(dim=(2, 3)))
        x = self.out_layer(x).permute(0, 2, 3, 1)  # (B, X, Y, C_out·T_out)
        x = x.reshape(b, sx, sy, self.out_timesteps, self.out_channels)
        if self.normalize:
            x = x * sigma + mu
        return x, cls_pred
