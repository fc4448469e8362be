"""Run configuration: the schema of a training run (nested dataclasses) and its value checks.

Read with ``dpot_lab.configfile`` (typed YAML, ``base:`` inheritance): every key is checked
before anything else happens (no data is read), and a mistake names the file, the key path and
the expected type::

    configs/x.yaml: optim.lr: expected float, got str 'fast'
    configs/x.yaml: unknown key 'optim.lrr' (known keys: accumulate, betas, ...)
    configs/x.yaml: data.test_fraction: expected a fraction in [0, 1), got 1.0

The model section is a preset plus any ``DPOTConfig`` field, checked by ``DPOTConfig``'s own
rules. ``TrainConfig.from_yaml(path)``, ``TrainConfig.from_dict(d)`` and ``config.to_dict()``
round-trip; the dict has no ``base:`` left.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import yaml

from dpot_lab.atomic import atomic_path
from dpot_lab.configfile import (
    ConfigError,
    build,
    convert,
    is_int,
    parse_setting,
    read_yaml,
    set_dotted,
)
from dpot_lab.data.generation import GENERATORS
from dpot_lab.models.dpot import DPOTConfig, adapt_model_config
from dpot_lab.models.parts import LORA_KINDS, PARTS
from dpot_lab.models.presets import PRESETS
from dpot_lab.sizes import size_tuple

# The run keys that give the model's data-derived fields (they must agree when also given).
DERIVED_MODEL_FIELDS = dict(
    zip(
        DPOTConfig.DATA_FIELDS,
        ("data.resolution", "data.channels", "data.t_in", "t_out"),
        strict=True,
    )
)
# Range of every number that has one: "key op bound" (a null value, where allowed, is off).
BOUNDS = (
    "seed >= 0", "steps >= 1", "batch_size >= 1", "t_ar >= 1", "t_out >= 1",
    "data.t_in >= 1", "data.channels >= 1", "data.num_workers >= 0", "data.resident_gb > 0",
    "noise.scale >= 0", "optim.lr > 0", "optim.weight_decay >= 0", "optim.div_factor > 0",
    "optim.final_div_factor > 0", "optim.clip_grad > 0", "optim.accumulate >= 1",
    "eval.every >= 0", "eval.horizon >= 1", "eval.batch_size >= 1", "eval.max_samples >= 1",
    "checkpoint.every >= 0", "checkpoint.keep >= 1", "safety.max_bad_steps >= 1",
    "safety.snapshot_every >= 1", "safety.max_rollbacks >= 0", "log.every >= 1",
)  # fmt: skip
# Keys of a generator spec besides the generator's own parameters (see generate_cached).
GENERATOR_KEYS = ("generate", "n_samples", "resolution", "seed", "batch_size", "progress")


@dataclass
class ModelConfig:
    """A preset name plus any ``DPOTConfig`` field as an override
    (``model: {preset: nano, depth: 1}``).

    ``preset: null`` with ``init_from`` takes the architecture of that checkpoint (adapted to the
    data's channels, grid and t_in)."""

    preset: str | None = "nano"
    overrides: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, d: dict, path: str, source: str) -> ModelConfig:
        """``{preset: name, <DPOTConfig field>: value, ...}``, each field type-checked."""
        hints = DPOTConfig.field_types()
        preset, overrides = cls.preset, {}
        for key, value in d.items():
            key_path = f"{path}.{key}"
            if key == "preset":
                preset = convert(value, str | None, key_path, source)
            elif key in hints:
                overrides[key] = convert(value, hints[key], key_path, source)
            else:
                known = ", ".join(sorted(["preset", *hints]))
                raise ConfigError(f"{source}: unknown key {key_path!r} (known keys: {known})")
        return cls(preset=preset, overrides=overrides)


@dataclass
class DataConfig:
    """Training sources: file paths or generator specs (``{generate: ns2d, n_samples: 64}``)."""

    sources: list[str | dict[str, Any]] = field(default_factory=list)
    weights: list[int] | None = None  # repeats per trajectory and epoch, one per source
    test_sources: list[str | dict[str, Any]] | None = None  # None: the test split of ``sources``
    test_fraction: float = 0.1  # the last trajectories of each source form its test split
    n_test: int | list[int] | None = None  # test trajectories, per source or one for all
    # (overrides test_fraction)
    # the model grid; null: the grid of the data (the largest per axis where sources differ)
    resolution: int | list[int] | None = None
    t_in: int = 10
    # the model's channels; null: the checkpoint's (init_from) or the preset's, more where a
    # source has more fields
    channels: int | None = None
    pad_value: float = 1.0
    num_workers: int = 0
    # where training windows are assembled: "loader" CPU DataLoader workers; "device" from
    # trajectories kept on the training device (data.resident; sources beyond resident_gb
    # stream in chunks); "auto" device unless resident_gb cannot hold two trajectories of each
    placement: Literal["auto", "device", "loader"] = "loader"
    resident_gb: float | None = None  # memory the resident trajectories may take (None: 1/4)
    cache_dir: str | None = None  # where generator specs are cached (None: the generator's default)
    # NaN/Inf in a source: "window" stops the run at the first window that holds one, "skip"
    # drops the trajectories that hold any (each source scanned once)
    check_finite: Literal["window", "skip"] = "window"


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
class LoRAConfig:
    """Low-rank adapters ``W + (alpha/rank)·B·A`` (``dpot_lab.train.lora``): only they train, plus
    the tensors a fine-tuning transfer left new or adapted. ``targets``: kinds ``linear``,
    ``conv``, ``fourier``, ``time_agg``; parts ``embed``, ``blocks``, ``head``; or parameter-name
    globs/prefixes (``blocks.*.mlp.*``); a weight is adapted when of a listed kind (any if none)
    and in a listed part or name (anywhere if none)."""

    rank: int = 4
    alpha: float = 8.0
    targets: list[str] = field(default_factory=lambda: ["linear", "conv", "fourier"])


@dataclass
class OptimConfig:
    """Adam(W) with the paper's defaults and a per-iteration schedule.

    Schedules: ``onecycle`` (cosine warm-up from lr/div_factor over ``warmup`` of the steps, cosine
    decay to lr/(div_factor·final_div_factor)), ``cosine`` (linear warm-up, same cosine decay),
    ``constant``. ``part_lrs``/``freeze`` name parts ``embed``, ``blocks``, ``head``. ``lora``:
    parameter-efficient fine-tuning (``LoRAConfig``; null: every parameter trains).
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
    lora: None | LoRAConfig = None  # null first: "lora: null" is off, "lora: {}" the defaults


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
    # checkpoint to fine-tune from (ours or the release's): a path, hf://owner/repo/file, or a
    # released DPOT size Ti, S, M, L, H (open_checkpoint reads all three)
    init_from: str | None = None
    init_allow_partial: bool = False  # train even when under half of the model is init_from's
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

    _source: ClassVar[str] = "config"  # the file (or "config") that later errors name

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_yaml(cls, path: str | os.PathLike, **changes: Any) -> TrainConfig:
        """Read and validate a YAML file (its ``base:`` chain resolved), ``changes`` applied
        first as in ``replace``.

        ``1e-3`` is read as a float (plain YAML 1.1 wants ``1.0e-3``); an empty file and a
        repeated key are errors."""
        raw = read_yaml(path)
        if isinstance(raw, dict):
            set_dotted(raw, changes, str(path))
        return cls.from_dict(raw, source=str(path))

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> TrainConfig:
        """Validate a nested dict (as YAML gives it) into a config."""
        cfg = build(cls, d, "", source)
        cfg._source = source
        cfg.validate()
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
        """Write the config as YAML, atomically (a failed write keeps the file there)."""
        path = Path(path)
        with atomic_path(path) as tmp:
            tmp.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        return path

    def replace(self, **changes: Any) -> TrainConfig:
        """A validated copy with fields changed: top-level or dotted (``{"optim.lr": 1e-4}``)."""
        d = self.to_dict()
        set_dotted(d, changes, self._source)
        return TrainConfig.from_dict(d, source=self._source)

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Value checks beyond types (no file is opened); raises ConfigError naming the key."""

        def need(ok: bool, key: str, what: str) -> None:
            if not ok:
                raise ConfigError(f"{self._source}: {key}: expected {what}")

        for rule in BOUNDS:
            key, op, low = rule.split()
            value = functools.reduce(getattr, key.split("."), self)
            if value is not None:  # null: off (ema, clip_grad, eval.horizon, ...)
                kind = "an int" if isinstance(value, int) else "a float"
                ok = value > float(low) if op == ">" else value >= float(low)
                need(ok, key, f"{kind} {op} {low}, got {value}")
        need(bool(self.name.strip()), "name", "a non-empty run name")
        if self.device != "auto":
            try:
                torch.device(self.device)
            except RuntimeError:
                what = f"'auto' or a torch device (cpu, cuda, cuda:1, mps), got {self.device!r}"
                need(False, "device", what)
        need(
            self.ema is None or 0 < self.ema < 1,
            "ema",
            f"null or a decay in (0, 1), got {self.ema}",
        )
        o = self.optim
        need(
            len(o.betas) == 2 and all(0 <= b < 1 for b in o.betas),
            "optim.betas",
            f"2 floats in [0, 1), got {o.betas}",
        )
        need(0 <= o.warmup < 1, "optim.warmup", f"a fraction in [0, 1), got {o.warmup}")
        need(
            self.batch_size % o.accumulate == 0,
            "batch_size",
            f"a multiple of optim.accumulate={o.accumulate}, got {self.batch_size}",
        )
        for key, parts in (("optim.part_lrs", o.part_lrs), ("optim.freeze", o.freeze)):
            for part in parts:
                need(part in PARTS, key, f"parts among {list(PARTS)}, got {part!r}")
        for part, lr in o.part_lrs.items():
            need(lr > 0, f"optim.part_lrs.{part}", f"a float > 0, got {lr}")
        need(
            not set(PARTS) <= set(o.freeze),
            "optim.freeze",
            f"some of {list(PARTS)} left to train, got {o.freeze}",
        )
        if o.lora is not None:
            self._check_lora(need)
        need(
            0 < self.safety.lr_factor <= 1,
            "safety.lr_factor",
            f"a factor in (0, 1], got {self.safety.lr_factor}",
        )
        self._check_data(need)
        self._check_model(need)

    def _check_lora(self, need: Callable[[bool, str, str], None]) -> None:
        """Kinds and parts are checked here; name globs against the model when applied."""
        o, lo = self.optim, self.optim.lora
        need(lo.rank >= 1, "optim.lora.rank", f"an int >= 1, got {lo.rank}")
        need(lo.alpha > 0, "optim.lora.alpha", f"a float > 0, got {lo.alpha}")
        need(bool(lo.targets), "optim.lora.targets", "at least one kind, part or name")
        for entry in lo.targets:
            name_like = "." in entry or any(c in entry for c in "*?[")
            need(
                entry in LORA_KINDS or entry in PARTS or name_like,
                "optim.lora.targets",
                f"kinds {list(LORA_KINDS)}, parts {list(PARTS)} or parameter-name globs "
                f"(blocks.*.mlp.*), got {entry!r}",
            )
        for key in ("freeze", "part_lrs"):
            need(
                not getattr(o, key),
                f"optim.{key}",
                f"nothing with optim.lora (LoRA freezes the base weights itself), got "
                f"{getattr(o, key)}",
            )

    def _check_data(self, need: Callable[[bool, str, str], None]) -> None:
        d = self.data
        need(
            0 <= d.test_fraction < 1,
            "data.test_fraction",
            f"a fraction in [0, 1), got {d.test_fraction}",
        )
        for key in ("sources", "test_sources"):
            for i, src in enumerate(getattr(d, key) or []):
                if isinstance(src, dict):
                    _check_generator_spec(src, f"data.{key}[{i}]", need)
                else:
                    need(bool(src.strip()), f"data.{key}[{i}]", "a path, got an empty string")
        n_sources = len(d.sources)
        if d.weights is not None:
            need(
                len(d.weights) == n_sources,
                "data.weights",
                f"one weight per source ({n_sources}), got {len(d.weights)}",
            )
            need(
                min(d.weights, default=1) >= 0 and any(d.weights),
                "data.weights",
                f"repeats >= 0, not all 0, got {d.weights}",
            )
        n_test = d.n_test if isinstance(d.n_test, list) else [d.n_test or 0]
        if isinstance(d.n_test, list):
            need(
                len(n_test) == n_sources,
                "data.n_test",
                f"one count per source ({n_sources}), got {len(n_test)}",
            )
        need(min(n_test, default=0) >= 0, "data.n_test", f"counts >= 0, got {d.n_test}")
        res = [d.resolution] if isinstance(d.resolution, int) else d.resolution or [1]
        need(min(res, default=0) >= 1, "data.resolution", f"sizes >= 1, got {d.resolution}")

    def _check_model(self, need: Callable[[bool, str, str], None]) -> None:
        given = self.model.overrides
        for key, value in given.items():
            problem = DPOTConfig.field_problem(key, value)
            need(problem is None, f"model.{key}", problem)
        if self.model.preset is None:
            need(self.init_from is not None, "model.preset", "a preset name (null needs init_from)")
        else:
            need(
                self.model.preset in PRESETS,
                "model.preset",
                f"one of {sorted(PRESETS)}, got {self.model.preset!r}",
            )
        # null preset: the checkpoint says 2D or 3D, so the data may give 2 or 3 sizes
        n_spatial = given.get("n_spatial", 2 if self.model.preset else None)
        res = self.data.resolution
        need(
            res is None
            or isinstance(res, int)
            or len(res) == n_spatial
            or (n_spatial is None and len(res) in (2, 3)),
            "data.resolution",
            f"an int or {n_spatial or '2 or 3'} ints (model.n_spatial={n_spatial}), got {res}",
        )
        derived = self.derived_model_fields()
        for key, data_key in DERIVED_MODEL_FIELDS.items():
            mine, value = given.get(key), derived.get(key, "null (from the data)")
            if mine is not None and not _same_size(mine, value, n_spatial):
                raise ConfigError(
                    f"{self._source}: model.{key}: {mine} differs from "
                    f"{data_key}={value}; leave it out (it follows that key)"
                )
        if self.model.preset is not None:  # the sizes together: grid / patch, widths
            self.model_config(partial=True)

    # ------------------------------------------------------------------ model
    @property
    def sizes_known(self) -> bool:
        """Whether the data's grid and channels are given (null ones come from the data:
        ``train.sources.with_data_sizes``)."""
        return self.data.resolution is not None and self.data.channels is not None

    def derived_model_fields(self) -> dict[str, Any]:
        """The model fields that follow the data's keys (those given)."""
        res = self.data.resolution
        fields = {
            "img_size": res if isinstance(res, int | None) else tuple(res),
            "in_channels": self.data.channels,
            "in_timesteps": self.data.t_in,
            "out_timesteps": self.t_out,
        }
        return {k: v for k, v in fields.items() if v is not None}

    def model_config(self, base: DPOTConfig | None = None, partial: bool = False) -> DPOTConfig:
        """The ``DPOTConfig`` of this run: the preset (or ``base``, the architecture of a
        checkpoint, when the preset is null), the overrides and the data's sizes (``partial``:
        the preset's where the data's are null, to check the other sizes against them)."""
        changes = {**self.model.overrides, **self.derived_model_fields()}
        try:
            if self.model.preset is None and base is None:
                raise ValueError("preset is null: pass the checkpoint's config as ``base``")
            if not (self.sizes_known or partial):
                raise ValueError(
                    "data.resolution or data.channels is null: fill them from the data first "
                    "(dpot_lab.train.sources.with_data_sizes)"
                )
            if self.model.preset is None:
                changes.setdefault("n_cls", 0)  # the class head takes no part in training
                if isinstance(changes["img_size"], int):
                    changes["img_size"] = (changes["img_size"],) * changes.get(
                        "n_spatial", base.n_spatial
                    )
                return adapt_model_config(base, **changes)
            return DPOTConfig(**{**PRESETS[self.model.preset], **changes})
        except (TypeError, ValueError) as err:
            field_name = str(err).split(":", 1)[0]
            where = f"model.{err}" if field_name in DPOTConfig.field_types() else f"model: {err}"
            raise ConfigError(f"{self._source}: {where}") from None


def _same_size(a: Any, b: Any, n_spatial: int | None) -> bool:
    """Whether two sizes (ints, or an int and a grid) are the same for ``n_spatial`` axes."""
    n = next((len(v) for v in (a, b) if isinstance(v, (list, tuple))), n_spatial or 2)
    try:
        return size_tuple(a, n) == size_tuple(b, n)
    except ValueError:
        return False


def _check_generator_spec(spec: dict, key: str, need: Callable[[bool, str, str], None]) -> None:
    """A ``{generate: name, n_samples: n, ...}`` source: a known generator, a count, a seed and
    parameters the generator takes (without running it)."""
    name = spec.get("generate")
    need(name is not None, key, "a path or a mapping with a 'generate' key")
    need(
        isinstance(name, str) and name in GENERATORS,
        f"{key}.generate",
        f"one of {sorted(GENERATORS)}, got {name!r}",
    )
    n, res, seed = spec.get("n_samples"), spec.get("resolution"), spec.get("seed", 0)
    need(is_int(n) and n >= 1, f"{key}.n_samples", f"an int >= 1, got {n!r}")
    sizes = res if isinstance(res, list) else [res]
    need(
        res is None or all(is_int(r) and r >= 1 for r in sizes),
        f"{key}.resolution",
        f"null, an int >= 1 or a list of them, got {res!r}",
    )
    need(is_int(seed) and seed >= 0, f"{key}.seed", f"an int >= 0, got {seed!r}")
    params = inspect.signature(GENERATORS[name].load()).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return  # the generator checks its own parameters
    takes = [
        *GENERATOR_KEYS,
        *(p for p in params if p not in ("n_samples", "resolution", "seed_seqs")),
    ]
    unknown = sorted(set(spec) - set(takes))
    need(not unknown, key, f"keys among {takes}, got unknown {unknown}")


# ---------------------------------------------------------------------- YAML
__all__ = [
    "CheckpointConfig", "ConfigError", "DataConfig", "DistributedConfig", "EvalConfig",
    "LogConfig", "LossConfig", "ModelConfig", "NoiseConfig", "OptimConfig", "SafetyConfig",
    "TrainConfig", "parse_setting",
]  # fmt: skip
