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

from dpot_lab.data.generation import generate_cached
from dpot_lab.data.mixture import Mixture
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


def run_data(config: TrainConfig, is_main: bool = True) -> RunData:
    """The training mixture and the test mixtures that ``config`` describes (every rank of a
    torchrun call calls this; ``is_main``: this process shows the generation's progress)."""
    d, where = config.data, f"{config._source}: data"
    sources = resolve_sources(d.sources, d.cache_dir, where, is_main)
    if not sources:
        raise ConfigError("data.sources: expected at least one path or generator spec")
    given = d.test_sources is not None
    common = dict(resolution=d.resolution, t_in=d.t_in, channels=d.channels,
                  test_fraction=d.test_fraction, pad_value=d.pad_value)  # fmt: skip
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
