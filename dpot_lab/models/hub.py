"""The DPOT release's weights on the Hugging Face hub: where each size's file lives, the release
constructor keywords it was trained with, and checkpoint names that point at hub files.

A checkpoint source is a local path, a hub file ``hf://owner/repo/path/in/repo``
(``hf://owner/repo@revision/...`` for another revision than ``main``), or a released size
``"Ti"``, ``"S"``, ``"M"``, ``"L"``, ``"H"``: the file ``model_<size>.pth`` of ``hzk17/DPOT``.
A size name always means the release; a local file of that name is written ``./Ti`` (or passed
as a ``pathlib.Path``).
Hub files come through ``huggingface_hub.hf_hub_download``, so its cache and settings apply
(``HF_HOME``, ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE``, ``HF_ENDPOINT``, ``HF_TOKEN``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

from dpot_lab.models.presets import PRESETS

RELEASE_REPO = "hzk17/DPOT"
RELEASE_SIZES = ("Ti", "S", "M", "L", "H")  # their sizes: PRESETS
HF_SCHEME = "hf://"
# What every released checkpoint shares besides its size: the release's pre-training script
# (train_temporal_parallel.py) builds DPOTNet with the padded channel count 4 in and out,
# T_bundle = 1 output frame, one class per pre-training set (12), normalize 0 (configs/
# pretrain_*.yaml), and the constructor's defaults act "gelu" and time_agg "exp_mlp".
RELEASE_COMMON: dict[str, Any] = dict(
    out_channels=4, out_timesteps=1, n_cls=12, normalize=False, act="gelu", time_agg="exp_mlp"
)


def published_kwargs(size: str) -> dict[str, Any]:
    """The release constructor keywords the released ``size`` (Ti, S, M, L, H) was trained with."""
    if size not in RELEASE_SIZES:
        raise ValueError(f"unknown DPOT release size {size!r}; released: {list(RELEASE_SIZES)}")
    return {**RELEASE_COMMON, **PRESETS[size]}


class HubFile(NamedTuple):
    """A file in a Hugging Face hub model repository; ``revision`` None is ``main``."""

    repo_id: str
    filename: str
    revision: str | None = None


def hub_file(source: str | os.PathLike) -> HubFile | None:
    """The hub file a checkpoint source names (a string ``hf://…`` or a released size), None for
    a local path (every ``os.PathLike`` is one); a malformed ``hf://`` name raises ValueError."""
    if not isinstance(source, str):
        return None
    text = source
    if text in RELEASE_SIZES:
        return HubFile(RELEASE_REPO, f"model_{text}.pth")
    if not text.startswith(HF_SCHEME):
        return None
    parts = text.removeprefix(HF_SCHEME).split("/", 2)
    repo, at, revision = parts[1].partition("@") if len(parts) == 3 else ("", "", "")
    if len(parts) != 3 or not (parts[0] and repo and parts[2]) or (at and not revision):
        raise ValueError(
            f"checkpoint {text}: expected hf://owner/repo/path/in/repo "
            "(hf://owner/repo@revision/path for a revision other than main)"
        )
    return HubFile(f"{parts[0]}/{repo}", parts[2], revision or None)


def resolve_checkpoint(source: str | os.PathLike) -> tuple[Path, str]:
    """The local file a checkpoint source names (a hub file downloaded into, or found in, the
    hub cache) and the name messages use for it."""
    text = os.fspath(source)
    where = hub_file(text)
    if where is None:
        return Path(source), text
    name = text if text.startswith(HF_SCHEME) else f"{text} (hf://{where.repo_id}/{where.filename})"
    return download(where, name), name


def download(where: HubFile, name: str) -> Path:
    """``where`` through ``hf_hub_download`` (the cached copy when there is one), or an error
    naming ``name`` and what to do."""
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import (
            EntryNotFoundError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )
    except ImportError:
        raise ImportError(
            f"checkpoint {name} is on the Hugging Face hub: install huggingface_hub "
            "(pip install huggingface_hub)"
        ) from None
    repo, file = where.repo_id, where.filename
    try:
        return Path(hf_hub_download(repo, file, revision=where.revision))
    except LocalEntryNotFoundError as err:  # offline, or the hub unreachable, and not cached
        why = err.__cause__ or err  # the library's reason: offline mode, or the failed request
        detail = next((ln.strip() for ln in str(why).splitlines() if ln.strip()), "")
        fetch = f"hf download {repo} {file}" + (
            f" --revision {where.revision}" if where.revision else ""
        )
        raise FileNotFoundError(
            f"checkpoint {name}: {file} of hub repository {repo} is not in the Hugging Face "
            f"cache, and the hub could not be asked ({detail}); pre-fill the cache "
            f"where the hub is reachable with `{fetch}` (the same HF_HOME or HF_HUB_CACHE), "
            "or download the file and pass its path"
        ) from None
    except RepositoryNotFoundError:
        raise ValueError(
            f"checkpoint {name}: hub repository {repo} does not exist (or is private: set HF_TOKEN)"
        ) from None
    except RevisionNotFoundError:
        raise ValueError(
            f"checkpoint {name}: hub repository {repo} has no revision {where.revision!r}"
        ) from None
    except EntryNotFoundError:
        raise ValueError(
            f"checkpoint {name}: hub repository {repo} has no file {file!r}"
            + (f" at revision {where.revision!r}" if where.revision else "")
        ) from None


__all__ = [
    "HF_SCHEME", "RELEASE_COMMON", "RELEASE_REPO", "RELEASE_SIZES", "HubFile", "download",
    "hub_file", "published_kwargs", "resolve_checkpoint",
]  # fmt: skip
