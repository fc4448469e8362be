"""Fine-tuning setup: carry pre-trained DPOT weights into a model of another shape, and build
optimizer parameter groups with per-part learning rates and frozen parts.

``transfer_weights`` sorts every tensor of the fine-tuning model into exactly one of

- **loaded**: same name and shape in the source, copied as is;
- **adapted**: same role, another shape, transformed; only the positional embedding has such a
  transform: interpolated to the new latent grid (bicubic in 2D, trilinear in 3D);
- **new**: kept at the model's fresh initialisation;

and lists the source tensors it did not use. The rule, applied to *units* (``patch_embed``,
``pos_embed``, ``time_agg``, ``head``, ``cls_head``, ``scale_feats_mu``, ``scale_feats_sigma``,
and each ``blocks.N.{norm1,filter,norm2,mlp}``):

- a unit is loaded only if every one of its tensors is: when one tensor is missing from the source,
  has another shape (and is not the positional embedding), or is named in ``reinit``, the whole
  unit stays new. So a new channel count gives a new patch embedding (its conv input and hidden
  width change) and a new output head (its last layer's width changes); a new ``in_timesteps``
  gives a new temporal aggregation; a new grid keeps everything and interpolates ``pos_embed``.
- when the number of spatial axes changes (2D -> 3D), the embedding, positional embedding,
  temporal aggregation and output head stay new even where shapes agree, as the DPOT release does;
  the blocks carry over unchanged (AFNO weights are shared over frequencies, 1×1 convolutions are
  ``nn.Linear`` here).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import nn

from dpot_lab.models.checkpoint import Opened, open_checkpoint
from dpot_lab.models.dpot import interpolate_pos_embed
from dpot_lab.models.parts import PARTS
from dpot_lab.models.util import unwrap

logger = logging.getLogger(__name__)

# Units re-initialised when the number of spatial axes changes (the release's 2D -> 3D rule).
_SPACE_BOUND_UNITS = ("patch_embed", "pos_embed", "time_agg", "head")


class Adapted(NamedTuple):
    """A model tensor filled from a source tensor of another shape."""

    name: str
    from_shape: tuple[int, ...]
    to_shape: tuple[int, ...]
    how: str


@dataclass
class TransferReport:
    """What ``transfer_weights`` did with every model tensor and every source tensor.

    ``loaded``, ``adapted`` and ``new`` partition the model's state-dict names; ``why_new`` gives
    the reason for each new tensor; ``unused`` lists the source tensors that were not used.
    """

    source: str
    loaded: list[str] = field(default_factory=list)
    adapted: list[Adapted] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    why_new: dict[str, str] = field(default_factory=dict)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # model tensors
    source_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def status(self, name: str) -> str:
        """``"loaded"``, ``"adapted"`` or ``"new"`` for a model tensor."""
        if name in self.loaded:
            return "loaded"
        if name in {a.name for a in self.adapted}:
            return "adapted"
        if name in self.new:
            return "new"
        raise KeyError(f"{name!r} is not a tensor of the model; known: {sorted(self.shapes)}")

    def summary(self) -> str:
        """One line of counts."""
        return (
            f"weights from {self.source}: {len(self.loaded)} loaded, {len(self.adapted)} adapted, "
            f"{len(self.new)} new (of {len(self.shapes)} model tensors); "
            f"{len(self.unused)} source tensors unused"
        )

    def table(self) -> str:
        """A readable table: one row per model tensor, then the unused source tensors."""
        adapted = {a.name: a for a in self.adapted}
        rows = []
        for name, shape in self.shapes.items():
            if name in adapted:
                a = adapted[name]
                rows.append((name, "adapted", f"{_fmt(a.from_shape)} -> {_fmt(a.to_shape)}", a.how))
            elif name in self.why_new:
                rows.append((name, "new", _fmt(shape), self.why_new[name]))
            else:
                rows.append((name, "loaded", _fmt(shape), ""))
        rows += [
            (n, "unused", _fmt(self.source_shapes[n]), "in the source, not used")
            for n in self.unused
        ]
        widths = [
            max(len(r[i]) for r in [("tensor", "status", "shape", ""), *rows]) for i in (0, 1, 2)
        ]
        lines = [self.summary()]
        for r in [("tensor", "status", "shape", "note"), *rows]:
            lines.append(
                "  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)) + "  " + r[3]
            )
        return "\n".join(line.rstrip() for line in lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (shapes as lists)."""
        return {
            "source": self.source,
            "loaded": list(self.loaded),
            "adapted": [
                {
                    "name": a.name,
                    "from_shape": list(a.from_shape),
                    "to_shape": list(a.to_shape),
                    "how": a.how,
                }
                for a in self.adapted
            ],
            "new": [{"name": n, "why": self.why_new[n]} for n in self.new],
            "unused": list(self.unused),
        }


def _fmt(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ")"


# ------------------------------------------------------------------------------- sources
def _source_state(source: Any) -> tuple[dict[str, torch.Tensor], str]:
    """A model, an ``Opened`` checkpoint, or what ``open_checkpoint`` reads -> (state in our
    names and layouts, description)."""
    if isinstance(source, nn.Module):
        model = unwrap(source)
        return dict(model.state_dict()), f"{type(model).__name__} model"
    opened = source if isinstance(source, Opened) else open_checkpoint(source)
    return opened.state, opened.description


def _n_spatial(state: Mapping[str, torch.Tensor]) -> int | None:
    """Number of spatial axes a state dict was trained for, when it tells."""
    for key in ("pos_embed", "patch_embed.proj.weight", "head.deconv.weight"):
        if key in state:
            return state[key].dim() - 2  # (1, *S/p, D) or conv kernels (o, i, *p)
    return None


def _unit(name: str) -> str:
    """The group of tensors that is loaded or re-initialised together."""
    parts = name.split(".")
    return ".".join(parts[:3]) if parts[0] == "blocks" else parts[0]


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _resolve_reinit(reinit: Iterable[str], names: list[str]) -> set[str]:
    """Part names (``PARTS``) or tensor-name prefixes -> the model tensors they cover."""
    out: set[str] = set()
    for item in [reinit] if isinstance(reinit, str) else reinit:
        prefixes = PARTS.get(item, [item])
        hit = {n for n in names for p in prefixes if _matches(n, p)}
        if not hit:
            units = sorted({_unit(n) for n in names})
            raise ValueError(
                f"reinit: {item!r} is neither a part {sorted(PARTS)} nor a prefix of a model "
                f"tensor (units: {units})"
            )
        out |= hit
    return out


# ------------------------------------------------------------------------------- transfer
@torch.no_grad()
def transfer_weights(
    model: nn.Module, source: Any, *, reinit: Iterable[str] = (), allow_partial: bool = False
) -> TransferReport:
    """Fill ``model`` in place from pre-trained weights and report what happened to every tensor.

    ``source``: a path to a dpot-lab checkpoint or a DPOT release checkpoint, a model, a state dict
    (ours or the release's, DDP ``module.`` prefixes allowed), a release ``{'model': state}`` or
    a checkpoint already read by ``open_checkpoint`` (an ``Opened``).
    ``reinit``: part names of ``PARTS`` or tensor-name prefixes (``"pos_embed"``, ``"blocks.3"``)
    that stay at the model's fresh init. The rules are in the module docstring. Raises ValueError
    when a tensor to be loaded holds NaN/Inf (naming it), when nothing of the source fits the
    model, and when under half of the model's tensors (those not in ``reinit``) come from the
    source unless ``allow_partial`` (then a warning says so); on an error the model is unchanged.
    """
    target = unwrap(model)
    state, desc = _source_state(source)
    own = target.state_dict()
    names = list(own)
    forced = _resolve_reinit(reinit, names)
    n_model = getattr(target, "n_spatial", None)
    n_source = _n_spatial(state)
    space_change = n_model is not None and n_source is not None and n_model != n_source
    space = f"{n_source}D -> {n_model}D" if space_change else None

    report = TransferReport(
        source=desc,
        shapes={k: tuple(v.shape) for k, v in own.items()},
        source_shapes={k: tuple(v.shape) for k, v in state.items()},
    )
    values: dict[str, torch.Tensor] = {}
    units: dict[str, list[str]] = {}
    for name in names:
        units.setdefault(_unit(name), []).append(name)
    for unit, members in units.items():
        bound = space if unit in _SPACE_BOUND_UNITS else None
        taken, adapted, why = _unit_fate(members, own, state, forced, bound)
        if why is None:
            values.update(taken)
            report.adapted += adapted
            report.loaded += [n for n in members if n not in {a.name for a in adapted}]
        else:
            for name in members:
                report.new.append(name)
                report.why_new[name] = why if len(members) == 1 else f"unit {unit}: {why}"
    report.unused = [k for k in state if k not in values]
    _check_transfer(values, len(names) - len(forced), report, type(target).__name__, allow_partial)
    target.load_state_dict({**own, **values}, strict=True)
    logger.info(report.summary())
    return report


def _unit_fate(
    members: list[str],
    own: Mapping[str, torch.Tensor],
    state: Mapping[str, torch.Tensor],
    forced: set[str],
    space: str | None,
) -> tuple[dict[str, torch.Tensor], list[Adapted], str | None]:
    """The tensors of one unit taken from ``state`` (as they are, or adapted), and why the unit
    stays new (None: it does not); ``space``: the change of spatial axes that re-initialises it."""
    values: dict[str, torch.Tensor] = {}
    why, adapted = None, []
    for name in members:
        have = tuple(own[name].shape)
        src = state.get(name)
        if name in forced:
            why = why or f"reinit requested ({name})"
        elif space is not None:
            why = why or f"{space}: {_unit(name)} re-initialised as the release does"
        elif src is None:
            why = why or f"{name} not in the source"
        elif tuple(src.shape) == have:
            values[name] = src
        elif name == "pos_embed" and src.dim() == len(have) and src.shape[-1] == have[-1]:
            values[name] = interpolate_pos_embed(src.detach().float(), have[1:-1])
            mode = "bicubic" if len(have) == 4 else "trilinear"
            grids = " -> ".join("×".join(map(str, s[1:-1])) for s in (src.shape, have))
            how = f"{mode} interpolation of the latent grid {grids}"
            adapted.append(Adapted(name, tuple(src.shape), have, how))
        else:
            why = why or f"{name}: source shape {_fmt(tuple(src.shape))}, model {_fmt(have)}"
    return values, adapted, why


def _check_transfer(
    values: Mapping[str, torch.Tensor], wanted: int, report: TransferReport, model_name: str,
    allow_partial: bool,
) -> None:  # fmt: skip
    """ValueError when nothing fits, when a tensor to load holds NaN/Inf, or when under half of
    the ``wanted`` tensors (those not re-initialised on request) come from the source unless
    ``allow_partial`` (then a warning)."""
    desc = report.source
    if not values:
        raise ValueError(
            f"no tensor of {desc} fits {model_name}: nothing to transfer "
            f"(source embed_dim or layout differs?)\n" + report.table()
        )
    for name, value in values.items():
        bad = int((~torch.isfinite(value)).sum()) if value.is_floating_point() else 0
        if bad:
            raise ValueError(
                f"{desc}: tensor {name} holds {bad} non-finite value(s) (NaN/Inf) of "
                f"{value.numel()}: the source diverged or is damaged; nothing was loaded"
            )
    if 2 * len(values) < wanted:
        text = (
            f"{report.summary()}: under half of the model comes from the source, so the run "
            "starts mostly fresh"
        )
        if not allow_partial:
            raise ValueError(
                f"{text}; to train anyway, set init_allow_partial: true (--allow-partial)\n"
                + report.table()
            )
        logger.warning(text)


# ------------------------------------------------------------------------------- optimizer groups
def _part_of(name: str) -> str | None:
    for part, prefixes in PARTS.items():
        if any(_matches(name, p) for p in prefixes):
            return part
    return None


def param_groups(
    model: nn.Module,
    base_lr: float,
    part_lrs: Mapping[str, float] | None = None,
    freeze: Iterable[str] | None = None,
    weight_decay: float = 1e-6,
) -> list[dict[str, Any]]:
    """Optimizer parameter groups, one per part of ``PARTS`` (``{"name", "params", "lr",
    "weight_decay"}``).

    ``part_lrs`` maps part -> learning rate (others get ``base_lr``); parts in ``freeze`` get
    ``requires_grad_(False)`` and are left out (freezing wins over a learning rate); every other
    parameter gets ``requires_grad_(True)``. The default weight decay is the release's 1e-6.
    """
    part_lrs = dict(part_lrs or {})
    frozen = set([freeze] if isinstance(freeze, str) else (freeze or ()))
    for what, given in (("part_lrs", set(part_lrs)), ("freeze", frozen)):
        unknown = sorted(given - set(PARTS))
        if unknown:
            raise ValueError(f"{what}: unknown parts {unknown}; known parts: {sorted(PARTS)}")
    by_part: dict[str, list[nn.Parameter]] = {part: [] for part in PARTS}
    for name, p in unwrap(model).named_parameters():
        part = _part_of(name)
        if part is None:
            raise ValueError(f"parameter {name!r} is in no part of PARTS {PARTS}")
        p.requires_grad_(part not in frozen)
        by_part[part].append(p)
    groups = [
        {
            "name": part,
            "params": ps,
            "lr": part_lrs.get(part, base_lr),
            "weight_decay": weight_decay,
        }
        for part, ps in by_part.items()
        if ps and part not in frozen
    ]
    if not groups:
        raise ValueError(f"freeze={sorted(frozen)} leaves no parameter to train")
    return groups


__all__ = [
    "Adapted",
    "TransferReport",
    "param_groups",
    "transfer_weights",
]
