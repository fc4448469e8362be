"""A run's data from its config, in one call: the training mixture (windows) and one test
mixture per source (whole trajectories), sources named as the logs and checkpoints name them.

    data = run_data(TrainConfig.from_yaml("configs/tiny_cpu.yaml"))
    data.train            # Mixture in window mode: t_in + t_ar·t_out frames per item
    data.test["ns2d"]     # Mixture in trajectory mode: the test split (or data.test_sources)

Generator specs are generated on first use and cached; under torchrun every rank generates, each
starting at its own place in the list, so that ranks make different files at once, and a file
another process is making is waited for on its lock (no barrier, no timeout). With
``data.test_sources`` given, every trajectory of ``data.sources`` trains.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, NamedTuple

from dpot_lab.data import schema
from dpot_lab.data.generation import generate_cached
from dpot_lab.data.mixture import Mixture
from dpot_lab.data.open import open_dataset
from dpot_lab.models.dpot import DPOTConfig
from dpot_lab.models.presets import PRESETS
from dpot_lab.sizes import grid_text
from dpot_lab.train import distributed
from dpot_lab.train.config import ConfigError, TrainConfig

log = logging.getLogger(__name__)


class RunData(NamedTuple):
    train: Mixture
    test: dict[str, Mixture]


def _is_glob(src: str) -> bool:
    return any(c in Path(src).name for c in "*?[")


def resolve_sources(
    sources: list[str | dict[str, Any]],
    cache_dir: str | None = None,
    where: str = "data",
    is_main: bool = True,
) -> dict[str, Any]:
    """Config sources -> {name: path}: generator specs generated (by every process, from the
    spec of its rank on; progress bars on the main one) and cached, paths checked. Names: the
    generator, the file's stem, or a per-sample glob's folder; a repeated name gets a suffix
    (``ns2d``, ``ns2d_2``)."""
    specs = [s for s in sources if isinstance(s, dict)]
    first = distributed.process_rank() % max(len(specs), 1)
    for spec in specs[first:] + specs[:first]:
        generate_cached(dict(spec) if is_main else {**spec, "progress": False}, cache_dir)
    named: dict[str, Any] = {}
    for src in sources:
        if isinstance(src, dict):
            name, path = str(src["generate"]), generate_cached(dict(src), cache_dir=cache_dir)
        else:
            if not _is_glob(src) and not Path(src).exists():
                raise FileNotFoundError(f"{where}: source {src} does not exist")
            name, path = (Path(src).parent.name if _is_glob(src) else Path(src).stem), src
        base, k = name, 2
        while name in named:
            name, k = f"{base}_{k}", k + 1
        named[name] = path
    return named


def with_data_sizes(
    config: TrainConfig,
    arch: DPOTConfig | None = None,
    is_main: bool = True,
    given: Any = None,
) -> TrainConfig:
    """``config`` with a null ``data.resolution`` or ``data.channels`` filled from its sources
    (``given``: a training Mixture passed instead of them, whose sizes come first).

    resolution: the grid the sources share (the largest per axis where they differ), so a
    checkpoint of another grid fine-tunes at the data's own grid (its positional embedding
    interpolated). channels: the model's own (``arch``, the ``init_from`` architecture, else the
    preset's), or the most fields of any source where that is more. Logs what it chose and how
    it differs from ``arch``."""
    if given is not None and not config.sizes_known:
        sizes = {"data.resolution": getattr(given, "resolution", None),
                 "data.channels": getattr(given, "channels", None)}  # fmt: skip
        unset = {k: v for k, v in sizes.items()
                 if v is not None and getattr(config.data, k.split(".")[1]) is None}  # fmt: skip
        config = config.replace(**unset) if unset else config
    d = config.data
    if config.sizes_known:
        return config
    where = f"{config._source}: data"
    named = resolve_sources([*d.sources, *(d.test_sources or [])], d.cache_dir, where, is_main)
    if not named:
        raise ConfigError(f"{config._source}: data.sources: expected at least one path or spec")
    grids, n_fields = {}, {}
    for name, path in named.items():
        with open_dataset(path) as ds:
            grids[name] = tuple(ds.sizes[dim] for dim in schema.spatial_dims(ds))
            n_fields[name] = len(schema.field_names(ds))
    if len({len(g) for g in grids.values()}) > 1:
        raise ConfigError(f"{where}: sources mix 2D and 3D grids: {grids}")
    changes: dict[str, Any] = {}
    if d.resolution is None:
        grid = tuple(max(axis) for axis in zip(*grids.values(), strict=True))
        changes["data.resolution"] = list(grid)
        if len(set(grids.values())) > 1:
            log.info("sources on grids %s: the model grid is %s", grids, grid_text(grid))
        if arch is not None and tuple(arch.img_size) != grid:
            log.info(
                "the data's grid %s differs from the checkpoint's %s: training at the data's "
                "grid, the positional embedding interpolated", grid_text(grid),
                grid_text(arch.img_size),
            )  # fmt: skip
    if d.channels is None:
        preset = PRESETS.get(config.model.preset or "", {})
        own = arch.in_channels if arch is not None else preset.get("in_channels", 4)
        changes["data.channels"] = max(own, *n_fields.values())
        if changes["data.channels"] > own:
            log.info(
                "a source has %d fields, the model %d channels: widened to %d (a new patch "
                "embedding and output head)", max(n_fields.values()), own, changes["data.channels"],
            )  # fmt: skip
    return config.replace(**changes)


def run_data(config: TrainConfig, is_main: bool = True) -> RunData:
    """The training mixture and the test mixtures that ``config`` describes (every rank of a
    torchrun call calls this; ``is_main``: this process shows the generation's progress)."""
    d, where = config.data, f"{config._source}: data"
    sources = resolve_sources(d.sources, d.cache_dir, where, is_main)
    if not sources:
        raise ConfigError("data.sources: expected at least one path or generator spec")
    given = d.test_sources is not None
    common = dict(resolution=d.resolution, t_in=d.t_in, channels=d.channels,
                  test_fraction=d.test_fraction, pad_value=d.pad_value,
                  check_finite=d.check_finite)  # fmt: skip
    train = Mixture(
        sources, weights=d.weights, t_out=config.t_ar * config.t_out, n_test=d.n_test,
        split="all" if given else "train", mode="window", seed=config.seed, **common,
    )  # fmt: skip
    tests = resolve_sources(d.test_sources, d.cache_dir, where, is_main) if given else sources
    counts = d.n_test if isinstance(d.n_test, list) else [d.n_test] * len(tests)
    n_test = dict(zip(tests, counts, strict=False))  # split "all" ignores them
    test = {}
    for name, src in tests.items():
        try:
            test[name] = Mixture({name: src}, t_out=1, split="all" if given else "test",
                                 n_test=n_test[name], mode="trajectory", **common)  # fmt: skip
        except ValueError as err:
            if "split is empty" not in str(err):
                raise
            log.warning("source %s has no test trajectories: not evaluated", name)
    return RunData(train, test)
