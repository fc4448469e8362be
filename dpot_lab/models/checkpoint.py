"""Checkpoints: ours (config + weights + metadata, written atomically), loaded without running
code, and the one opener that tells ours from the DPOT release's.

Our torch file is a plain dict ``{"format": "dpot-lab", "version": 1, "config": {...}, "model":
state_dict, "metadata": {...}, **extra}``; ``extra`` holds what a trainer adds (optimizer,
scheduler, RNG states). Our safetensors file holds the weights, and in its string -> string
metadata ``format``, ``version``, ``config`` (JSON) and ``metadata`` (JSON); no ``extra``.
Either file type may also hold a bare state dict (ours or the release's). ``open_checkpoint``
reads any checkpoint once and returns its architecture and its weights in our names and layouts.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, NamedTuple

import safetensors
import safetensors.torch
import torch
from torch import nn

from dpot_lab.atomic import atomic_path
from dpot_lab.models.dpot import DPOT, DPOTConfig, build_model
from dpot_lab.models.hub import RELEASE_SIZES, resolve_checkpoint
from dpot_lab.models.release import (
    convert_release_state,
    infer_release_config,
    is_release_state,
    release_to_config,
)
from dpot_lab.models.util import unwrap

FORMAT, VERSION = "dpot-lab", 1
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DDP and torch.compile
_EXPECTED = (
    "expected a dpot-lab checkpoint, a DPOT release checkpoint {'model': state_dict} or a state "
    "dict (name -> tensor)"
)


def safe_load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """A checkpoint file read without running code: a safetensors file (``_load_safetensors``)
    or ``torch.load`` with ``weights_only=True``; clear errors for missing, corrupt or unsafe
    files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {path} does not exist (a released DPOT size is one of "
            f"{', '.join(RELEASE_SIZES)}; a hub file is hf://owner/repo/path/in/repo)"
        )
    if is_safetensors(path):
        return _load_safetensors(path, map_location)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:  # the weights-only unpickler refused something
        names = _unsafe_globals(path)
        if names:
            raise ValueError(
                f"refusing to load {path}: the file is readable but holds the Python "
                f"object{'s' if len(names) > 1 else ''} {', '.join(names)}, and loading it would "
                "run code; a checkpoint may hold only tensors and plain containers (dicts, lists, "
                "numbers, strings)"
            ) from None
        # torch's own text advises loading unsafely, wrong for bad bytes: name what it replaced
        reason = err.__context__ or err
    except Exception as err:  # the unpickler raises many kinds on bytes that are no checkpoint
        reason = err
    detail = next((ln.strip() for ln in str(reason).splitlines() if ln.strip()), "")
    raise ValueError(
        f"checkpoint {path} is corrupt, truncated or not a PyTorch file "
        f"({type(reason).__name__}: {detail})"
    )


def _unsafe_globals(path: Path) -> list[str]:
    """The classes and functions a torch file's pickle names that weights-only loading refuses
    (``module.name``); none when the file cannot be read that far."""
    try:
        return torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # the same bytes that failed to load: corrupt or not a torch file
        return []


def is_safetensors(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a safetensors file: by its suffix, or by its first bytes (an
    8-byte header length, then the JSON header's ``{``; torch files start with ``PK`` or a
    pickle opcode)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return True
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def _load_safetensors(path: Path, map_location: str | torch.device) -> dict:
    """A safetensors file as ``torch.load`` would give our checkpoint (``format``, ``version``,
    ``config``, ``model``, ``metadata``) when its metadata says it is ours, else its state dict."""
    try:
        with safetensors.safe_open(path, framework="pt", device=str(map_location)) as f:
            header = f.metadata() or {}
            state = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as err:  # SafetensorError (a bad header), OSError, out-of-range offsets
        detail = next((ln.strip() for ln in str(err).splitlines() if ln.strip()), "")
        raise ValueError(
            f"checkpoint {path} is corrupt, truncated or not a safetensors file "
            f"({type(err).__name__}: {detail})"
        ) from None
    if header.get("format") != FORMAT:
        return state
    obj = {"format": FORMAT, "model": state}
    for key, default in (("version", str(VERSION)), ("config", None), ("metadata", "{}")):
        text = header.get(key, default)
        if text is None:
            raise ValueError(f"checkpoint {path} has no '{key}' entry in its safetensors metadata")
        try:
            obj[key] = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(
                f"checkpoint {path}: safetensors metadata '{key}' is not JSON ({err})"
            ) from None
    return obj


def _save_safetensors(
    path: str | os.PathLike, state: dict[str, torch.Tensor], config: dict, metadata: dict
) -> Path:
    """Write weights with ``config`` and ``metadata`` as JSON strings in the safetensors metadata,
    atomically."""
    try:
        meta_json = json.dumps(metadata)
    except TypeError as err:
        raise ValueError(
            f"refusing to write {path}: metadata is not JSON-serialisable ({err})"
        ) from None
    header = {
        "format": FORMAT,
        "version": str(VERSION),
        "config": json.dumps(config),
        "metadata": meta_json,
    }
    tensors = {k: v.contiguous() for k, v in state.items()}
    with atomic_path(path) as tmp:
        try:
            safetensors.torch.save_file(tensors, tmp, metadata=header)
        except Exception as err:  # SafetensorError names the OS error only in its text
            code = re.search(r"os error (\d+)", str(err))
            if code is None:
                raise
            raise OSError(int(code.group(1)), str(err)) from err
    return Path(path)


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
        first = (
            f"tensor {shapes[0]}" if shapes
            else f"tensor {missing[0]} is missing" if missing
            else f"tensor {unexpected[0]} is not in the model"
        )  # fmt: skip
        counts = (
            f"{len(shapes)} shape mismatch(es), {len(missing)} missing, "
            f"{len(unexpected)} unexpected"
        )
        lines = [
            f"state dict from {source} does not match {type(model).__name__}: {first} ({counts})"
        ]
        if missing:
            lines.append(f"  missing keys ({len(missing)}): {missing}")
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}): {unexpected}")
            if any(".parametrizations." in k for k in unexpected):
                lines.append(
                    "  (LoRA adapters: `dpot-lab export` merges them into a plain checkpoint)"
                )
        if shapes:
            lines.append(f"  shape mismatches ({len(shapes)}): " + "; ".join(shapes))
        raise ValueError("\n".join(lines))
    model.load_state_dict(state, strict=True)


def save_checkpoint(
    path: str | os.PathLike,
    model: DPOT,
    metadata: dict | None = None,
    state: dict[str, torch.Tensor] | None = None,
    file_format: Literal["torch", "safetensors"] | None = None,
    **extra: Any,
) -> Path:
    """Save ``model`` (config, weights) plus ``metadata`` and any ``extra`` entries, atomically.

    ``state``: the weights to write instead of ``model.state_dict()`` (e.g. gathered from FSDP
    shards). ``file_format``: ``"torch"`` or ``"safetensors"`` (weights, config and metadata
    only: no ``extra``); by default safetensors when ``path`` ends in ``.safetensors``. Refuses
    to write non-finite weights, so a diverged run never replaces a good one.
    """
    if file_format is None:
        file_format = "safetensors" if Path(path).suffix == ".safetensors" else "torch"
    if file_format not in ("torch", "safetensors"):
        raise ValueError(f"file_format: expected 'torch' or 'safetensors', got {file_format!r}")
    if file_format == "safetensors" and extra:
        raise ValueError(
            f"refusing to write {path}: a safetensors checkpoint holds weights, config and "
            f"metadata only, not {sorted(extra)}; write a torch checkpoint to keep them"
        )
    model = unwrap(model)
    state = model.state_dict() if state is None else state
    state = {k: v.detach().cpu() for k, v in state.items()}
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ValueError(f"refusing to write {path}: non-finite weights in {bad[:5]}")
    if file_format == "safetensors":
        return _save_safetensors(path, state, model.config.to_dict(), dict(metadata or {}))
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": model.config.to_dict(),
        "model": state,
        "metadata": dict(metadata or {}),
        **extra,
    }
    return atomic_save(payload, path)


class Opened(NamedTuple):
    """A checkpoint as ``open_checkpoint`` read it.

    ``state``: the weights in our names and layouts (wrapper prefixes stripped, release tensors
    converted). ``kind``: ``"dpot-lab"`` (our file), ``"release"`` (the DPOT release's names) or
    ``"state"`` (a bare state dict in our names). ``config``: stored in our files; read off the
    weights otherwise, with the release's defaults for what weights do not show (modes, act);
    None for a bare state dict too partial to tell. ``extra``: the rest of our file (metadata,
    step, optimizer, ...); ``{"release_size": "Ti"}`` for a released size opened by its name
    (``dpot_lab.models.hub``); {} for the others.
    """

    config: DPOTConfig | None
    state: dict[str, torch.Tensor]
    kind: Literal["dpot-lab", "release", "state"]
    description: str
    extra: dict[str, Any]


def open_checkpoint(
    source: str | os.PathLike | Mapping, map_location: str | torch.device = "cpu"
) -> Opened:
    """Read a checkpoint once and tell what it is: a path to, or the loaded dict of, one of our
    checkpoints, a DPOT release checkpoint ``{'model': state_dict}`` or a state dict (ours or the
    release's, DDP ``module.`` prefixes allowed). A path may name a hub file instead
    (``hf://owner/repo/path`` or a released size ``"Ti"``…``"H"``, see ``dpot_lab.models.hub``).
    Raises ValueError naming the source."""
    if isinstance(source, (str, os.PathLike)):
        path, name = resolve_checkpoint(source)
        obj = safe_load(path, map_location)
    else:
        name, obj = "state dict", source
    if not isinstance(obj, Mapping):
        raise ValueError(f"{name}: {_EXPECTED}; got {type(obj).__name__}")
    if obj.get("format") == FORMAT:
        for key in ("config", "model"):
            if key not in obj:
                raise ValueError(f"checkpoint {name} has no '{key}' entry")
        try:
            config = DPOTConfig.from_dict(obj["config"])
        except (TypeError, ValueError) as err:
            raise ValueError(f"checkpoint {name}: config: {err}") from None
        extra = {k: v for k, v in obj.items() if k not in ("format", "version", "config", "model")}
        state = _tensors(obj["model"], name)
        return Opened(config, state, "dpot-lab", f"dpot-lab checkpoint {name}", extra)
    if isinstance(obj.get("model"), Mapping):
        obj = obj["model"]  # the release's {'model': state_dict}
    state = _tensors(obj, name)
    if is_release_state(state):
        c = _config_from_weights(state, name)  # raises when a sized tensor is missing
        desc = f"{name} (DPOT release, {c.n_spatial}D, C={c.in_channels}, T_in={c.in_timesteps})"
        named = isinstance(source, str) and source in RELEASE_SIZES
        extra = {"release_size": source} if named else {}
        return Opened(c, convert_release_state(state), "release", desc, extra)
    try:
        config = _config_from_weights(state, name)
        config.mode_rule = DPOTConfig.mode_rule  # our names: our default rule
        desc = f"{name} (dpot-lab names, config read off the weights)"
    except (LookupError, ValueError, ArithmeticError):  # partial: its weights still transfer
        config, desc = None, f"{name} (dpot-lab names, partial: no config)"
    return Opened(config, state, "state", desc, {})


def _config_from_weights(state: dict[str, torch.Tensor], name: str) -> DPOTConfig:
    """The architecture read off a state dict; an output width that is no multiple of the input
    channels is taken as ``out_channels`` with one output frame."""
    kw, _ = infer_release_config(state, name)
    width = kw.pop("_out_width")
    kw.setdefault("out_channels", width)
    kw.setdefault("out_timesteps", 1)
    return release_to_config(kw, state["pos_embed"].dim() - 2)


def _tensors(obj: Any, name: str) -> dict[str, torch.Tensor]:
    """A state dict with wrapper prefixes stripped, or a ValueError naming ``name``."""
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(f"{name}: {_EXPECTED}; got {type(obj).__name__} {obj!r:.60}")
    if not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{name}: {_EXPECTED}; got a dict with keys {sorted(obj)[:8]}")
    state = {}
    for key, value in obj.items():
        for prefix in _WRAPPER_PREFIXES:
            key = key.removeprefix(prefix)
        state[key] = value
    return state


def _open_ours(source: str | os.PathLike | Opened, map_location: str | torch.device) -> Opened:
    """``open_checkpoint`` for a file that must be one of ours."""
    opened = source if isinstance(source, Opened) else open_checkpoint(source, map_location)
    if opened.kind != "dpot-lab":
        raise ValueError(
            f"{_name(source)} is not a dpot-lab checkpoint: no 'format': '{FORMAT}' entry "
            "(a DPOT release file? use dl.load_official)"
        )
    return opened


def _name(source: Any) -> str:
    if isinstance(source, Opened):
        return source.description
    return str(source) if isinstance(source, (str, os.PathLike)) else "state dict"


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """The whole checkpoint dict, validated as ours."""
    config, state, _, _, extra = _open_ours(path, map_location)
    return {
        "format": FORMAT,
        "version": VERSION,
        "config": config.to_dict(),
        "model": state,
        **extra,
    }


def load_checkpoint(
    path: str | os.PathLike | Opened, map_location: str | torch.device = "cpu"
) -> DPOT:
    """Model from one of our checkpoints (a path, or a file ``open_checkpoint`` read);
    ``model.metadata`` holds the saved metadata."""
    config, state, _, _, extra = _open_ours(path, map_location)
    model = build_model(config)
    load_state_strict(model, state, _name(path))
    model.metadata = extra.get("metadata", {})
    return model
