"""Low-rank adaptation (LoRA) of a DPOT model: every targeted weight ``W`` becomes
``W + (alpha / rank) · B A`` with ``B`` initialised to zero, so the adapted model starts equal to
the base; only ``A`` and ``B`` (and the tensors a fine-tuning transfer left new or adapted) train.

Why not ``peft``: it pulls in ``transformers``, ``accelerate`` and ``huggingface_hub``, and its
LoRA replaces a layer's ``forward``; our model reads most weights directly (the patch convolution
as a matmul on ``proj.weight``, the fused embedding on ``patch_embed.out.weight``, the head's
transposed convolution on ``deconv.weight``, the AFNO weights as packed block matrices), so
those layers would silently stay unadapted, and ``peft`` has no LoRA for transposed convolutions
or for 4-D parameters like the AFNO ``(2, n_blocks, bs, bs)``. Here the adapter is a
``torch.nn.utils.parametrize`` parametrization of the weight tensor itself: every read of
``module.weight`` sees ``W + ΔW``, whatever the layer does with it, and merging is PyTorch's own
``remove_parametrizations``.

Targets (``optim.lora.targets``): each entry is a **kind** of weight, a **part** or a **name**:

- kinds: ``linear`` (``nn.Linear``), ``conv`` (patch convolution, head's transposed convolution;
  ``(o, i, *k)`` seen as ``(o, i·k)``), ``fourier`` (AFNO ``w1``, ``w2``: one rank-r update per
  real/imaginary part and block), ``time_agg`` (the temporal aggregation ``w``: one per frame);
- parts: ``embed``, ``blocks``, ``head`` (``models.parts.PARTS``);
- names: a parameter-name glob or prefix (``blocks.*.mlp.*``, ``blocks.3``, ``head.fc2.weight``).

A weight is adapted when it is of a listed kind (any kind if none is listed) and inside a listed
part or name (anywhere if none is listed): ``["linear", "conv"]`` adapts every linear and
convolution weight, ``["blocks"]`` every weight of the blocks, ``["fourier", "blocks.3"]`` the
AFNO weights of block 3. Biases, norms and positional embeddings stay frozen.

State-dict names of an adapted weight (what a LoRA run's checkpoints hold, and resume loads):
``<module>.parametrizations.<weight>.original`` (the frozen base), ``....0.lora_a``,
``....0.lora_b`` and ``....0.scale``; ``merged_state`` turns them back into ``<module>.<weight>``.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from dpot_lab.models.parts import LORA_KINDS, PARTS, weight_kinds
from dpot_lab.models.util import unwrap
from dpot_lab.train.finetune import TransferReport

_MARK = ".parametrizations."


def _delta(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor, shape: torch.Size):
    """``scale · B A`` in the weight's shape: B (*batch, out, r), A (*batch, r, in)."""
    return (scale * (b @ a)).reshape(shape)


class LowRankUpdate(nn.Module):
    """The parametrization ``W -> W + scale · B A``; B starts at zero (ΔW = 0), A as a linear
    layer's weight would (uniform, bound 1/√in)."""

    def __init__(self, weight: torch.Tensor, rank: int, alpha: float, batch_dims: int):
        super().__init__()
        batch = weight.shape[:batch_dims]
        n_out, n_in = weight.shape[batch_dims], math.prod(weight.shape[batch_dims + 1 :])
        bound = 1 / math.sqrt(n_in)
        kw = dict(device=weight.device, dtype=weight.dtype)
        self.lora_a = nn.Parameter(torch.empty(*batch, rank, n_in, **kw).uniform_(-bound, bound))
        self.lora_b = nn.Parameter(torch.zeros(*batch, n_out, rank, **kw))
        self.register_buffer("scale", torch.tensor(alpha / rank, **kw))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + _delta(self.lora_a, self.lora_b, self.scale, weight.shape)


@dataclass
class LoRAReport:
    """What ``apply_lora`` did: the adapted weights (name -> kind), the parameters left to train
    in full, and parameter counts (the model's, before adapters; the trainable ones)."""

    adapted: dict[str, str] = field(default_factory=dict)
    full: list[str] = field(default_factory=list)
    model_params: int = 0
    trainable_params: int = 0

    def summary(self) -> str:
        share = self.trainable_params / max(self.model_params, 1)
        return (
            f"LoRA: {len(self.adapted)} weights adapted, {len(self.full)} tensors trained in full; "
            f"{self.trainable_params:,} trainable parameters ({share:.1%} of {self.model_params:,})"
        )


def adaptable_weights(model: nn.Module) -> dict[str, tuple[nn.Module, str, str, int]]:
    """Every weight LoRA can adapt: full name -> (module, attribute, kind, batch dims)."""
    out = {}
    for mod_name, module in unwrap(model).named_modules():
        for attr, (kind, batch_dims) in weight_kinds(module).items():
            if isinstance(module._parameters.get(attr), nn.Parameter):
                name = f"{mod_name}.{attr}" if mod_name else attr
                out[name] = (module, attr, kind, batch_dims)
    return out


def _in_scope(name: str, entry: str) -> bool:
    prefixes = PARTS.get(entry, [entry])
    return any(name == p or name.startswith(p + ".") for p in prefixes) or fnmatch.fnmatchcase(
        name, entry
    )


def select(model: nn.Module, targets: Iterable[str]) -> dict[str, str]:
    """The weights ``targets`` name (rules in the module docstring): name -> kind. Raises
    ValueError naming ``optim.lora.targets`` when nothing, or an entry that matches nothing."""
    targets = list(targets)
    weights = {n: kind for n, (_, _, kind, _) in adaptable_weights(model).items()}
    kinds = [t for t in targets if t in LORA_KINDS]
    scopes = [t for t in targets if t not in LORA_KINDS]
    for entry in scopes:
        if not any(_in_scope(n, entry) for n in weights):
            raise ValueError(
                f"optim.lora.targets: {entry!r} is no kind {list(LORA_KINDS)}, part "
                f"{list(PARTS)} or name of an adaptable weight (e.g. {sorted(weights)[:4]})"
            )
    chosen = {
        n: kind
        for n, kind in weights.items()
        if (not kinds or kind in kinds) and (not scopes or any(_in_scope(n, s) for s in scopes))
    }
    if not chosen:
        raise ValueError(f"optim.lora.targets: {targets} select no weight of the model")
    return chosen


def apply_lora(
    model: nn.Module,
    rank: int,
    alpha: float,
    targets: Iterable[str] = ("linear", "conv", "fourier"),
    train_in_full: Iterable[str] = (),
) -> LoRAReport:
    """Add adapters to ``model`` in place and freeze everything else.

    ``train_in_full``: state-dict names (e.g. the ``new`` and ``adapted`` tensors of a
    ``TransferReport``) that stay trainable as they are and get no adapter.
    """
    if rank < 1 or alpha <= 0:
        raise ValueError(f"optim.lora: expected rank >= 1 and alpha > 0, got {rank}, {alpha}")
    target = unwrap(model)
    if is_adapted(target):
        raise ValueError("apply_lora: the model already has adapters")
    full = set(train_in_full)
    report = LoRAReport(model_params=sum(p.numel() for p in target.parameters()))
    chosen = {n: k for n, k in select(target, targets).items() if n not in full}
    for p in target.parameters():
        p.requires_grad_(False)
    weights = adaptable_weights(target)
    for name, kind in chosen.items():
        module, attr, _, batch_dims = weights[name]
        update = LowRankUpdate(getattr(module, attr), rank, alpha, batch_dims)
        parametrize.register_parametrization(module, attr, update)
        report.adapted[name] = kind
    for name, p in target.named_parameters():
        train = ".lora_a" in name or ".lora_b" in name or name in full
        p.requires_grad_(train)
        if name in full:
            report.full.append(name)
    report.trainable_params = sum(p.numel() for p in target.parameters() if p.requires_grad)
    return report


def apply_lora_config(model: nn.Module, config: Any, transfer: TransferReport | None) -> LoRAReport:
    """``apply_lora`` as a run's ``optim.lora`` (``LoRAConfig``) says; the tensors ``transfer``
    reports new or adapted train in full."""
    full = [*transfer.new, *(a.name for a in transfer.adapted)] if transfer is not None else []
    return apply_lora(model, config.rank, config.alpha, config.targets, full)


def is_adapted(model_or_state: nn.Module | Mapping[str, torch.Tensor]) -> bool:
    """Whether a model, or a state dict, holds LoRA adapters."""
    if isinstance(model_or_state, nn.Module):
        return any(parametrize.is_parametrized(m) for m in unwrap(model_or_state).modules())
    return any(_MARK in k for k in model_or_state)


def merge(model: nn.Module) -> nn.Module:
    """Fold every adapter into its weight, in place: a plain model with the same outputs."""
    for module in unwrap(model).modules():
        if parametrize.is_parametrized(module):
            for attr in list(module.parametrizations):
                parametrize.remove_parametrizations(module, attr, leave_parametrized=True)
    return model


def merged_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A LoRA run's state dict -> the plain one (``W + scale · B A`` under ``W``'s name), the
    same values ``merge`` gives."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if _MARK not in key:
            out[key] = value
        elif key.endswith(".original"):
            head, attr = key.removesuffix(".original").split(_MARK)
            p = f"{head}{_MARK}{attr}.0."
            delta = _delta(
                state[p + "lora_a"], state[p + "lora_b"], state[p + "scale"], value.shape
            )
            out[f"{head}.{attr}"] = value + delta
    return out


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters with ``requires_grad`` (what the optimizer of a LoRA run gets)."""
    return [p for p in unwrap(model).parameters() if p.requires_grad]


__all__ = [
    "LoRAReport", "LowRankUpdate", "adaptable_weights", "apply_lora", "apply_lora_config",
    "is_adapted", "merge", "merged_state", "select", "trainable_parameters",
]  # fmt: skip
