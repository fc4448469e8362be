"""``dl.generate``: write a native HDF5 trajectory set made by a built-in solver, and
``generate_cached``: the same, made once per spec in a cache folder and reused afterwards.

    dl.generate("ns2d", "ns2d.h5", n_samples=64, nu=1e-4, n_frames=30)
    dl.data.generation.generate_cached({"generate": "ns2d", "n_samples": 64, "nu": 1e-3})

Sample i always comes from ``np.random.SeedSequence(seed).spawn(n_samples)[i]``, so a file
depends on the seed and the parameters, not on the batch size.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib
import inspect
import json
import logging
import os
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from tqdm.auto import tqdm

log = logging.getLogger(__name__)

CACHE_ENV = "DPOT_LAB_CACHE"
CACHE_VERSION = 6  # bump when a generator's output for the same spec changes
_POSITIONAL = ("n_samples", "resolution", "seed_seqs")


@dataclass(frozen=True)
class Generator:
    """A registered generator: ``target`` = "module:function" with the signature
    ``f(n_samples, resolution, seed_seqs, **params) -> xr.Dataset``, imported on first use."""

    name: str
    target: str
    resolution: int
    batch_size: int
    description: str
    defaults: str | None = None  # a ``**params`` generator: its module's dict of defaults

    def load(self) -> Callable[..., xr.Dataset]:
        module, function = self.target.split(":")
        return getattr(importlib.import_module(module), function)

    def parameters(self) -> dict[str, Any]:
        """The generator's parameters and their defaults."""
        signature = inspect.signature(self.load()).parameters.values()
        params = {p.name: p.default for p in signature if p.kind is inspect.Parameter.KEYWORD_ONLY}
        if self.defaults:
            module = importlib.import_module(self.target.split(":")[0])
            params |= getattr(module, self.defaults)
        return params


# The built-in generators, by name, in the order ``dpot-lab generate --help`` lists them.
_ENTRIES = [
    Generator(
        "ns2d",
        "dpot_lab.data.generators:make_ns2d",
        64,
        16,
        "2D incompressible Navier–Stokes, vorticity (FNO set-up)",
    ),
    Generator(
        "kolmogorov",
        "dpot_lab.data.generators:make_kolmogorov",
        64,
        16,
        "2D Kolmogorov flow, vorticity, Reynolds number per trajectory (sample variable re)",
    ),
    Generator(
        "passive_scalar",
        "dpot_lab.data.generators:make_passive_scalar",
        64,
        16,
        "2D passive scalar in NS flow, scalar and vorticity, nu and kappa per trajectory",
    ),
    Generator(
        "diffusion_reaction",
        "dpot_lab.data.generators:make_diffusion_reaction",
        64,
        16,
        "2D FitzHugh–Nagumo diffusion–reaction, u and v (PDEBench set-up)",
    ),
    Generator(
        "ns3d",
        "dpot_lab.data.generators:make_ns3d",
        32,
        4,
        "3D incompressible Navier–Stokes, decaying turbulence, velocity u, v, w",
    ),
    Generator(
        "shallow_water",
        "dpot_lab.data.generators_fv:make_shallow_water",
        64,
        16,
        "2D shallow water, radial dam break, h (PDEBench set-up)",
        defaults="SWE_DEFAULTS",
    ),
    Generator(
        "cns2d",
        "dpot_lab.data.generators_fv:make_cns2d",
        64,
        8,
        "2D compressible Navier–Stokes, vx, vy, density, pressure (PDEBench set-up)",
        defaults="CNS_DEFAULTS",
    ),
    Generator(
        "burgers2d",
        "dpot_lab.data.generators_model_pdes:make_burgers2d",
        64,
        8,
        "2D viscous Burgers, velocity u, v, viscosity nu per trajectory",
    ),
    Generator(
        "wave",
        "dpot_lab.data.generators_model_pdes:make_wave",
        64,
        8,
        "2D wave equation in a random medium, u and u_t, speed c(x) per trajectory",
    ),
    Generator(
        "kuramoto_sivashinsky",
        "dpot_lab.data.generators_model_pdes:make_ks2d",
        64,
        8,
        "2D Kuramoto–Sivashinsky, chaotic u on a square of side 16π",
    ),
    Generator(
        "swift_hohenberg",
        "dpot_lab.data.generators_patterns:make_swift_hohenberg",
        64,
        8,
        "2D Swift–Hohenberg, stripes and spots 8 cells wide at 64², r and g per trajectory",
    ),
    Generator(
        "gray_scott",
        "dpot_lab.data.generators_patterns:make_gray_scott",
        64,
        8,
        "2D Gray–Scott, spots and stripes 3–5 cells wide at 64², u and v, F and k per trajectory",
    ),
]
_ALIASES = {
    "dr": "diffusion_reaction",
    "swe": "shallow_water",
    "ks2d": "kuramoto_sivashinsky",
    "sh2d": "swift_hohenberg",
    "gs2d": "gray_scott",
}

GENERATORS: dict[str, Generator] = {g.name: g for g in _ENTRIES}
GENERATORS |= {alias: GENERATORS[name] for alias, name in _ALIASES.items()}


def describe_generators() -> str:
    """Every generator (aliases beside its name) with its description, default resolution and
    parameters with their defaults, as ``dpot-lab generate --help`` lists them."""
    aliases: dict[str, list[str]] = {}
    for name, entry in GENERATORS.items():
        if name != entry.name:
            aliases.setdefault(entry.name, []).append(name)
    lines = ["generators (--param KEY=VALUE sets a parameter):"]
    for name, entry in GENERATORS.items():
        if name != entry.name:
            continue
        also = f" (also {', '.join(aliases[name])})" if name in aliases else ""
        lines.append(f"  {name}{also}: {entry.description}; resolution {entry.resolution}")
        params = ", ".join(f"{k}={v!r}" for k, v in entry.parameters().items())
        lines += textwrap.wrap(params or "no parameters", 100, initial_indent=" " * 6,
                               subsequent_indent=" " * 6, break_on_hyphens=False)  # fmt: skip
    return "\n".join(lines)


def generate(
    pde: str,
    path: str | os.PathLike,
    n_samples: int,
    resolution: int | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
    **params: Any,
) -> Path:
    """Solve ``n_samples`` trajectories of ``pde`` (a name in ``GENERATORS``) and write them to
    ``path`` in the native HDF5 format; returns the path. An existing ``path`` is refused
    (FileExistsError) unless ``overwrite=True``.

    resolution: grid points per axis (None: the generator's default, 64 in 2D, 32 in 3D).
    batch_size: trajectories solved together, and all that is held in memory: each batch is
    written to the file before the next is solved (None: the generator's default on the CPU, all
    of them on another ``device``); it changes speed and memory, never the values.
    params: the generator's parameters (``nu=1e-4``, ``n_frames=30``, ``device="cuda"``, …);
    see ``dpot_lab.data.generators``.
    """
    if not overwrite and Path(path).exists():
        raise FileExistsError(
            f"{path} exists: pass overwrite=True (CLI: --overwrite) to replace it"
        )
    entry = _entry(pde, str(path))
    fn = entry.load()
    _check_params(entry, fn, params, str(path))
    if not (isinstance(n_samples, int | np.integer) and n_samples >= 1):
        raise ValueError(f"{path}: n_samples: expected an integer >= 1, got {n_samples!r}")
    resolution = entry.resolution if resolution is None else resolution
    if batch_size is None:  # a GPU takes all trajectories at once
        on_cpu = str(params.get("device", "cpu")) == "cpu"
        batch_size = entry.batch_size if on_cpu else int(n_samples)
    if not (isinstance(batch_size, int | np.integer) and batch_size >= 1):
        raise ValueError(f"{path}: batch_size: expected an integer >= 1, got {batch_size!r}")

    seed_seqs = np.random.SeedSequence(seed).spawn(n_samples)

    def batches() -> Iterator[xr.Dataset]:
        with tqdm(
            total=n_samples, desc=f"generate {entry.name}", unit="traj", disable=not progress
        ) as bar:
            for start in range(0, n_samples, batch_size):
                chunk = seed_seqs[start : start + batch_size]
                part = fn(len(chunk), resolution, chunk, **params)
                part.attrs.update(seed=int(seed), generator=entry.name)
                bar.update(len(chunk))
                yield part

    from dpot_lab.data.native import save_parts

    return save_parts(batches(), path, n_samples)  # one batch in memory at a time


def generate_cached(spec: dict[str, Any], cache_dir: str | os.PathLike | None = None) -> Path:
    """Path of the file that ``spec`` describes, generated on first use.

    spec: {"generate": name, "n_samples": n, "resolution": r, "seed": s, **params}, e.g.
    ``{"generate": "ns2d", "n_samples": 64, "resolution": 64, "nu": 1e-3, "seed": 0}``
    ("batch_size" and "progress" may be given; they do not change the file). The file lives in
    ``cache_dir``, else ``$DPOT_LAB_CACHE``, else ``~/.cache/dpot-lab/data``, named by a hash
    of the spec; it is written atomically, so a crash never leaves a half-written file.

    Processes that ask for the same file at once (notebooks, torchrun ranks on nodes that share
    the folder; its file system must support ``flock``, as local ones and NFS do) take turns on
    an advisory lock on ``<file>.lock`` beside it: one generates, the others wait, then use its
    file. The lock file stays behind, empty and harmless: removing it would let a newcomer lock
    a fresh one while a waiting process still holds the removed one.
    """
    spec = dict(spec)
    for key in ("generate", "n_samples"):
        if key not in spec:
            raise ValueError(f"generate_cached spec: missing key '{key}' (spec: {spec})")
    entry = _entry(spec.pop("generate"), "generate_cached spec")
    n_samples = spec.pop("n_samples")
    resolution = spec.pop("resolution", None) or entry.resolution
    seed = spec.pop("seed", 0)
    run = {k: spec.pop(k) for k in ("batch_size", "progress") if k in spec}
    _check_params(entry, entry.load(), spec, "generate_cached spec")
    key = {
        "generate": entry.name,
        "n_samples": n_samples,
        "resolution": resolution,
        "seed": seed,
        "params": spec,
        "version": CACHE_VERSION,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=repr).encode()).hexdigest()
    folder = Path(cache_dir or os.environ.get(CACHE_ENV) or Path.home() / ".cache/dpot-lab/data")
    path = folder / f"{entry.name}-n{n_samples}-r{resolution}-s{seed}-{digest[:16]}.h5"
    if path.exists():
        log.info("using cached %s", path)
        return path
    folder.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:  # released on close or exit
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process to generate %s", path)
            fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():  # the other process made it while we waited
            log.info("using cached %s", path)
            return path
        log.info("generating %s", path)
        return generate(entry.name, path, n_samples, resolution, seed, **run, **spec)


def _entry(pde: str, where: str) -> Generator:
    if pde not in GENERATORS:
        raise ValueError(
            f"{where}: pde: unknown generator {pde!r}; expected one of {sorted(GENERATORS)}"
        )
    return GENERATORS[pde]


def _check_params(
    entry: Generator, fn: Callable[..., Any], params: dict[str, Any], where: str
) -> None:
    """ValueError naming the accepted parameters if ``params`` holds one ``fn`` does not take."""
    signature = inspect.signature(fn).parameters
    for key, value in params.items():  # a number where the default is one (e.g. nu=abc)
        default = signature[key].default if key in signature else None
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if isinstance(default, int | float) and not isinstance(default, bool) and not number:
            raise ValueError(
                f"{where}: generate({entry.name!r}): parameter {key}={value!r}: expected a number "
                f"(default {default!r})"
            )
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.values()):
        return  # the generator checks its own parameters
    accepted = [name for name in signature if name not in _POSITIONAL]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(
            f"{where}: generate({entry.name!r}): unknown parameter(s) {', '.join(unknown)}; "
            f"accepted: {', '.join(accepted)}"
        )
