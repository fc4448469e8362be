"""Assembling a run: everything the training loop needs, built and checked before the run
directory changes. ``Trainer(config, ...)`` calls ``assemble`` and then owns the loop.

    parts = assemble("configs/tiny_cpu.yaml", run_dir="runs/tiny")  # locked, nothing written
    parts.model, parts.loader, parts.optimizer, parts.resume_state   # what the Trainer runs on

Order, so that a mistake costs nothing: the config is validated; the run directory is locked
(main rank; ``run.lock``); a directory holding checkpoints is refused unless ``resume`` (its
``last.pt`` is read) or ``overwrite``; the ``init_from`` file is read once; the model, the data
(every trajectory checked readable and finite), the loader, the optimizer, the schedule, EMA
and the divergence guard are built. When any step fails the lock is released and the folder
removed again when the lock made it and nothing was written there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from dpot_lab.data.loader import RunLoader
from dpot_lab.data.mixture import Mixture
from dpot_lab.data.resident import run_loader
from dpot_lab.models.checkpoint import Opened, open_checkpoint
from dpot_lab.models.dpot import DPOT, build_model
from dpot_lab.train import distributed
from dpot_lab.train.checkpointing import RunCheckpoints
from dpot_lab.train.config import ConfigError, TrainConfig
from dpot_lab.train.ema import EMA
from dpot_lab.train.finetune import TransferReport, param_groups, transfer_weights
from dpot_lab.train.lora import LoRAReport, apply_lora_config, trainable_parameters
from dpot_lab.train.rundir import RunLock, set_aside_runs
from dpot_lab.train.safety import DivergenceGuard
from dpot_lab.train.schedule import LRSchedule
from dpot_lab.train.sources import run_data, with_data_sizes


@dataclass
class RunParts:
    """What ``assemble`` built for one run; nothing in the run directory is written yet."""

    config: TrainConfig  # validated, the sizes from the data filled
    dist: distributed.DistInfo
    run_dir: Path
    checkpoints: RunCheckpoints
    lock: RunLock | None  # held on the main rank, None on the others
    micro_batch: int  # windows per rank and accumulation step
    amp_dtype: torch.dtype | None  # the autocast precision of training (None: float32)
    model: DPOT
    parallel: nn.Module  # the model as DDP wraps or FSDP shards it (the model on one process)
    train_model: nn.Module  # ``parallel``, compiled when ``config.compile``
    transfer_report: TransferReport | None  # what ``init_from`` gave
    lora_report: LoRAReport | None  # what ``optim.lora`` added
    train_data: Dataset
    test_data: dict[str, Dataset]
    loader: RunLoader
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    ema: EMA | None
    guard: DivergenceGuard
    resume_state: dict | None  # the checkpoint to resume from (``resume``), else None
    eval_copy: bool  # FSDP gathers the blocks' weights in bf16: evaluate on a float32 copy


def assemble(
    config: TrainConfig | dict | str | os.PathLike,
    run_dir: str | os.PathLike | None = None,
    train_data: Dataset | None = None,
    test_data: dict[str, Dataset] | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> RunParts:
    """Build and check one run as the module docstring says (arguments as ``Trainer``'s).

    Raises ``ConfigError`` when the global batch does not divide into processes × accumulation
    steps, ``FileExistsError`` for a run directory with checkpoints and neither ``resume`` nor
    ``overwrite``, ``FileNotFoundError`` on ``resume`` without a checkpoint (naming an earlier
    run that ``overwrite`` set aside), and what reading the data or ``init_from`` raises."""
    cfg = TrainConfig.coerce(config)  # validated before any data is read
    dist = distributed.setup(cfg.device, cfg.distributed.backend)
    world, accum = dist.world_size, cfg.optim.accumulate
    if cfg.batch_size % (world * accum):
        raise ConfigError(
            f"batch_size: the global batch {cfg.batch_size} must divide into {world} "
            f"processes x {accum} accumulation steps"
        )
    run_dir = Path(run_dir or cfg.out_dir or Path("runs") / cfg.name)
    checkpoints = RunCheckpoints(run_dir, cfg.checkpoint.keep)
    lock = RunLock(run_dir) if dist.is_main else None
    try:
        if not (resume or overwrite) and checkpoints.step_files():
            raise FileExistsError(
                f"{run_dir} holds checkpoints of an earlier run: resume it (resume=True, "
                "--resume), overwrite it (overwrite=True, --overwrite) or choose another run "
                "directory"
            )
        resume_state = _read_resume(checkpoints, run_dir) if resume else None
        return _build(cfg, dist, run_dir, checkpoints, lock, resume_state, train_data, test_data)
    except BaseException:
        if lock is not None:
            lock.release(remove_dir=True)
        raise


def _read_resume(checkpoints: RunCheckpoints, run_dir: Path) -> dict:
    """The checkpoint to resume from (``RunCheckpoints.read_last``), the error naming an earlier
    run that ``overwrite`` set aside when there is none."""
    try:
        return checkpoints.read_last()
    except FileNotFoundError as err:
        aside = set_aside_runs(run_dir)
        if not aside:
            raise
        raise FileNotFoundError(
            f"{err}; the earlier run set aside by --overwrite is in {aside[-1]}"
        ) from None


def _build(
    cfg: TrainConfig,
    dist: distributed.DistInfo,
    run_dir: Path,
    checkpoints: RunCheckpoints,
    lock: RunLock | None,
    resume_state: dict | None,
    train_data: Dataset | None,
    test_data: dict[str, Dataset] | None,
) -> RunParts:
    """The model, data, loader, optimizer and state of the run, the data checked whole."""
    device = dist.device
    use_bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")
    torch.manual_seed(cfg.seed)
    opened = open_checkpoint(cfg.init_from) if cfg.init_from else None  # read once
    cfg = with_data_sizes(cfg, opened and opened.config, dist.is_main, given=train_data)
    model, transfer, lora = _build_model(cfg, opened)
    model.to(device)
    if cfg.distributed.activation_checkpointing:
        distributed.enable_activation_checkpointing(model)
    # DDP wraps the model; FSDP shards it in place, so the optimizer comes after
    strategy, amp_dtype = cfg.distributed.strategy, torch.bfloat16 if use_bf16 else None
    parallel = distributed.parallelize(model, dist, strategy, amp_dtype)
    train_data, test_data = _data(cfg, dist, train_data, test_data)
    micro_batch = cfg.batch_size // (dist.world_size * cfg.optim.accumulate)
    gb = cfg.data.resident_gb
    loader = run_loader(
        train_data, micro_batch, cfg.data.placement, device,
        None if gb is None else int(gb * 2**30), distributed=dist.distributed, seed=cfg.seed,
        progress=cfg.log.progress and dist.is_main, num_workers=cfg.data.num_workers,
        pin_memory=device.type == "cuda",
    )  # fmt: skip
    optimizer = _build_optimizer(model, cfg)
    o = cfg.optim
    schedule = LRSchedule(optimizer, cfg.steps, o.schedule, o.warmup, o.div_factor,
                          o.final_div_factor)  # fmt: skip
    ema = EMA(model, cfg.ema) if cfg.ema else None
    return RunParts(
        config=cfg, dist=dist, run_dir=run_dir, checkpoints=checkpoints, lock=lock,
        micro_batch=micro_batch, amp_dtype=amp_dtype, model=model,
        parallel=parallel, train_model=torch.compile(parallel) if cfg.compile else parallel,
        transfer_report=transfer, lora_report=lora, train_data=train_data, test_data=test_data,
        loader=loader, optimizer=optimizer, schedule=schedule, ema=ema,
        guard=DivergenceGuard(model, optimizer, schedule, cfg.safety, ema),
        resume_state=resume_state,
        eval_copy=dist.distributed and strategy == "fsdp" and use_bf16,
    )  # fmt: skip


def _data(
    cfg: TrainConfig,
    dist: distributed.DistInfo,
    train_data: Dataset | None,
    test_data: dict[str, Dataset] | None,
) -> tuple[Dataset, dict[str, Dataset]]:
    """The given datasets, the config's sources for those not given; every trajectory of every
    Mixture checked readable and finite (a bad frame fails now, not hours in)."""
    if train_data is None or test_data is None:
        data = run_data(cfg, dist.is_main)
        train_data = data.train if train_data is None else train_data
        test_data = data.test if test_data is None else test_data
    for ds in (train_data, *test_data.values()):
        if isinstance(ds, Mixture):
            ds.validate(cfg.log.progress and dist.is_main)
    return train_data, test_data


def _build_model(
    cfg: TrainConfig, opened: Opened | None
) -> tuple[DPOT, TransferReport | None, LoRAReport | None]:
    """The run's model: the preset or the architecture of ``opened`` (``init_from``), filled
    from its weights, with LoRA adapters when ``optim.lora`` asks."""
    if cfg.model.preset is None and opened.config is None:
        raise ConfigError(
            f"{cfg._source}: model.preset: null takes the architecture of init_from, but "
            f"{opened.description} does not tell it: name a preset"
        )
    model = build_model(cfg.model_config(opened.config if opened is not None else None))
    transfer = (
        transfer_weights(model, opened, allow_partial=cfg.init_allow_partial)
        if opened is not None
        else None
    )
    lora = apply_lora_config(model, cfg.optim.lora, transfer) if cfg.optim.lora else None
    return model, transfer, lora


def _build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam or AdamW over the trainable parameters (LoRA), the parts' groups (``part_lrs``,
    ``freeze``) or all parameters; the fused kernel where the device has one."""
    o = cfg.optim
    if o.lora is not None:
        groups = [{"params": trainable_parameters(model), "lr": o.lr}]
    elif o.part_lrs or o.freeze:
        groups = param_groups(model, o.lr, o.part_lrs, o.freeze, o.weight_decay)
    else:
        groups = [{"params": list(model.parameters()), "lr": o.lr}]
    cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
    kwargs = dict(lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)
    try:  # the fused kernel (CUDA, and CPU in recent torch) is several times faster
        return cls(groups, fused=True, **kwargs)
    except (RuntimeError, TypeError):
        return cls(groups, **kwargs)
