"""Load checkpoints of the DPOT release (``{'model': state_dict}``) into our model, same outputs.

Sizes are read off the state dict; only what the weights cannot tell (``modes``, ``temporal_modes``,
``act``, and the split of the output width into channels × timesteps when it is ambiguous) comes
from the release's constructor keywords or the release's defaults, with a warning naming each
default used. A released size (``"Ti"`` … ``"H"``) is fetched from the hub and built with the
keywords it was trained with (``dpot_lab.models.hub``), so nothing is guessed.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Any

from dpot_lab.models.checkpoint import Opened, load_state_strict, open_checkpoint
from dpot_lab.models.dpot import DPOT, build_model
from dpot_lab.models.hub import published_kwargs
from dpot_lab.models.release import (
    NOT_IN_WEIGHTS,
    convert_release_state,
    infer_release_config,
    release_to_config,
)
from dpot_lab.sizes import size_tuple

RELEASE_KWARGS = {
    "img_size", "patch_size", "mixing_type", "in_channels", "out_channels", "in_timesteps",
    "out_timesteps", "n_blocks", "embed_dim", "out_layer_dim", "depth", "modes", "temporal_modes",
    "mlp_ratio", "n_cls", "normalize", "act", "time_agg",
}  # fmt: skip


def load_official(
    path_or_state_dict: str | os.PathLike | Mapping | Opened, **release_kwargs: Any
) -> DPOT:
    """A release checkpoint (a file, its dict, or an ``Opened`` from ``open_checkpoint``) -> our
    2D or 3D model with identical outputs.

    A file may be a hub file: ``"hf://owner/repo/path"``, or a released size ``"Ti"``, ``"S"``,
    ``"M"``, ``"L"``, ``"H"`` (``model_<size>.pth`` of ``hzk17/DPOT``), which also supplies the
    keywords that size was trained with (so does ``open_checkpoint("Ti")``'s ``Opened``). Hub
    files go through the Hugging Face cache.

    ``release_kwargs`` are the release constructor's keywords (given ones override a released
    size's); sizes given there must agree with the weights. Keywords the weights cannot show and
    that are not given fall back to the release's defaults, with a warning that names them.
    """
    _check_keywords(release_kwargs)
    opened, source = _open_release(path_or_state_dict)
    if "release_size" in opened.extra:  # a released size opened by its name
        release_kwargs = {**published_kwargs(opened.extra["release_size"]), **release_kwargs}
    state = opened.state  # converted to our names and layouts
    inferred, not_inferred = infer_release_config(state, source)
    out_width = inferred.pop("_out_width")
    n_spatial = state["pos_embed"].dim() - 2
    _check_agreement(release_kwargs, inferred, n_spatial, source)
    kw = {
        **NOT_IN_WEIGHTS,
        **inferred,
        **{k: v for k, v in release_kwargs.items() if k != "mixing_type"},
    }
    _split_output(kw, release_kwargs, out_width, source)
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
    model = build_model(release_to_config(kw, n_spatial))
    load_state_strict(model, state, source)
    return model


def _check_keywords(release_kwargs: dict[str, Any]) -> None:
    """ValueError on a keyword the release's constructor does not take, or a mixing it never
    released."""
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


def _open_release(src: str | os.PathLike | Mapping | Opened) -> tuple[Opened, str]:
    """(the opened release checkpoint, its name for messages); ValueError when it is ours or no
    DPOT release state dict."""
    if isinstance(src, Opened):
        opened, source = src, src.description
    else:
        opened = open_checkpoint(src)
        source = str(src) if isinstance(src, (str, os.PathLike)) else "state dict"
    if opened.kind == "dpot-lab":
        raise ValueError(f"{source} is a dpot-lab checkpoint: load it with dl.load_checkpoint")
    if opened.kind != "release":
        raise ValueError(
            f"{source} is not a DPOT release state dict: its tensors have dpot-lab names "
            "(no 'time_agg_layer.*', 'out_layer.*'); load a model's own state with "
            "model.load_state_dict"
        )
    return opened, source


def _check_agreement(
    release_kwargs: dict[str, Any], inferred: dict[str, Any], n_spatial: int, source: str
) -> None:
    """ValueError listing every given size that the weights contradict (the output split
    aside: the weights show only its product)."""
    conflicts = []
    for key, value in release_kwargs.items():
        if key in inferred and key not in ("out_channels", "out_timesteps"):
            same = (
                size_tuple(value, n_spatial) == size_tuple(inferred[key], n_spatial)
                if key == "img_size"
                else value == inferred[key]
            )
            if not same:
                conflicts.append(f"{key}: given {value!r}, weights say {inferred[key]!r}")
    if conflicts:
        raise ValueError(
            f"release keywords disagree with the weights in {source}: " + "; ".join(conflicts)
        )


def _split_output(
    kw: dict[str, Any], release_kwargs: dict[str, Any], out_width: int, source: str
) -> None:
    """Fill in ``kw`` the half of out_channels × out_timesteps = ``out_width`` that was not
    given; ValueError when the two do not multiply to it."""
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


__all__ = [
    "NOT_IN_WEIGHTS", "RELEASE_KWARGS", "convert_release_state", "infer_release_config",
    "load_official", "release_to_config",
]  # fmt: skip
