"""The DPOT release's weight format: its tensor names and layouts -> ours, and the release
constructor keywords read off the weights.

The release's model is ours with other names, positional embeddings channels-first and 1×1
convolutions where we have ``nn.Linear``; ``convert_release_state`` maps one onto the other, and
``infer_release_config`` reads the sizes from either naming (they are the same tensors).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from dpot_lab.models.dpot import DPOTConfig

# Names only the release uses: a state dict holding one of them is the release's.
RELEASE_MARKERS = ("time_agg_layer.", "out_layer.", "patch_embed.proj.0.")
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
# tensors the sizes are read from: our name -> the release's
_SIZED = {
    "pos_embed": "pos_embed",
    "patch_embed.proj.weight": "patch_embed.proj.0.weight",
    "time_agg.w": "time_agg_layer.w",
    "head.deconv.weight": "out_layer.0.weight",
    "head.fc2.weight": "out_layer.4.weight",
}


def is_release_state(state: Mapping[str, torch.Tensor]) -> bool:
    """Whether a state dict uses the release's names."""
    return any(k.startswith(RELEASE_MARKERS) for k in state)


def convert_release_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
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


def infer_release_config(
    state: Mapping[str, torch.Tensor], source: str = "state dict"
) -> tuple[dict, list[str]]:
    """Release constructor keywords read off a state dict (the release's names or ours), and the
    ones the weights cannot tell. ``kw["_out_width"]`` is the output layer's width
    (``out_channels × out_timesteps``)."""
    release = is_release_state(state)
    for ours, theirs in _SIZED.items():
        if (theirs if release else ours) not in state:
            kind = "DPOT release" if release else "DPOT"
            raise ValueError(
                f"{source} is not a {kind} state dict: no '{theirs if release else ours}'"
            )
    state = convert_release_state(state) if release else state
    pos, proj = state["pos_embed"], state["patch_embed.proj.weight"]  # (1, *S/p, D), (h, c, *p)
    n_spatial = pos.dim() - 2
    p = proj.shape[-1]
    depth = len({int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))})
    kw = {
        "img_size": tuple(s * p for s in pos.shape[1:-1]),
        "patch_size": p,
        "in_channels": proj.shape[1] - n_spatial - 1,
        "in_timesteps": state["time_agg.w"].shape[0],
        "embed_dim": pos.shape[-1],
        "depth": depth,
        "out_layer_dim": state["head.deconv.weight"].shape[1],
        "n_cls": state["cls_head.4.weight"].shape[0] if "cls_head.4.weight" in state else 0,
        "normalize": "scale_feats_mu.weight" in state,
        "time_agg": "exp_mlp" if "time_agg.gamma" in state else "mlp",
    }
    if depth:
        kw["n_blocks"] = state["blocks.0.filter.w1"].shape[1]
        kw["mlp_ratio"] = state["blocks.0.mlp.0.weight"].shape[0] / kw["embed_dim"]
    if len(set(kw["img_size"])) == 1:
        kw["img_size"] = kw["img_size"][0]
    unknown = list(NOT_IN_WEIGHTS) + (["temporal_modes"] if n_spatial == 3 else [])
    out_width = state["head.fc2.weight"].shape[0]
    c = kw["in_channels"]
    if out_width % c == 0:  # release convention out_channels = in_channels; split is a guess
        kw["out_channels"], kw["out_timesteps"] = c, out_width // c
        if not kw["normalize"] and out_width != c:
            unknown.append("out_channels/out_timesteps split")
    else:
        unknown.append("out_channels/out_timesteps split")
    kw["_out_width"] = out_width
    kw["embed_hidden"] = proj.shape[0]
    return kw, unknown


def release_to_config(kw: dict, n_spatial: int) -> DPOTConfig:
    """Release constructor keywords -> our config with the release's mode rule; what is not in
    ``kw`` takes the release's defaults (``NOT_IN_WEIGHTS``, ``temporal_modes`` 8)."""
    kw = {**NOT_IN_WEIGHTS, **kw}
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


__all__ = [
    "NOT_IN_WEIGHTS", "RELEASE_MARKERS", "convert_release_state", "infer_release_config",
    "is_release_state", "release_to_config",
]  # fmt: skip
