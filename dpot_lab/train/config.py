"""Run configuration: nested dataclasses, read from YAML or a dict with strict validation.

Every key is checked against the dataclasses before anything else happens (no data is read), and a
mistake names the file, the key path and the expected type::

    configs/x.yaml: optim.lr: expected float, got str 'fast'
    configs/x.yaml: unknown key 'optim.lrr' (known keys: accumulate, betas, ...)

``TrainConfig.from_yaml(path)``, ``TrainConfig.from_dict(d)`` and ``config.to_dict()`` round-trip.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from dpot_lab.models.dpot import DPOTConfig
from dpot_lab.models.presets import PRESETS

PARTS = ("embed", "blocks", "head")
# Model fields the trainer derives from the data section (they must agree when also given).
DERIVED_MODEL_FIELDS = {
    "img_size": "data.resolution",
    "in_channels": "data.channels",
    "in_timesteps": "data.t_in",
    "out_timesteps": "t_out",
}


class ConfigError(ValueError):
    """A config that does not fit the schema; the message names the source, key path and type."""


@dataclass
class ModelConfig:
    """A preset name plus any ``DPOTConfig`` field as an override
    (``model: {preset: nano, depth: 1}``).

    ``preset: null`` with ``init_from`` takes the architecture of that checkpoint (adapted to the
    data's channels, grid and t_in)."""

    preset: str | None = "nano"
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    """Training sources: file paths or generator specs (``{generate: ns2d, n_samples: 64}``)."""

    sources: list[str | dict[str, Any]] = field(default_factory=list)
    weights: list[int] | None = None  # repeats per trajectory and epoch, one per source
    test_sources: list[str | dict[str, Any]] | None = None  # None: the test split of ``sources``
    test_fraction: float = 0.1  # the last trajectories of each source form its test split
    n_test: int | list[int] | None = None  # test trajectories, per source or one for all
    # (overrides test_fraction)
    resolution: int | list[int] = 64
    t_in: int = 10
    channels: int = 4
    pad_value: float = 1.0
    num_workers: int = 0
    cache_dir: str | None = None  # where generator specs are cached (None: the generator's default)


@dataclass
class NoiseConfig:
    """Input noise on every auto-regressive step: ``x + s·σ·N(0, 1)`` with σ per sample and channel.

    ``rms``: σ = RMS of the window over space and time (s is a relative size, resolution-free);
    ``norm``: σ = its L2 norm (the paper's parameterisation, 5e-4 ≈ 0.2 RMS at 128²×10).
    """

    kind: Literal["rms", "norm"] = "rms"
    scale: float = 0.1


@dataclass
class LossConfig:
    """Masked relative L2. ``score_padded``: score padded channels too (the release's training)."""

    score_padded: bool = False


@dataclass
class OptimConfig:
    """Adam(W) with the paper's defaults and a per-iteration schedule.

    Schedules: ``onecycle`` (cosine warm-up from lr/div_factor over ``warmup`` of the steps, cosine
    decay to lr/(div_factor·final_div_factor)), ``cosine`` (linear warm-up, same cosine decay),
    ``constant``. ``part_lrs``/``freeze`` name parts ``embed``, ``blocks``, ``head``.
    """

    name: Literal["adam", "adamw"] = "adam"
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.9])
    weight_decay: float = 1e-6
    schedule: Literal["onecycle", "cosine", "constant"] = "onecycle"
    warmup: float = 0.2
    div_factor: float = 1e4
    final_div_factor: float = 1e4
    clip_grad: float | None = None
    accumulate: int = 1
    part_lrs: dict[str, float] = field(default_factory=dict)
    freeze: list[str] = field(default_factory=list)


@dataclass
class EvalConfig:
    """Full-trajectory rollout L2RE per source on the test split (paper protocol).

    ``horizon``: scored steps, capped by each trajectory's length (None: the whole rest).
    ``every``: steps between evaluations (0: only at the end).
    """

    every: int = 0
    horizon: int | None = None
    batch_size: int = 8
    max_samples: int | None = None  # per source


@dataclass
class CheckpointConfig:
    """``every`` steps a step checkpoint (0: only at the end); ``keep`` of them are retained."""

    every: int = 0
    keep: int = 3


@dataclass
class SafetyConfig:
    """``max_bad_steps`` consecutive non-finite steps roll back to the last good snapshot (taken
    every ``snapshot_every`` steps) with the learning rate multiplied by ``lr_factor``."""

    max_bad_steps: int = 3
    lr_factor: float = 0.5
    snapshot_every: int = 50
    max_rollbacks: int = 20


@dataclass
class DistributedConfig:
    """Under torchrun: DDP or FSDP (gloo on CPU, NCCL on CUDA); activation checkpointing."""

    backend: Literal["auto", "gloo", "nccl"] = "auto"
    strategy: Literal["ddp", "fsdp"] = "ddp"  # fsdp: weights, grads and Adam state sharded
    activation_checkpointing: bool = False


@dataclass
class LogConfig:
    every: int = 10
    progress: bool = True


@dataclass
class TrainConfig:
    """One training run (pre-training or fine-tuning). ``batch_size`` is the global batch."""

    name: str = "run"
    seed: int = 0
    steps: int = 1000
    batch_size: int = 20
    t_ar: int = 1  # auto-regressive steps per sample, gradient through the rollout
    t_out: int = 1  # frames predicted per model call (temporal bundling)
    device: str = "auto"  # auto: CUDA when available
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 autocast on CUDA
    compile: bool = False
    ema: float | None = None  # EMA decay of the weights (None: off)
    init_from: str | None = None  # checkpoint to fine-tune from (ours or the release's)
    out_dir: str | None = None
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    log: LogConfig = field(default_factory=LogConfig)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> TrainConfig:
        """Read and validate a YAML file (``1e-3`` is read as a float, unlike plain YAML 1.1)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        with open(path) as f:
            try:
                raw = yaml.load(f, Loader=_Loader)
            except yaml.YAMLError as err:
                raise ConfigError(f"{path}: not valid YAML: {err}") from None
        return cls.from_dict(raw or {}, source=str(path))

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> TrainConfig:
        """Validate a nested dict (as YAML gives it) into a config."""
        cfg = _build(cls, d, "", source)
        cfg.validate(source)
        return cfg

    @classmethod
    def coerce(cls, config: TrainConfig | dict | str | os.PathLike) -> TrainConfig:
        """A config from a ``TrainConfig``, a dict or a YAML path."""
        if isinstance(config, TrainConfig):
            config.validate()
            return config
        if isinstance(config, dict):
            return cls.from_dict(config)
        if isinstance(config, (str, os.PathLike)):
            return cls.from_yaml(config)
        raise TypeError(
            f"config must be a TrainConfig, dict or YAML path, got {type(config).__name__}"
        )

    def to_dict(self) -> dict:
        """Plain nested dict (the model section flattened), loadable with ``from_dict``."""
        d = dataclasses.asdict(self)
        model = d.pop("model")
        d["model"] = {"preset": model["preset"], **model["overrides"]}
        return d

    def to_yaml(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        return path

    def replace(self, **changes: Any) -> TrainConfig:
        """A validated copy with fields changed: top-level or dotted (``{"optim.lr": 1e-4}``)."""
        d = self.to_dict()
        for key, value in changes.items():
            *parents, leaf = key.replace("__", ".").split(".")
            node = d
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = value
        return TrainConfig.from_dict(d)

    # ------------------------------------------------------------------ checks
    def validate(self, source: str = "config") -> None:
        """Value checks beyond types; raises ConfigError naming the key."""

        def need(ok: bool, key: str, what: str) -> None:
            if not ok:
                raise ConfigError(f"{source}: {key}: expected {what}")

        need(self.steps >= 1, "steps", f"an int >= 1, got {self.steps}")
        need(self.batch_size >= 1, "batch_size", f"an int >= 1, got {self.batch_size}")
        need(self.t_ar >= 1, "t_ar", f"an int >= 1, got {self.t_ar}")
        need(self.t_out >= 1, "t_out", f"an int >= 1, got {self.t_out}")
        need(
            self.ema is None or 0 < self.ema < 1,
            "ema",
            f"null or a decay in (0, 1), got {self.ema}",
        )
        need(self.noise.scale >= 0, "noise.scale", f"a float >= 0, got {self.noise.scale}")
        need(self.optim.lr > 0, "optim.lr", f"a float > 0, got {self.optim.lr}")
        need(len(self.optim.betas) == 2, "optim.betas", f"2 floats, got {self.optim.betas}")
        need(
            0 <= self.optim.warmup < 1,
            "optim.warmup",
            f"a fraction in [0, 1), got {self.optim.warmup}",
        )
        need(
            self.optim.accumulate >= 1,
            "optim.accumulate",
            f"an int >= 1, got {self.optim.accumulate}",
        )
        need(
            self.batch_size % self.optim.accumulate == 0,
            "batch_size",
            f"a multiple of optim.accumulate={self.optim.accumulate}, got {self.batch_size}",
        )
        for part in [*self.optim.part_lrs, *self.optim.freeze]:
            need(part in PARTS, "optim.part_lrs/freeze", f"parts among {list(PARTS)}, got {part!r}")
        need(self.data.t_in >= 1, "data.t_in", f"an int >= 1, got {self.data.t_in}")
        need(self.data.channels >= 1, "data.channels", f"an int >= 1, got {self.data.channels}")
        need(self.eval.every >= 0, "eval.every", f"an int >= 0, got {self.eval.every}")
        need(
            self.checkpoint.keep >= 1, "checkpoint.keep", f"an int >= 1, got {self.checkpoint.keep}"
        )
        need(self.log.every >= 1, "log.every", f"an int >= 1, got {self.log.every}")
        need(self.safety.max_bad_steps >= 1, "safety.max_bad_steps", "an int >= 1")
        need(0 < self.safety.lr_factor <= 1, "safety.lr_factor", "a factor in (0, 1]")
        for i, src in enumerate([*self.data.sources, *(self.data.test_sources or [])]):
            if isinstance(src, dict):
                need(
                    "generate" in src,
                    f"data.sources[{i}]",
                    "a path or a dict with a 'generate' key",
                )
        if self.data.weights is not None:
            need(
                len(self.data.weights) == len(self.data.sources),
                "data.weights",
                f"one weight per source ({len(self.data.sources)}), got {len(self.data.weights)}",
            )
        if isinstance(self.data.n_test, list):
            need(
                len(self.data.n_test) == len(self.data.sources),
                "data.n_test",
                f"one count per source ({len(self.data.sources)}), got {len(self.data.n_test)}",
            )
        if self.model.preset is None:
            need(self.init_from is not None, "model.preset", "a preset name (null needs init_from)")
        elif self.model.preset not in PRESETS:
            need(False, "model.preset", f"one of {sorted(PRESETS)}, got {self.model.preset!r}")
        n_spatial = self.model.overrides.get("n_spatial", 2)
        res = self.data.resolution
        need(
            isinstance(res, int) or len(res) == n_spatial,
            "data.resolution",
            f"an int or {n_spatial} ints (model.n_spatial={n_spatial}), got {res}",
        )
        derived = self.derived_model_fields()
        for key, value in derived.items():
            given = self.model.overrides.get(key)
            if given is not None and _norm(given, n_spatial) != _norm(value, n_spatial):
                raise ConfigError(
                    f"{source}: model.{key}: {given} differs from "
                    f"{DERIVED_MODEL_FIELDS[key]}={value}; leave it out (it follows that key)"
                )

    # ------------------------------------------------------------------ model
    def derived_model_fields(self) -> dict[str, Any]:
        res = self.data.resolution
        return {
            "img_size": res if isinstance(res, int) else tuple(res),
            "in_channels": self.data.channels,
            "in_timesteps": self.data.t_in,
            "out_timesteps": self.t_out,
        }

    def model_config(self, base: DPOTConfig | None = None) -> DPOTConfig:
        """The ``DPOTConfig`` of this run: the preset (or ``base``, the architecture of a
        checkpoint, when the preset is null), the overrides and the data's sizes."""
        changes = {**self.model.overrides, **self.derived_model_fields()}
        try:
            if self.model.preset is None:
                from dpot_lab.train.finetune import adapt_model_config

                if base is None:
                    raise ValueError("preset is null: pass the checkpoint's config as ``base``")
                changes.setdefault("n_cls", 0)  # the class head takes no part in training
                if isinstance(changes["img_size"], int):
                    changes["img_size"] = (changes["img_size"],) * changes.get(
                        "n_spatial", base.n_spatial
                    )
                return adapt_model_config(base, **changes)
            return DPOTConfig(**{**PRESETS[self.model.preset], **changes})
        except (TypeError, ValueError) as err:
            raise ConfigError(f"model: {err}") from None


def _norm(value: Any, n: int) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return (value,) * n if isinstance(value, int) and n else value


# ---------------------------------------------------------------------- YAML
class _Loader(yaml.SafeLoader):
    """SafeLoader that reads ``1e-3`` and ``1E+4`` as floats (YAML 1.1 wants ``1.0e-3``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


# ---------------------------------------------------------------------- validation
def _type_name(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is type(None):
        return "null"
    if hint is Any:
        return "any value"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin is list:
        return f"a list of {_type_name(args[0])}"
    if origin is dict:
        return f"a mapping of {_type_name(args[0])} to {_type_name(args[1])}"
    if dataclasses.is_dataclass(hint):
        return "a mapping"
    return getattr(hint, "__name__", str(hint))


def _mismatch(value: Any, hint: Any, path: str, source: str) -> ConfigError:
    got = "null" if value is None else f"{type(value).__name__} {value!r}"
    return ConfigError(f"{source}: {path}: expected {_type_name(hint)}, got {got}")


def _convert(value: Any, hint: Any, path: str, source: str) -> Any:
    """``value`` checked against the type ``hint`` (int accepted for float); raises ConfigError."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, path, source)
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            try:
                return _convert(value, arg, path, source)
            except ConfigError:
                continue
        raise _mismatch(value, hint, path, source)
    if origin is Literal:
        if value in args:
            return value
        raise _mismatch(value, hint, path, source)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise _mismatch(value, hint, path, source)
        return [_convert(v, args[0], f"{path}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise _mismatch(value, hint, path, source)
        return {
            _convert(k, args[0], path, source): _convert(v, args[1], f"{path}.{k}", source)
            for k, v in value.items()
        }
    if hint is type(None):
        if value is None:
            return None
        raise _mismatch(value, hint, path, source)
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _mismatch(value, hint, path, source)
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _mismatch(value, hint, path, source)
    if hint in (str, bool):
        if isinstance(value, hint):
            return value
        raise _mismatch(value, hint, path, source)
    raise TypeError(f"config schema uses an unsupported type {hint!r} at {path}")


def _build(cls: type, d: Any, path: str, source: str) -> Any:
    """Dataclass ``cls`` from mapping ``d``, every key checked; the model section is special."""
    if not isinstance(d, dict):
        raise _mismatch(d, cls, path or "<top level>", source)
    if cls is ModelConfig:
        return _build_model(d, path, source)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in d.items():
        key_path = f"{path}.{key}" if path else str(key)
        if key not in names:
            raise ConfigError(
                f"{source}: unknown key {key_path!r} (known keys: {', '.join(sorted(names))})"
            )
        kwargs[key] = _convert(value, hints[key], key_path, source)
    return cls(**kwargs)


def _build_model(d: dict, path: str, source: str) -> ModelConfig:
    """``{preset: name, <DPOTConfig field>: value, ...}`` -> ModelConfig, fields type-checked."""
    hints = typing.get_type_hints(DPOTConfig)
    # img_size accepts an int or a list of ints (tuples do not exist in YAML)
    hints["img_size"] = int | list[int]
    preset, overrides = ModelConfig.preset, {}
    for key, value in d.items():
        key_path = f"{path}.{key}"
        if key == "preset":
            preset = _convert(value, str | None, key_path, source)
            continue
        if key not in hints:
            known = ", ".join(sorted(["preset", *hints]))
            raise ConfigError(f"{source}: unknown key {key_path!r} (known keys: {known})")
        overrides[key] = _convert(value, hints[key], key_path, source)
    return ModelConfig(preset=preset, overrides=overrides)


__all__ = [
    "CheckpointConfig", "ConfigError", "DataConfig", "DistributedConfig", "EvalConfig",
    "LogConfig", "LossConfig", "ModelConfig", "NoiseConfig", "OptimConfig", "SafetyConfig",
    "TrainConfig", "PARTS",
]  # fmt: skip
