"""Fourier attention (AFNO): a block-diagonal complex MLP on the kept Fourier modes of a latent
grid.

The latent is channels-last, ``(B, *spatial, D)`` with 2 or 3 spatial axes. The parameters keep the
release's layout (index 0 = real, 1 = imaginary) so released weights load as they are; the compute
runs complex64 matmuls on an interleaved ``[re, im]`` view of the spectrum (under autocast it packs
each complex block into one real matmul, so that autocast lowers it), touches only the kept modes
and never fills full-size scratch tensors with zeros.

On small latents (at most ``DFT_MAX_MODES`` kept modes, e.g. the 8×8 latent of a 64² grid) the
transforms are real matmuls with the kept rows of the DFT matrix instead of FFTs: the same
``rfftn``/``irfftn`` (``norm="ortho"``) to float32 rounding, without the FFT's layout copies. The
matrices of the grid the model is built for are buffers of the filter (``set_grid``; not saved),
so they move with the model and a compiled graph takes them as inputs instead of rebuilding them.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import nn

MODE_RULES = ("symmetric", "release")
# Kept modes up to which the transforms are DFT matmuls (the timings that set it:
# benchmarks/results/afno_dft.md).
DFT_MAX_MODES = 100


def _pack_complex_weight(w: torch.Tensor) -> torch.Tensor:
    """(2, nb, i, o) real/imag parts -> (nb, 2i, 2o) real matrix acting on interleaved [re, im].

    For z = a + ib and W = Wr + iWi: zW = (aWr - bWi) + i(aWi + bWr).
    Rows are ordered (i, re|im), columns (o, re|im), matching ``view_as_real``'s trailing pair.
    """
    wr, wi = w[0], w[1]  # (nb, i, o)
    top = torch.stack((wr, wi), dim=-1)  # row a: out re = Wr, out im = Wi   (nb, i, o, 2)
    bottom = torch.stack((-wi, wr), dim=-1)  # row b: out re = -Wi, out im = Wr (nb, i, o, 2)
    packed = torch.stack((top, bottom), dim=2)  # (nb, i, 2, o, 2)
    nb, i, _, o, _ = packed.shape
    return packed.reshape(nb, 2 * i, 2 * o)


def _pack_complex_bias(b: torch.Tensor) -> torch.Tensor:
    """(2, nb, o) -> (nb, 2o) interleaved [re, im]."""
    return torch.stack((b[0], b[1]), dim=-1).flatten(-2)


@functools.lru_cache(maxsize=64)
def dft_matrices(
    spatial: tuple[int, ...], kept: tuple[tuple[int, ...], ...], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Real float32 matrices of ``rfftn`` and ``irfftn`` (``norm="ortho"``) restricted to the
    kept modes ``kept`` (indices per axis, the last one the rfft axis) of a grid ``spatial``:
    forward (2K, N) maps a flattened field to the kept modes' real parts, then imaginary parts;
    inverse (N, 2K) maps those back, counting each rfft bin but 0 and n/2 twice as irfftn does
    (imaginary parts of those two bins act through the sine terms, as in torch's irfftn)."""
    f64 = torch.float64
    pos = torch.meshgrid(*(torch.arange(n, dtype=f64) for n in spatial), indexing="ij")
    freq = torch.meshgrid(*(torch.tensor(k, dtype=f64) for k in kept), indexing="ij")
    turns = [
        (f.reshape(-1, 1) * x.reshape(1, -1)) % n / n
        for f, x, n in zip(freq, pos, spatial, strict=True)
    ]
    phase = 2 * math.pi * sum(turns)  # (K, N)
    cos, sin, scale = torch.cos(phase), torch.sin(phase), math.prod(spatial) ** -0.5
    forward = torch.cat((cos, -sin)) * scale
    last, n_last = torch.tensor(kept[-1], dtype=f64), spatial[-1]
    twice = 2.0 - ((last == 0) | (2 * last == n_last)).to(f64)  # (K_last,)
    weight = twice.expand(*(len(k) for k in kept)).reshape(-1, 1)  # (K, 1)
    inverse = (torch.cat((cos * weight, -sin * weight)) * scale).t()
    as32 = dict(device=device, dtype=torch.float32)
    return forward.to(**as32).contiguous(), inverse.to(**as32).contiguous()


def dft(x: torch.Tensor, matrix: torch.Tensor, add: torch.Tensor | None = None) -> torch.Tensor:
    """``matrix @ x`` (``+ add``) in float32 under any autocast: one of ``dft_matrices`` applied
    to the grid axis of ``x`` (B, N, D) or (B, 2K, D)."""
    with torch.autocast(x.device.type, enabled=False):
        if add is None:
            return matrix @ x
        return torch.baddbmm(add, matrix.expand(x.shape[0], -1, -1), x)


def kept_index(n: int, modes: int, rule: str) -> tuple[slice, ...]:
    """Slices of a full-FFT axis of length n that the rule keeps (one, or low and high parts)."""
    if rule == "release":
        return (slice(0, min(modes, n)),)
    if 2 * modes - 1 >= n:
        return (slice(0, n),)
    return (slice(0, modes), slice(n - modes + 1, n))


class FourierMixing(nn.Module):
    """AFNO mixing with the inner residual: ``h -> irfft(MLP_c(rfft(h))) + h``.

    Input and output ``(B, *spatial, D)``. ``modes`` bounds every full-FFT axis and the rfft axis,
    except in 3D where the last (rfft) axis keeps ``modes_z`` modes, as in the release.
    ``mode_rule="symmetric"`` keeps |k| < modes on full-FFT axes; ``"release"`` keeps
    ``[:modes]`` (the released models' rule, which drops negative k when it truncates).
    """

    def __init__(
        self,
        dim: int,
        n_blocks: int,
        modes: int,
        n_spatial: int = 2,
        modes_z: int | None = None,
        mode_rule: str = "symmetric",
        act: str = "gelu",
    ):
        super().__init__()
        if dim % n_blocks:
            raise ValueError(f"embed_dim {dim} is not divisible by n_blocks {n_blocks}")
        if mode_rule not in MODE_RULES:
            raise ValueError(f"mode_rule must be one of {MODE_RULES}, got {mode_rule!r}")
        self.n_blocks, self.block_size = n_blocks, dim // n_blocks
        self.modes, self.n_spatial, self.mode_rule = modes, n_spatial, mode_rule
        self.modes_last = modes if n_spatial == 2 else (modes_z if modes_z is not None else 8)
        self.act = activation(act)
        bs, scale = self.block_size, 1.0 / self.block_size**2
        self.w1 = nn.Parameter(scale * torch.rand(2, n_blocks, bs, bs))
        self.b1 = nn.Parameter(scale * torch.rand(2, n_blocks, bs))
        self.w2 = nn.Parameter(scale * torch.rand(2, n_blocks, bs, bs))
        self.b2 = nn.Parameter(scale * torch.rand(2, n_blocks, bs))
        self.grid: tuple[int, ...] | None = None  # the grid of the DFT buffers
        self.register_buffer("dft_forward", None, persistent=False)  # (2K, N)
        self.register_buffer("dft_inverse", None, persistent=False)  # (N, 2K)

    def set_grid(self, spatial: tuple[int, ...]) -> None:
        """Hold the DFT matrices of the latent grid ``spatial`` as buffers when its transforms
        are DFT matmuls (none otherwise); other grids still work, from a cache."""
        kept = self.kept_modes(tuple(spatial))
        use = math.prod(len(k) for k in kept) <= DFT_MAX_MODES
        device = self.w1.device
        self.grid = tuple(spatial) if use else None
        self.dft_forward, self.dft_inverse = (
            [m.clone() for m in dft_matrices(self.grid, kept, device)] if use else (None, None)
        )

    def _block_mlp(self, x: torch.Tensor) -> torch.Tensor:
        """Complex block MLP on interleaved ``[re, im]`` rows: (nb, M, 2bs) -> same shape.

        Without autocast the matmuls are complex64 ones on the weights as they are; under
        autocast each complex block is packed into one real matmul, which autocast lowers (bf16).
        """
        if not torch.is_autocast_enabled(x.device.type):
            z = torch.view_as_complex(x.unflatten(-1, (-1, 2)))  # (nb, M, bs)
            w1, w2 = torch.complex(*self.w1.unbind(0)), torch.complex(*self.w2.unbind(0))
            b1, b2 = torch.complex(*self.b1.unbind(0)), torch.complex(*self.b2.unbind(0))
            h = torch.baddbmm(b1.unsqueeze(1), z, w1)
            h = torch.view_as_complex(self.act(torch.view_as_real(h)))  # on re and im apart
            return torch.view_as_real(torch.baddbmm(b2.unsqueeze(1), h, w2)).flatten(-2)
        h = torch.baddbmm(
            _pack_complex_bias(self.b1).unsqueeze(1), x, _pack_complex_weight(self.w1)
        )
        h = self.act(h)  # GELU on real and imaginary parts separately
        return torch.baddbmm(
            _pack_complex_bias(self.b2).unsqueeze(1), h, _pack_complex_weight(self.w2)
        )

    def _mlp(self, z: torch.Tensor) -> torch.Tensor:
        """Complex block MLP on a spectrum (..., D) complex64 -> same shape."""
        lead, nb, bs = z.shape[:-1], self.n_blocks, self.block_size
        x = torch.view_as_real(z).reshape(-1, nb, 2 * bs).transpose(0, 1)  # (nb, M, 2bs)
        y = self._block_mlp(x).float().transpose(0, 1).reshape(*lead, nb, bs, 2)
        return torch.view_as_complex(y.contiguous()).reshape(*lead, nb * bs)

    def kept_modes(self, spatial: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
        """Indices of the kept modes on each axis of ``rfftn``'s spectrum of a grid ``spatial``."""
        bands = [kept_index(n, self.modes, self.mode_rule) for n in spatial[:-1]]
        full = [
            tuple(i for s in parts for i in range(n)[s])
            for parts, n in zip(bands, spatial[:-1], strict=True)
        ]
        return (*full, tuple(range(min(self.modes_last, spatial[-1] // 2 + 1))))

    def _dft_mix(self, h: torch.Tensor, kept: tuple[tuple[int, ...], ...]) -> torch.Tensor:
        """The filter with DFT matmuls: float32 (B, *S, D) -> (B, *S, D)."""
        b, d, nb, bs = h.shape[0], h.shape[-1], self.n_blocks, self.block_size
        if self.grid == tuple(h.shape[1:-1]):  # the buffers (float32 unless the model was cast)
            forward, inverse = self.dft_forward.float(), self.dft_inverse.float()
        else:  # another grid: the cache when eager; torch.compile traces the plain function
            matrices = dft_matrices.__wrapped__ if torch.compiler.is_compiling() else dft_matrices
            forward, inverse = matrices(tuple(h.shape[1:-1]), kept, h.device)
        k = forward.shape[0] // 2
        flat = h.reshape(b, -1, d)  # (B, N, D)
        spec = dft(flat, forward)  # (B, 2K, D): real parts of the kept modes, then imaginary
        # (B, 2, K, nb, bs) -> (nb, B·K, bs·2): each block's rows as interleaved [re, im]
        x = spec.view(b, 2, k, nb, bs).permute(3, 0, 2, 4, 1).reshape(nb, b * k, 2 * bs)
        y = self._block_mlp(x).float().view(nb, b, k, bs, 2)  # the matmuls follow autocast
        y = y.permute(1, 4, 2, 0, 3).reshape(b, 2 * k, d)  # back to (B, [re | im] × K, D)
        return dft(y, inverse, add=flat).view(h.shape)  # + the inner residual

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # (B, *S, D)
        dtype, spatial = h.dtype, h.shape[1:-1]
        dims = tuple(range(1, 1 + self.n_spatial))
        hf = h.float()
        kept = self.kept_modes(tuple(spatial))
        if math.prod([len(k) for k in kept]) <= DFT_MAX_MODES:
            return self._dft_mix(hf, kept).to(dtype)
        with torch.autocast(h.device.type, enabled=False):  # FFTs stay in float32
            spec = torch.fft.rfftn(hf, dim=dims, norm="ortho")  # (B, *S[:-1], S[-1]//2+1, D)
        mixed = self._mix_kept(spec, spatial)  # the matmuls follow autocast (bf16 on GPU)
        with torch.autocast(h.device.type, enabled=False):
            out = torch.fft.irfftn(mixed, s=spatial, dim=dims, norm="ortho") + hf
        return out.to(dtype)

    def _mix_kept(self, spec: torch.Tensor, spatial: torch.Size) -> torch.Tensor:
        """MLP on the kept modes of ``spec``; unkept modes come back as zeros (irfftn's ``s``
        zero-pads every axis at its end, so only a gap between ±k bands is ever filled)."""
        bands = [kept_index(n, self.modes, self.mode_rule) for n in spatial[:-1]]
        kept = spec[..., : self.modes_last, :]  # (B, *S[:-1], kl, D)
        for axis, parts in enumerate(bands, start=1):
            pieces = [kept[(slice(None),) * axis + (s,)] for s in parts]
            kept = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=axis)
        mixed = self._mlp(kept)
        for axis, parts in enumerate(bands, start=1):
            if len(parts) == 2:  # [low | zeros | high] on this full-FFT axis
                low = parts[0].stop
                gap = list(mixed.shape)
                gap[axis] = spatial[axis - 1] - mixed.shape[axis]
                high = mixed.narrow(axis, low, mixed.shape[axis] - low)
                mixed = torch.cat([mixed.narrow(axis, 0, low), mixed.new_zeros(gap), high], axis)
        return mixed


ACTIVATIONS = {
    "gelu": nn.GELU,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "elu": nn.ELU,
    "softplus": nn.Softplus,
    "leaky_relu": nn.LeakyReLU,
}


def activation(name: str) -> nn.Module:
    """The release's activation names -> a module."""
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"act must be one of {sorted(ACTIVATIONS)}, got {name!r}") from None
