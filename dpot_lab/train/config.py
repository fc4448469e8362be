"""Run configuration: ``configfile`` sections (each field with its type and bounds) and the rules
between fields (``TrainConfig.__post_init__``), checked in one pass before any data is read.
``from_yaml``, ``from_dict`` and ``to_dict`` round-trip (no ``base:`` left)."""

from __future__ import annotations

import dataclasses
import inspect
import os
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import pydantic as pd
import torch
import yaml

import dpot_lab.configfile as cf
from dpot_lab.atomic import atomic_path
from dpot_lab.configfile import Bool, Cardinal, ConfigError, Count, Float, Positive, Str
from dpot_lab.data.generation import GENERATORS
from dpot_lab.models.dpot import DPOTConfig, adapt_model_config
from dpot_lab.models.parts import LORA_KINDS, PARTS
from dpot_lab.models.presets import PRESETS
from dpot_lab.sizes import size_tuple

Fraction = cf.real(ge=0, lt=1)
Part = Annotated[Str, cf.one_of(PARTS)]
parse_setting = cf.parse_setting  # the CLI's ``--set key=value``
# The run keys that give the model's data-derived fields (they must agree when also given).
DERIVED_MODEL_FIELDS = dict(zip(DPOTConfig.DATA_FIELDS, ("data.resolution", "data.channels",
                                "data.t_in", "t_out"), strict=True))  # fmt: skip


class GeneratorSpec(pd.BaseModel):
    """A source generated on first use (``generate_cached``): ``{generate: ns2d, n_samples: 64,
    <generator parameter>: ...}``, checked without running the generator."""

    model_config = pd.ConfigDict(extra="allow")  # the generator's own parameters
    generate: Literal[tuple(sorted(GENERATORS))]
    n_samples: Count
    resolution: cf.int_or_list(Count) | None = None
    seed: Cardinal = 0

    @pd.model_validator(mode="after")
    def _known_parameters(self) -> GeneratorSpec:
        params = inspect.signature(GENERATORS[self.generate].load()).parameters
        own = [p for p in params if p not in ("n_samples", "resolution", "seed_seqs")]
        takes = [*type(self).model_fields, "batch_size", "progress", *own]
        checked = not any(p.kind is p.VAR_KEYWORD for p in params.values())  # else by the generator
        if checked and (unknown := sorted(set(self.model_extra) - set(takes))):
            raise ValueError(f"expected keys among {takes}, got unknown {unknown}")
        return self


Source = cf.either(
    "str or a mapping",
    scalar=Annotated[Str, cf.rule(str.strip, "a path")],
    mapping=Annotated[GeneratorSpec, pd.AfterValidator(lambda s: s.model_dump(exclude_unset=True))],
)


class _Model(pd.BaseModel):
    """A preset plus ``DPOTConfig`` fields as overrides (``model: {preset: nano, depth: 1}``);
    ``preset: null`` with ``init_from``: that checkpoint's architecture (adapted to the data)."""

    model_config = pd.ConfigDict(extra="forbid")
    known_keys = pd.model_validator(mode="before")(cf.known_keys)

    @property
    def overrides(self) -> dict[str, Any]:
        """The ``DPOTConfig`` fields given."""
        return self.model_dump(exclude_unset=True, exclude={"preset"})


ModelSection = pd.create_model(
    "model",
    __base__=_Model,
    preset=(Annotated[Str, cf.one_of(sorted(PRESETS))] | None, "nano"),
    **{k: (f.rebuild_annotation(), None) for k, f in DPOTConfig.__pydantic_fields__.items()},
)


@cf.section
class DataConfig:
    """Training sources (paths or generator specs, cached in ``cache_dir``), ``weights`` their
    repeats per trajectory and epoch; the test split: ``test_sources``, or (null) the last
    trajectories of each source, ``n_test`` per source (or one for all), else ``test_fraction``."""

    sources: list[Source] = field(default_factory=list)
    weights: Annotated[list[Cardinal] | None, cf.rule(any, "some repeats > 0")] = None
    test_sources: list[Source] | None = None
    test_fraction: Fraction = 0.1
    n_test: cf.int_or_list(Cardinal) | None = None
    resolution: cf.int_or_list(Count) | None = None  # null: the data's (largest per axis)
    t_in: Count = 10
    channels: Count | None = None  # null: the model's, more where a source has more fields
    pad_value: Float = 1.0
    num_workers: Cardinal = 0
    # windows assembled by loader CPU workers, or on the device from trajectories kept there (up to
    # resident_gb, null: a quarter; more streams in chunks); auto: device unless that cannot hold
    # two trajectories of each source
    placement: Literal["auto", "device", "loader"] = "loader"
    resident_gb: Positive | None = None
    cache_dir: Str | None = None
    # NaN/Inf, or a channel 0 everywhere at a predicted frame: stop the run or skip its trajectory
    check_finite: Literal["window", "skip"] = "window"


@cf.section
class NoiseConfig:
    """Input noise on every auto-regressive step: ``x + s·σ·N(0, 1)``, σ per sample and channel."""

    kind: Literal["rms", "norm"] = "rms"  # σ: the window's rms (resolution-free) or L2 norm (paper)
    scale: cf.real(ge=0) = 0.1


@cf.section
class LossConfig:
    """Masked relative L2."""

    score_padded: Bool = False  # score padded channels too (the release's training)


LoRATarget = Annotated[Str, cf.rule(
    lambda t: t in (*LORA_KINDS, *PARTS) or bool(set(".*?[") & set(t)),
    f"a kind {list(LORA_KINDS)}, a part {list(PARTS)} or a parameter-name glob (blocks.*.mlp.*)",
)]  # fmt: skip


@cf.section
class LoRAConfig:
    """Low-rank adapters ``W + (alpha/rank)·B·A`` (``dpot_lab.train.lora``) on the weights of a
    listed kind (any if none) in a listed part or name glob (anywhere if none)."""

    rank: Count = 4
    alpha: Positive = 8.0
    targets: Annotated[list[LoRATarget], cf.rule(bool, "at least one kind, part or name")] = field(
        default_factory=lambda: ["linear", "conv", "fourier"]
    )


@cf.section
class OptimConfig:
    """Adam(W) with the paper's defaults and a per-iteration learning-rate schedule."""

    name: Literal["adam", "adamw"] = "adam"
    lr: Positive = 1e-3
    betas: Annotated[list[Fraction], cf.rule(lambda b: len(b) == 2, "2 floats")] = field(
        default_factory=lambda: [0.9, 0.9]
    )
    weight_decay: cf.real(ge=0) = 1e-6
    # onecycle: cosine warm-up from lr/div_factor over warmup of the steps, cosine decay to
    # lr/(div_factor·final_div_factor); cosine: linear warm-up; constant
    schedule: Literal["onecycle", "cosine", "constant"] = "onecycle"
    warmup: Fraction = 0.2
    div_factor: Positive = 1e4
    final_div_factor: Positive = 1e4
    clip_grad: Positive | None = None
    accumulate: Count = 1
    part_lrs: dict[Part, Positive] = field(default_factory=dict)  # learning rate per part
    freeze: Annotated[
        list[Part], cf.rule(lambda f: not set(PARTS) <= set(f), f"some of {[*PARTS]} left to train")
    ] = field(default_factory=list)  # parts
    lora: None | LoRAConfig = None  # null first: "lora: null" is off, "lora: {}" the defaults


@cf.section
class EvalConfig:
    """Rollout L2RE per source on the test split (paper protocol)."""

    every: Cardinal = 0  # steps; 0: at the end
    horizon: Count | None = None  # steps; null: the whole rest
    batch_size: Count = 8
    max_samples: Count | None = None  # per source


@cf.section
class CheckpointConfig:
    """``every`` steps a step checkpoint (0: only at the end); ``keep`` of them are retained."""

    every: Cardinal = 0
    keep: Count = 3


@cf.section
class SafetyConfig:
    """``max_bad_steps`` consecutive non-finite steps roll back to the last good snapshot (taken
    every ``snapshot_every`` steps) with the learning rate multiplied by ``lr_factor``."""

    max_bad_steps: Count = 3
    lr_factor: cf.real(gt=0, le=1) = 0.5
    snapshot_every: Count = 50
    max_rollbacks: Cardinal = 20


@cf.section
class DistributedConfig:
    """Under torchrun: DDP or FSDP (sharded weights, grads, Adam state); gloo on CPU, else NCCL."""

    backend: Literal["auto", "gloo", "nccl"] = "auto"
    strategy: Literal["ddp", "fsdp"] = "ddp"
    activation_checkpointing: Bool = False


@cf.section
class LogConfig:
    every: Count = 10
    progress: Bool = True


def _is_device(name: str) -> bool:
    try:
        return name == "auto" or bool(torch.device(name))
    except RuntimeError:
        return False


@cf.section
class TrainConfig:
    """One training run: pre-training, or fine-tuning ``init_from``; ``device``/``precision`` auto:
    CUDA with bf16 autocast when available."""

    name: Annotated[Str, cf.rule(str.strip, "a non-empty run name")] = "run"
    seed: Cardinal = 0
    steps: Count = 1000
    batch_size: Count = 20  # the global batch
    t_ar: Count = 1  # auto-regressive steps per sample (gradient through the rollout)
    t_out: Count = 1  # frames per model call
    device: Annotated[
        Str, cf.rule(_is_device, "'auto' or a torch device (cpu, cuda, cuda:1, mps)")
    ] = "auto"
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    compile: Bool = False
    ema: cf.real(gt=0, lt=1) | None = None  # decay of the weights' average; null: off
    init_from: Str | None = None  # a path, hf://owner/repo/file or a released size (Ti, S, M, L, H)
    init_allow_partial: Bool = False  # train even when under half of the model is init_from's
    out_dir: Str | None = None
    model: ModelSection = field(default_factory=ModelSection)
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

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, **changes: Any) -> TrainConfig:
        """Read and validate a YAML file (``base:`` resolved; ``changes`` as in ``replace``)."""
        raw = cf.read_yaml(path)
        if isinstance(raw, dict):
            cf.set_dotted(raw, changes, str(path))
        return cls.from_dict(raw, source=str(path))

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> TrainConfig:
        """Validate a nested dict (as YAML gives it); a section given as null takes its defaults."""
        if isinstance(d, dict):
            sections = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]
            d = {k: {} if v is None and k in sections else v for k, v in d.items()}
        try:
            cfg = pd.TypeAdapter(cls).validate_python(d)
        except pd.ValidationError as err:
            raise cf.config_error(err, source) from None
        cfg._source = source
        return cfg

    @classmethod
    def coerce(cls, config: TrainConfig | dict | str | os.PathLike) -> TrainConfig:
        """A validated config from a ``TrainConfig`` (checked again), a dict or a YAML path."""
        if isinstance(config, str | os.PathLike):
            return cls.from_yaml(config)
        return config.replace() if isinstance(config, TrainConfig) else cls.from_dict(config)

    @classmethod
    def json_schema(cls) -> dict:
        """The JSON schema of a run config file."""
        return pd.TypeAdapter(cls).json_schema()

    def to_dict(self) -> dict:
        """Plain nested dict (the model section: its preset and the fields given)."""
        model = {"preset": self.model.preset, **self.model.overrides}
        return {**dataclasses.asdict(self), "model": model}

    def to_yaml(self, path: str | os.PathLike) -> Path:
        """Write the config as YAML, atomically (a failed write keeps the file there)."""
        with atomic_path(Path(path)) as tmp:
            tmp.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        return Path(path)

    def replace(self, **changes: Any) -> TrainConfig:
        """A validated copy with fields changed: top-level or dotted (``{"optim.lr": 1e-4}``)."""
        d = self.to_dict()
        cf.set_dotted(d, changes, self._source)
        return TrainConfig.from_dict(d, source=self._source)

    def __post_init__(self) -> None:
        """The rules between fields (pydantic runs this once the fields are valid)."""
        o, d, given, preset = self.optim, self.data, self.model.overrides, self.model.preset
        if self.batch_size % o.accumulate:
            raise ValueError(f"batch_size: expected a multiple of optim.accumulate={o.accumulate}, "
                             f"got {self.batch_size}")  # fmt: skip
        for key in ("freeze", "part_lrs"):
            if o.lora is not None and getattr(o, key):
                raise ValueError(f"optim.{key}: expected nothing with optim.lora (LoRA freezes the "
                                 f"base weights itself), got {getattr(o, key)}")  # fmt: skip
        for key, what in (("weights", "weight"), ("n_test", "count")):
            if isinstance(getattr(d, key), list) and len(getattr(d, key)) != len(d.sources):
                raise ValueError(f"data.{key}: expected one {what} per source ({len(d.sources)}), "
                                 f"got {len(getattr(d, key))}")  # fmt: skip
        if preset is None and self.init_from is None:
            raise ValueError("model.preset: expected a preset name (null needs init_from)")
        # null preset: the checkpoint says 2D or 3D, so the data may give 2 or 3 sizes
        n_spatial = given.get("n_spatial", 2 if preset else None)
        ranks = (n_spatial,) if n_spatial else (2, 3)
        if isinstance(d.resolution, list) and len(d.resolution) not in ranks:
            raise ValueError(f"data.resolution: expected an int or {n_spatial or '2 or 3'} ints "
                             f"(model.n_spatial={n_spatial}), got {d.resolution}")  # fmt: skip
        derived, data_keys = self.derived_model_fields(), DERIVED_MODEL_FIELDS.items()
        for key, data_key in data_keys:
            mine, value = given.get(key), derived.get(key, "null (from the data)")
            if mine is not None and not _same_size(mine, value, n_spatial):
                raise ValueError(f"model.{key}: {mine} differs from {data_key}={value}; leave it "
                                 "out (it follows that key)")  # fmt: skip
        if preset is not None:  # the sizes together: grid / patch, widths
            self._model_config(None, partial=True)

    @property
    def sizes_known(self) -> bool:
        """Whether the data's grid and channels are given (else ``sources.with_data_sizes``)."""
        return self.data.resolution is not None and self.data.channels is not None

    def derived_model_fields(self) -> dict[str, Any]:
        """The model fields that follow the data's keys (those given)."""
        res = self.data.resolution
        sizes = (tuple(res) if isinstance(res, list) else res, self.data.channels, self.data.t_in,
                 self.t_out)  # fmt: skip
        return {k: v for k, v in zip(DPOTConfig.DATA_FIELDS, sizes, strict=True) if v is not None}

    def model_config(self, base: DPOTConfig | None = None, partial: bool = False) -> DPOTConfig:
        """The run's ``DPOTConfig``: the preset (or ``base``, a checkpoint's architecture), the
        overrides and the data's sizes (``partial``: the preset's where the data's are null)."""
        try:
            return self._model_config(base, partial)
        except ValueError as err:
            raise ConfigError(f"{self._source}: {err}") from None

    def _model_config(self, base: DPOTConfig | None, partial: bool) -> DPOTConfig:
        changes = {**self.model.overrides, **self.derived_model_fields()}
        try:
            if self.model.preset is None and base is None:
                raise ValueError("preset is null: pass the checkpoint's config as ``base``")
            if not (self.sizes_known or partial):
                raise ValueError("data.resolution or data.channels is null: fill them from the "
                                 "data first (dpot_lab.train.sources.with_data_sizes)")  # fmt: skip
            if self.model.preset is not None:
                return DPOTConfig(**{**PRESETS[self.model.preset], **changes})
            return adapt_model_config(base, **{"n_cls": 0, **changes})  # no class head to train
        except ValueError as err:
            own = str(err).split(":", 1)[0] in DPOTConfig.__pydantic_fields__
            raise ValueError(f"model.{err}" if own else f"model: {err}") from None


def _same_size(a: Any, b: Any, n_spatial: int | None) -> bool:
    """Whether two sizes (ints, or an int and a grid) are the same for ``n_spatial`` axes."""
    n = next((len(v) for v in (a, b) if isinstance(v, list | tuple)), n_spatial or 2)
    try:
        return size_tuple(a, n) == size_tuple(b, n)
    except ValueError:
        return False


__all__ = [
    "CheckpointConfig", "ConfigError", "DataConfig", "DistributedConfig", "EvalConfig",
    "GeneratorSpec", "LoRAConfig", "LogConfig", "LossConfig", "ModelSection", "NoiseConfig",
    "OptimConfig", "SafetyConfig", "TrainConfig", "parse_setting",
]  # fmt: skip
