"""Our checkpoint format: config + weights + metadata, written atomically, loaded without
running code.

A file is a plain dict ``{"format": "dpot-lab", "version": 1, "config": {...}, "model":
state_dict, "metadata": {...}, **extra}``; ``extra`` holds what a trainer adds (optimizer,
scheduler, RNG states).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dpot_lab.atomic import atomic_path
from dpot_lab.models.dpot import DPOT, DPOTConfig, build_model

FORMAT, VERSION = "dpot-lab", 1


def safe_load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load`` with ``weights_only=True``; clear errors for missing, corrupt or unsafe
    files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "GLOBAL " in str(err):  # the weights-only unpickler met a class or function
            name = str(err).split("GLOBAL ", 1)[1].split()[0]
            raise ValueError(
                f"refusing to load {path}: the file is readable but holds the Python object "
                f"{name}, and loading it would run code; a checkpoint may hold only tensors and "
                "plain containers (dicts, lists, numbers, strings)"
            ) from None
        reason = err
    except Exception as err:  # the unpickler raises many kinds on bytes that are no checkpoint
        reason = err
    text = str(reason)
    if "Unpickler error:" in text:  # after torch's advice to load unsafely, wrong for bad bytes
        text = text.split("Unpickler error:", 1)[1]
    detail = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    raise ValueError(
        f"checkpoint {path} is corrupt, truncated or not a PyTorch file "
        f"({type(reason).__name__}: {detail})"
    )


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """Write ``obj`` with ``torch.save`` to a temp file beside ``path``, then rename it over
    ``path``: a crash mid-write leaves the previous file intact."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)
    return Path(path)


def load_state_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load every tensor or raise, listing missing keys, unexpected keys and shape mismatches."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: expected {tuple(own[k].shape)}, got {tuple(state[k].shape)}"
        for k in sorted(set(own) & set(state))
        if own[k].shape != state[k].shape
    ]
    if missing or unexpected or shapes:
        lines = [f"state dict from {source} does not match {type(model).__name__}:"]
        if missing:
            lines.append(f"  missing keys ({len(missing)}): {missing}")
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}): {unexpected}")
        if shapes:
            lines.append(f"  shape mismatches ({len(shapes)}): " + "; ".join(shapes))
        raise ValueError("\n".join(lines))
    model.load_state_dict(state, strict=True)


def save_checkpoint(
    path: str | os.PathLike,
    model: DPOT,
    metadata: dict | None = None,
    state: dict[str, torch.Tensor] | None = None,
    **extra: Any,
) -> Path:
    """Save ``model`` (config, weights) plus ``metadata`` and any ``extra`` entries, atomically.

    ``state``: the weights to write instead of ``model.state_dict()`` (e.g. gathered from FSDP
    shards). Refuses to write non-finite weights, so a diverged run never replaces a good one.
    """
    model = getattr(model, "module", model)  # DDP / compiled wrappers
    model = getattr(model, "_orig_mod", model)
    state = model.state_dict() if state is None else state
    state = {k: v.detach().cpu() for k, v in state.items()}
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ValueError(f"refusing to write {path}: non-finite weights in {bad[:5]}")
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": model.config.to_dict(),
        "model": state,
        "metadata": dict(metadata or {}),
        **extra,
    }
    return atomic_save(payload, path)


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """The whole checkpoint dict, validated as ours."""
    ckpt = safe_load(path, map_location)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        hint = (
            " (a DPOT release file? use dl.load_official)"
            if isinstance(ckpt, dict) and "model" in ckpt
            else ""
        )
        raise ValueError(
            f"{path} is not a dpot-lab checkpoint: no 'format': '{FORMAT}' entry{hint}"
        )
    for key in ("config", "model"):
        if key not in ckpt:
            raise ValueError(f"checkpoint {path} has no '{key}' entry")
    return ckpt


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> DPOT:
    """Model from one of our checkpoints; ``model.metadata`` holds the saved metadata."""
    ckpt = read_checkpoint(path, map_location)
    model = build_model(DPOTConfig.from_dict(ckpt["config"]))
    load_state_strict(model, ckpt["model"], str(path))
    model.metadata = ckpt.get("metadata", {})
    return model
