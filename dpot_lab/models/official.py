"""Load checkpoints of the DPOT release (``{'model': state_dict}``) into our model, same outputs.

Sizes are read off the state dict; only what the weights cannot tell (``modes``, ``temporal_modes``,
``act``, and the split of the output width into channels × timesteps when it is ambiguous) comes
from the release's constructor keywords or the release's defaults, with a warning naming each
default used.
"""

from __future__ import annotations

import os
import re
import warnings
from typing import Any

import torch

from dpot_lab.models.checkpoint import load_state_strict, safe_load
from dpot_lab.models.dpot import DPOT, DPOTConfig, build_model

RELEASE_KWARGS = {
    "img_size", "patch_size", "mixing_type", "in_channels", "out_channels", "in_timesteps",
    "out_timesteps", "n_blocks", "embed_dim", "out_layer_dim", "depth", "modes", "temporal_modes",
    "mlp_ratio", "n_cls", "normalize", "act", "time_agg",
}  # fmt: skip
NOT_IN_WEIGHTS = {"modes": 32, "act": "gelu"}  # the release's defaults for what weights do not show

# release key -> our key (regex on the release name)
_RENAMES = [
    (r"^patch_embed\.proj\.0\.", "patch_embed.proj."),
    (r"^patch_embed\.proj\.2\.", "patch_embed.out."),
    (r"^time_agg_layer\.", "time_agg."),
    (r"^out_layer\.0\.", "head.deconv."),
    (r"^out_layer\.2\.", "head.fc1."),
    (r"^out_layer\.4\.", "head.fc2."),
]
_POINTWISE = re.compile(r"^(patch_embed\.out|head\.fc[12]|blocks\.\d+\.mlp\.[02])\.weight$")


def _state_dict_of(obj: Any, source: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(
            f"{source}: expected a release checkpoint {{'model': state_dict}} or a state dict"
        )
    return {k.removeprefix("module."): v for k, v in obj.items()}  # DDP-saved files


def infer_release_config(
    state: dict[str, torch.Tensor], source: str = "state dict"
) -> tuple[dict, list[str]]:
    """Release constructor keywords read off a release state dict, and the ones it cannot tell."""
    for key in ("pos_embed", "patch_embed.proj.0.weight", "time_agg_layer.w", "out_layer.4.weight"):
        if key not in state:
            raise ValueError(f"{source} is not a DPOT release state dict: no '{key}'")
    pos, proj = state["pos_embed"], state["patch_embed.proj.0.weight"]
    n_spatial = pos.dim() - 2
    p = proj.shape[-1]
    depth = len({int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))})
    kw = {
        "img_size": tuple(s * p for s in pos.shape[2:]),
        "patch_size": p,
        "in_channels": proj.shape[1] - n_spatial - 1,
        "in_timesteps": state["time_agg_layer.w"].shape[0],
        "embed_dim": pos.shape[1],
        "depth": depth,
        "out_layer_dim": state["out_layer.0.weight"].shape[1],
        "n_cls": state["cls_head.4.weight"].shape[0] if "cls_head.4.weight" in state else 0,
        "normalize": "scale_feats_mu.weight" in state,
        "time_agg": "exp_mlp" if "time_agg_layer.gamma" in state else "mlp",
    }
    if depth:
        kw["n_blocks"] = state["blocks.0.filter.w1"].shape[1]
        kw["mlp_ratio"] = state["blocks.0.mlp.0.weight"].shape[0] / kw["embed_dim"]
    if len(set(kw["img_size"])) == 1:
        kw["img_size"] = kw["img_size"][0]
    unknown = list(NOT_IN_WEIGHTS) + (["temporal_modes"] if n_spatial == 3 else [])
    out_width = state["out_layer.4.weight"].shape[0]
    c = kw["in_channels"]
    if out_width % c == 0:  # release convention out_channels = in_channels; split is a guess
        kw["out_channels"], kw["out_timesteps"] = c, out_width // c
        if not kw["normalize"] and out_width != c:
            unknown.append("out_channels/out_timesteps split")
    else:
        unknown.append("out_channels/out_timesteps split")
    kw["_out_width"] = out_width
    return kw, unknown


def release_to_config(kw: dict, n_spatial: int) -> DPOTConfig:
    """Release constructor keywords -> our config with the release's mode rule."""
    return DPOTConfig(
        img_size=kw["img_size"],
        patch_size=kw["patch_size"],
        in_channels=kw["in_channels"],
        out_channels=kw["out_channels"],
        in_timesteps=kw["in_timesteps"],
        out_timesteps=kw["out_timesteps"],
        embed_dim=kw["embed_dim"],
        depth=kw["depth"],
        n_blocks=kw["n_blocks"],
        mlp_ratio=kw["mlp_ratio"],
        modes=kw["modes"],
        modes_z=kw.get("temporal_modes", 8),
        out_layer_dim=kw["out_layer_dim"],
        n_cls=kw["n_cls"],
        normalize=kw["normalize"],
        act=kw["act"],
        time_agg=kw["time_agg"],
        mode_rule="release",
        embed_hidden=kw.get("embed_hidden"),
        n_spatial=n_spatial,
    )


def convert_release_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename release keys to ours and lay tensors out channels-last."""
    out = {}
    for key, value in state.items():
        new = key
        for pattern, repl in _RENAMES:
            new = re.sub(pattern, repl, new)
        if new == "pos_embed":
            value = value.movedim(1, -1).contiguous()  # (1, D, *S/p) -> (1, *S/p, D)
        elif _POINTWISE.match(new):
            value = value.flatten(1)  # 1×1 conv (o, i, 1, 1[, 1]) -> linear (o, i)
        out[new] = value
    return out


def load_official(path_or_state_dict: str | os.PathLike | dict, **release_kwargs: Any) -> DPOT:
    """A release checkpoint (file or dict) -> our 2D or 3D model with identical outputs.

    ``release_kwargs`` are the release constructor's keywords; sizes given there must agree with the
    weights. Keywords the weights cannot show and that are not given fall back to the release's
    defaults, with a warning that names them.
    """
    if isinstance(path_or_state_dict, (str, os.PathLike)):
        source = str(path_or_state_dict)
        obj = safe_load(path_or_state_dict)
    else:
        source, obj = "state dict", path_or_state_dict
    unknown_kw = sorted(set(release_kwargs) - RELEASE_KWARGS)
    if unknown_kw:
        raise ValueError(
            f"unknown release keywords {unknown_kw}; accepted: {sorted(RELEASE_KWARGS)}"
        )
    if release_kwargs.get("mixing_type", "afno") != "afno":
        raise ValueError(
            "only mixing_type='afno' exists in released DPOT weights, "
            f"got {release_kwargs['mixing_type']!r}"
        )
    state = _state_dict_of(obj, source)
    inferred, not_inferred = infer_release_config(state, source)
    out_width = inferred.pop("_out_width")
    n_spatial = state["pos_embed"].dim() - 2

    conflicts = []
    for key, value in release_kwargs.items():
        if key in inferred and key not in ("out_channels", "out_timesteps"):
            same = (
                _norm_size(value, n_spatial) == _norm_size(inferred[key], n_spatial)
                if key == "img_size"
                else value == inferred[key]
            )
            if not same:
                conflicts.append(f"{key}: given {value!r}, weights say {inferred[key]!r}")
    if conflicts:
        raise ValueError(
            f"release keywords disagree with the weights in {source}: " + "; ".join(conflicts)
        )

    kw = {
        **NOT_IN_WEIGHTS,
        **inferred,
        **{k: v for k, v in release_kwargs.items() if k != "mixing_type"},
    }
    if "out_channels" in release_kwargs and "out_timesteps" not in release_kwargs:
        kw["out_timesteps"] = out_width // kw["out_channels"]
    if "out_timesteps" in release_kwargs and "out_channels" not in release_kwargs:
        kw["out_channels"] = out_width // kw["out_timesteps"]
    if kw.get("out_channels", 0) * kw.get("out_timesteps", 0) != out_width:
        raise ValueError(
            f"{source}: output layer has {out_width} channels, which is not "
            f"out_channels × out_timesteps = {kw.get('out_channels')} × {kw.get('out_timesteps')}; "
            "pass out_channels and out_timesteps"
        )
    split_given = bool({"out_channels", "out_timesteps"} & set(release_kwargs))
    guessed = [
        k
        for k in not_inferred
        if k not in release_kwargs and not (k.startswith("out_channels") and split_given)
    ]
    if guessed:
        used = {k: kw.get(k, 8 if k == "temporal_modes" else None) for k in guessed}
        warnings.warn(
            f"load_official({source}): could not infer {guessed} from the weights; using {used}. "
            "Pass them as keywords if the model was trained otherwise.",
            stacklevel=2,
        )
    kw["embed_hidden"] = state["patch_embed.proj.0.weight"].shape[0]
    model = build_model(release_to_config(kw, n_spatial))
    load_state_strict(model, convert_release_state(state), source)
    return model


def _norm_size(size, n: int) -> tuple:
    return (size,) * n if isinstance(size, int) else tuple(size)
