"""Run configuration: the schema of a training run as pydantic dataclasses, each field with its
type and bounds, and the rules between fields.

Read with ``dpot_lab.configfile``: ``base:`` files and ``--set`` changes are merged first, then
the whole run is validated in one pass before anything else happens (no data is read); a mistake
names the file, the key path, what was expected and what was got::

    configs/x.yaml: optim.lr: expected float, got str 'fast'
    configs/x.yaml: unknown key 'optim.lrr' (known keys: accumulate, betas, ...)
    configs/x.yaml: data.test_fraction: expected a fraction in [0, 1), got 1.0

The model section is a preset plus any ``DPOTConfig`` field, checked by that field's own type
and bounds. ``TrainConfig.from_yaml(path)``, ``TrainConfig.from_dict(d)`` and
``config.to_dict()`` round-trip (no ``base:`` left); ``TrainConfig.json_schema()`` describes it.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import torch
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    create_model,
    model_validator,
)  # fmt: skip
from pydantic.dataclasses import dataclass

from dpot_lab.atomic import atomic_path
from dpot_lab.configfile import (
    Bool,
    Cardinal,
    ConfigError,
    Count,
    Float,
    Int,
    Positive,
    Str,
    config_error,
    one_line_errors,
    one_of,
    parse_setting,
    read_yaml,
    rule,
    set_dotted,
)  # fmt: skip
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
Fraction = Annotated[Float, Field(ge=0, lt=1)]
Part = Annotated[Str, one_of(PARTS)]
Sizes = Annotated[
    Int | list[Int] | None,
    rule(lambda s: min(s if isinstance(s, list) else [s], default=0) >= 1, "sizes >= 1"),
]


def _section(cls: type) -> type:
    """A pydantic dataclass that refuses unknown keys and raises one-line errors."""
    return one_line_errors(dataclass(config=ConfigDict(extra="forbid"))(cls))


class GeneratorSpec(BaseModel):
    """A source generated on first use: ``{generate: ns2d, n_samples: 64, <parameter>: ...}``
    (``dpot_lab.data.generation.generate_cached``), checked without running the generator."""

    model_config = ConfigDict(extra="allow")  # the generator's own parameters

    generate: Literal[tuple(sorted(GENERATORS))]
    n_samples: Count
    resolution: Count | list[Count] | None = None
    seed: Cardinal = 0

    @model_validator(mode="after")
    def _known_parameters(self) -> GeneratorSpec:
        params = inspect.signature(GENERATORS[self.generate].load()).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return self  # the generator checks its own parameters
        own = [p for p in params if p not in ("n_samples", "resolution", "seed_seqs")]
        takes = [*type(self).model_fields, "batch_size", "progress", *own]
        unknown = sorted(set(self.model_extra) - set(takes))
        if unknown:
            raise ValueError(f"expected keys among {takes}, got unknown {unknown}")
        return self


Source = (
    Annotated[Str, rule(str.strip, "a path")]
    | Annotated[GeneratorSpec, AfterValidator(lambda s: s.model_dump(exclude_unset=True))]
)


@dataclasses.dataclass
class ModelConfig:
    """A preset name plus any ``DPOTConfig`` field as an override
    (``model: {preset: nano, depth: 1}``).

    ``preset: null`` with ``init_from`` takes the architecture of that checkpoint (adapted to the
    data's channels, grid and t_in)."""

    preset: str | None = "nano"
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)


class _ModelBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _flat(cls, value: Any) -> Any:
        isa = isinstance(value, ModelConfig)
        return {"preset": value.preset, **value.overrides} if isa else value


# The model section as YAML gives it: ``preset`` and each DPOTConfig field with its own rules.
_ModelSection = create_model(
    "model",
    __base__=_ModelBase,
    preset=(Annotated[Str, one_of(sorted(PRESETS))] | None, "nano"),
    **{name: (info.rebuild_annotation(), None)
       for name, info in DPOTConfig.__pydantic_fields__.items()},
)  # fmt: skip


def _as_model_config(section: BaseModel) -> ModelConfig:
    given = [k for k in type(section).model_fields if k in section.model_fields_set]
    return ModelConfig(section.preset, {k: getattr(section, k) for k in given if k != "preset"})


@_section
class DataConfig:
    """Training sources: file paths or generator specs (``{generate: ns2d, n_samples: 64}``)."""

    sources: list[Source] = dataclasses.field(default_factory=list)
    # repeats per trajectory and epoch, one per source
    weights: Annotated[
        list[Int] | None,
        rule(lambda w: min(w, default=1) >= 0 and any(w), "repeats >= 0, not all 0"),
    ] = None
    test_sources: list[Source] | None = None  # None: the test split of ``sources``
    test_fraction: Fraction = 0.1  # the last trajectories of each source form its test split
    # test trajectories, per source or one for all (overrides test_fraction)
    n_test: Annotated[
        Int | list[Int] | None,
        rule(lambda n: min(n if isinstance(n, list) else [n], default=0) >= 0, "counts >= 0"),
    ] = None
    # the model grid; null: the grid of the data (the largest per axis where sources differ)
    resolution: Sizes = None
    t_in: Count = 10
    # the model's channels; null: the checkpoint's (init_from) or the preset's, more where a
    # source has more fields
    channels: Count | None = None
    pad_value: Float = 1.0
    num_workers: Cardinal = 0
    # where training windows are assembled: "loader" CPU DataLoader workers; "device" from
    # trajectories kept on the training device (data.resident; sources beyond resident_gb
    # stream in chunks); "auto" device unless resident_gb cannot hold two trajectories of each
    placement: Literal["auto", "device", "loader"] = "loader"
    resident_gb: Positive | None = None  # memory the resident trajectories may take (None: 1/4)
    cache_dir: Str | None = None  # where generator specs are cached (None: the generator's default)
    # NaN/Inf in a source: "window" stops the run at the first window that holds one, "skip"
    # drops the trajectories that hold any (each source scanned once)
    check_finite: Literal["window", "skip"] = "window"


@_section
class NoiseConfig:
    """Input noise on every auto-regressive step: ``x + s·σ·N(0, 1)`` with σ per sample and channel.

    ``rms``: σ = RMS of the window over space and time (s is a relative size, resolution-free);
    ``norm``: σ = its L2 norm (the paper's parameterisation, 5e-4 ≈ 0.2 RMS at 128²×10).
    """

    kind: Literal["rms", "norm"] = "rms"
    scale: Annotated[Float, Field(ge=0)] = 0.1


@_section
class LossConfig:
    """Masked relative L2. ``score_padded``: score padded channels too (the release's training)."""

    score_padded: Bool = False


def _lora_targets(targets: list[str]) -> list[str]:
    """Kinds and parts are checked here; name globs against the model when applied."""
    if not targets:
        raise ValueError("expected at least one kind, part or name")
    for entry in targets:
        if entry not in (*LORA_KINDS, *PARTS) and not ("." in entry or set("*?[") & set(entry)):
            raise ValueError(
                f"expected kinds {list(LORA_KINDS)}, parts {list(PARTS)} or parameter-name "
                f"globs (blocks.*.mlp.*), got {entry!r}"
            )
    return targets


@_section
class LoRAConfig:
    """Low-rank adapters ``W + (alpha/rank)·B·A`` (``dpot_lab.train.lora``): only they train, plus
    the tensors a fine-tuning transfer left new or adapted. ``targets``: kinds ``linear``,
    ``conv``, ``fourier``, ``time_agg``; parts ``embed``, ``blocks``, ``head``; or parameter-name
    globs/prefixes (``blocks.*.mlp.*``); a weight is adapted when of a listed kind (any if none)
    and in a listed part or name (anywhere if none)."""

    rank: Count = 4
    alpha: Positive = 8.0
    targets: Annotated[list[Str], AfterValidator(_lora_targets)] = dataclasses.field(
        default_factory=lambda: ["linear", "conv", "fourier"]
    )


@_section
class OptimConfig:
    """Adam(W) with the paper's defaults and a per-iteration schedule.

    Schedules: ``onecycle`` (cosine warm-up from lr/div_factor over ``warmup`` of the steps, cosine
    decay to lr/(div_factor·final_div_factor)), ``cosine`` (linear warm-up, same cosine decay),
    ``constant``. ``part_lrs``/``freeze`` name parts ``embed``, ``blocks``, ``head``. ``lora``:
    parameter-efficient fine-tuning (``LoRAConfig``; null: every parameter trains).
    """

    name: Literal["adam", "adamw"] = "adam"
    lr: Positive = 1e-3
    betas: Annotated[
        list[Float],
        rule(lambda b: len(b) == 2 and all(0 <= x < 1 for x in b), "2 floats in [0, 1)"),
    ] = dataclasses.field(default_factory=lambda: [0.9, 0.9])
    weight_decay: Annotated[Float, Field(ge=0)] = 1e-6
    schedule: Literal["onecycle", "cosine", "constant"] = "onecycle"
    warmup: Fraction = 0.2
    div_factor: Positive = 1e4
    final_div_factor: Positive = 1e4
    clip_grad: Positive | None = None
    accumulate: Count = 1
    part_lrs: dict[Part, Positive] = dataclasses.field(default_factory=dict)
    freeze: Annotated[
        list[Part], rule(lambda f: not set(PARTS) <= set(f), f"some of {list(PARTS)} left to train")
    ] = dataclasses.field(default_factory=list)
    lora: None | LoRAConfig = None  # null first: "lora: null" is off, "lora: {}" the defaults


@_section
class EvalConfig:
    """Full-trajectory rollout L2RE per source on the test split (paper protocol).

    ``horizon``: scored steps, capped by each trajectory's length (None: the whole rest).
    ``every``: steps between evaluations (0: only at the end).
    """

    every: Cardinal = 0
    horizon: Count | None = None
    batch_size: Count = 8
    max_samples: Count | None = None  # per source


@_section
class CheckpointConfig:
    """``every`` steps a step checkpoint (0: only at the end); ``keep`` of them are retained."""

    every: Cardinal = 0
    keep: Count = 3


@_section
class SafetyConfig:
    """``max_bad_steps`` consecutive non-finite steps roll back to the last good snapshot (taken
    every ``snapshot_every`` steps) with the learning rate multiplied by ``lr_factor``."""

    max_bad_steps: Count = 3
    lr_factor: Annotated[Float, Field(gt=0, le=1)] = 0.5
    snapshot_every: Count = 50
    max_rollbacks: Cardinal = 20


@_section
class DistributedConfig:
    """Under torchrun: DDP or FSDP (gloo on CPU, NCCL on CUDA); activation checkpointing."""

    backend: Literal["auto", "gloo", "nccl"] = "auto"
    strategy: Literal["ddp", "fsdp"] = "ddp"  # fsdp: weights, grads and Adam state sharded
    activation_checkpointing: Bool = False


@_section
class LogConfig:
    every: Count = 10
    progress: Bool = True


def _is_device(name: str) -> bool:
    try:
        return name == "auto" or bool(torch.device(name))
    except RuntimeError:
        return False


@_section
class TrainConfig:
    """One training run (pre-training or fine-tuning). ``batch_size`` is the global batch."""

    name: Annotated[Str, rule(str.strip, "a non-empty run name")] = "run"
    seed: Cardinal = 0
    steps: Count = 1000
    batch_size: Count = 20
    t_ar: Count = 1  # auto-regressive steps per sample, gradient through the rollout
    t_out: Count = 1  # frames predicted per model call (temporal bundling)
    # auto: CUDA when available
    device: Annotated[
        Str, rule(_is_device, "'auto' or a torch device (cpu, cuda, cuda:1, mps)")
    ] = "auto"
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 autocast on CUDA
    compile: Bool = False
    ema: Annotated[Float, Field(gt=0, lt=1)] | None = None  # EMA decay of the weights (None: off)
    # checkpoint to fine-tune from (ours or the release's): a path, hf://owner/repo/file, or a
    # released DPOT size Ti, S, M, L, H (open_checkpoint reads all three)
    init_from: Str | None = None
    init_allow_partial: Bool = False  # train even when under half of the model is init_from's
    out_dir: Str | None = None
    model: Annotated[_ModelSection, AfterValidator(_as_model_config)] = dataclasses.field(
        default_factory=ModelConfig
    )
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    noise: NoiseConfig = dataclasses.field(default_factory=NoiseConfig)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = dataclasses.field(default_factory=CheckpointConfig)
    safety: SafetyConfig = dataclasses.field(default_factory=SafetyConfig)
    distributed: DistributedConfig = dataclasses.field(default_factory=DistributedConfig)
    log: LogConfig = dataclasses.field(default_factory=LogConfig)

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
        """Validate a nested dict (as YAML gives it) into a config; a section given as null
        takes its defaults."""
        if isinstance(d, dict):
            sections = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]
            d = {k: {} if v is None and k in sections else v for k, v in d.items()}
        try:
            cfg = TypeAdapter(cls).validate_python(d)
        except ValidationError as err:
            raise config_error(err, cls, source) from None
        cfg._source = source
        return cfg

    @classmethod
    def coerce(cls, config: TrainConfig | dict | str | os.PathLike) -> TrainConfig:
        """A validated config from a ``TrainConfig`` (checked again), a dict or a YAML path."""
        if isinstance(config, TrainConfig):
            return cls.from_dict(config.to_dict(), config._source)
        if isinstance(config, dict):
            return cls.from_dict(config)
        if isinstance(config, (str, os.PathLike)):
            return cls.from_yaml(config)
        raise TypeError(
            f"config must be a TrainConfig, dict or YAML path, got {type(config).__name__}"
        )

    @classmethod
    def json_schema(cls) -> dict:
        """The JSON schema of a run config (types, bounds, defaults), e.g. for an editor."""
        return TypeAdapter(cls).json_schema()

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

    # ------------------------------------------------------------------ rules between fields
    def __post_init__(self) -> None:
        """Each rule's error names its key; pydantic runs this after the fields are valid."""
        o, d = self.optim, self.data
        if self.batch_size % o.accumulate:
            raise ValueError(
                f"batch_size: expected a multiple of optim.accumulate={o.accumulate}, "
                f"got {self.batch_size}"
            )
        for key in ("freeze", "part_lrs"):
            if o.lora is not None and getattr(o, key):
                raise ValueError(
                    f"optim.{key}: expected nothing with optim.lora (LoRA freezes the base "
                    f"weights itself), got {getattr(o, key)}"
                )
        for key, given in (("weights", d.weights), ("n_test", d.n_test)):
            if isinstance(given, list) and len(given) != len(d.sources):
                what = "weight" if key == "weights" else "count"
                raise ValueError(
                    f"data.{key}: expected one {what} per source ({len(d.sources)}), "
                    f"got {len(given)}"
                )
        self._check_model()

    def _check_model(self) -> None:
        given, preset = self.model.overrides, self.model.preset
        if preset is None and self.init_from is None:
            raise ValueError("model.preset: expected a preset name (null needs init_from)")
        # null preset: the checkpoint says 2D or 3D, so the data may give 2 or 3 sizes
        n_spatial = given.get("n_spatial", 2 if preset else None)
        res = self.data.resolution
        if (
            isinstance(res, list)
            and len(res) != n_spatial
            and not (n_spatial is None and len(res) in (2, 3))
        ):
            raise ValueError(
                f"data.resolution: expected an int or {n_spatial or '2 or 3'} ints "
                f"(model.n_spatial={n_spatial}), got {res}"
            )
        derived = self.derived_model_fields()
        for key, data_key in DERIVED_MODEL_FIELDS.items():
            mine, value = given.get(key), derived.get(key, "null (from the data)")
            if mine is not None and not _same_size(mine, value, n_spatial):
                raise ValueError(
                    f"model.{key}: {mine} differs from {data_key}={value}; leave it out (it "
                    "follows that key)"
                )
        if preset is not None:  # the sizes together: grid / patch, widths
            self._model_config(None, partial=True)

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
        except ValueError as err:
            own = str(err).split(":", 1)[0] in DPOTConfig.__pydantic_fields__
            raise ValueError(f"model.{err}" if own else f"model: {err}") from None


def _same_size(a: Any, b: Any, n_spatial: int | None) -> bool:
    """Whether two sizes (ints, or an int and a grid) are the same for ``n_spatial`` axes."""
    n = next((len(v) for v in (a, b) if isinstance(v, (list, tuple))), n_spatial or 2)
    try:
        return size_tuple(a, n) == size_tuple(b, n)
    except ValueError:
        return False


__all__ = [
    "CheckpointConfig", "ConfigError", "DataConfig", "DistributedConfig", "EvalConfig",
    "GeneratorSpec", "LoRAConfig", "LogConfig", "LossConfig", "ModelConfig", "NoiseConfig",
    "OptimConfig", "SafetyConfig", "TrainConfig", "parse_setting",
]  # fmt: skip
