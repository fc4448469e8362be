"""The denoising trainer: one loop for pre-training and fine-tuning, in a notebook or torchrun.

    import dpot_lab as dl
    trainer = dl.train.Trainer("configs/tiny_cpu.yaml", callbacks=[print])
    trainer.fit()                      # train, evaluate, checkpoint; returns the metric records
    trainer.evaluate()                 # {source: {"l2re", "persistence"}} on the test split

Each optimizer step takes the global ``batch_size`` windows (``batch_size / world_size`` per rank,
in ``optim.accumulate`` micro-batches), and for each of ``t_ar`` auto-regressive steps adds noise to
the current window, predicts ``t_out`` frames and scores them with the masked relative L2; the
prediction is fed back with its gradient. A non-finite loss or gradient skips the step;
``safety.max_bad_steps`` in a row restore the last in-memory snapshot with a lowered learning rate.

A run directory holds ``config.yaml`` (resolved), ``metrics.jsonl`` (one JSON object per logged
step: ``event``, ``step``, ``loss``, ``lr``, ``samples_per_s``, ...; evaluations add ``l2re`` and
``l2re_persistence`` per source) and ``checkpoints/{last,best,step_N}.pt`` (``dl.load_checkpoint``
reads them; the optimizer, schedule, RNG and data position ride along for ``resume``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset
from tqdm.auto import tqdm

from dpot_lab.evaluate.rollout import autoregress
from dpot_lab.models.checkpoint import FORMAT, safe_load
from dpot_lab.models.dpot import DPOT, DPOTConfig, build_model
from dpot_lab.train import distributed
from dpot_lab.train.checkpointing import RunCheckpoints, rng_state, set_rng_state
from dpot_lab.train.config import ConfigError, TrainConfig
from dpot_lab.train.loss import masked_relative_l2, relative_l2
from dpot_lab.train.noise import add_noise, sample_key
from dpot_lab.train.schedule import LRSchedule

log = logging.getLogger(__name__)
Callback = Callable[[dict], Any]


# ---------------------------------------------------------------------- helpers
def _all_finite(tensors: Sequence[torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())


class _Epochs(Dataset):
    """The items of a mixture over consecutive epochs: index ``e·N + i`` is item i of epoch e.

    One DataLoader (and one set of worker processes) then serves the whole run, instead of
    new workers for every epoch; items depend on (seed, epoch, index) only, so they are the same.
    """

    def __init__(self, mixture: Dataset):
        self.mixture, self.n = mixture, len(mixture)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict:
        epoch, i = divmod(index, self.n)
        if self.mixture.epoch != epoch:
            self.mixture.set_epoch(epoch)
        return self.mixture[i]


class _EpochBatches(Sampler):
    """Batches of ``_Epochs`` indices from (epoch, batch) on, each epoch in the order that the
    mixture's own sampler (from ``make_loader``: shuffled by seed and epoch, sharded over ranks)
    gives; the last incomplete batch of an epoch is dropped, as ``make_loader`` does."""

    def __init__(self, mixture: Dataset, sampler: Sampler, batch_size: int, epoch: int, batch: int):
        self.mixture, self.sampler, self.batch_size = mixture, sampler, batch_size
        self.epoch, self.batch = epoch, batch

    def per_epoch(self) -> int:
        return len(self.sampler) // self.batch_size

    def __iter__(self) -> Iterator[list[int]]:
        epoch, skip, n, bs = self.epoch, self.batch, len(self.mixture), self.batch_size
        while True:
            self.mixture.set_epoch(epoch)  # the sampler shuffles by the mixture's epoch
            order = list(self.sampler)
            for b in range(skip, len(order) // bs):
                yield [epoch * n + i for i in order[b * bs : (b + 1) * bs]]
            epoch, skip = epoch + 1, 0


class _Meter:
    """Training speed and mean loss over a logging interval, pauses excluded."""

    def __init__(self):
        self.start, self.steps, self.good, self.loss = time.perf_counter(), 0, 0, 0.0

    def add(self, rec: dict) -> None:
        self.steps += 1
        if rec["ok"]:
            self.good, self.loss = self.good + 1, self.loss + rec["loss"]

    def read(self, batch_size: int) -> dict:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        out = {
            "loss_avg": self.loss / max(self.good, 1),
            "samples_per_s": self.steps * batch_size / elapsed,
        }
        self.__init__()
        return out

    @contextmanager
    def paused(self):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.start += time.perf_counter() - t


def source_model_config(path: str | os.PathLike) -> DPOTConfig:
    """The architecture stored in a checkpoint (ours or the DPOT release's)."""
    from dpot_lab.models.official import infer_release_config, release_to_config

    obj = safe_load(path)
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        return DPOTConfig.from_dict(obj["config"])
    state = obj.get("model", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: neither a dpot-lab nor a DPOT release checkpoint")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    kw, _ = infer_release_config(state, str(path))
    return release_to_config(kw, state["pos_embed"].dim() - 2)


# ---------------------------------------------------------------------- the trainer
class Trainer:
    """Train a DPOT model as ``config`` says (a ``TrainConfig``, a dict or a YAML path).

    ``callbacks``: functions called on the main rank with every event dict (``event`` is one of
    "step", "train", "eval", "skip", "rollback", "checkpoint", "transfer", "end").
    ``train_data`` / ``test_data``: datasets to use instead of the config's sources (a Mixture in
    window mode; a dict name -> Mixture in trajectory mode). ``resume``: continue the run in
    ``run_dir`` from ``checkpoints/last.pt`` exactly (weights, optimizer, schedule, RNG, data
    order). A run directory that holds checkpoints is refused unless ``resume`` or ``overwrite``.
    """

    def __init__(
        self,
        config: TrainConfig | dict | str | os.PathLike,
        callbacks: Sequence[Callback] = (),
        run_dir: str | os.PathLike | None = None,
        train_data: Dataset | None = None,
        test_data: dict[str, Dataset] | None = None,
        resume: bool = False,
        overwrite: bool = False,
    ):
        cfg = self.config = TrainConfig.coerce(config)  # validated before any data is read
        self.callbacks = list(callbacks)
        self.dist = distributed.setup(cfg.device, cfg.distributed.backend)
        self.device = self.dist.device
        world, accum = self.dist.world_size, cfg.optim.accumulate
        if cfg.batch_size % (world * accum):
            raise ConfigError(
                f"batch_size: the global batch {cfg.batch_size} must divide into {world} "
                f"processes x {accum} accumulation steps"
            )
        self.micro_batch = cfg.batch_size // (world * accum)
        self.run_dir = Path(run_dir or cfg.out_dir or Path("runs") / cfg.name)
        self.checkpoints = RunCheckpoints(self.run_dir, cfg.checkpoint.keep)
        if not (resume or overwrite) and self.checkpoints.step_files():
            raise FileExistsError(
                f"{self.run_dir} holds checkpoints of an earlier run: resume it (resume=True, "
                "--resume), overwrite it (overwrite=True, --overwrite) or choose another run "
                "directory"
            )
        if overwrite and not resume:
            shutil.rmtree(self.checkpoints.dir, ignore_errors=True)
        resume_state = self.checkpoints.read_last() if resume else None
        use_bf16 = cfg.precision == "bf16" or (
            cfg.precision == "auto" and self.device.type == "cuda"
        )
        self.amp_dtype = torch.bfloat16 if use_bf16 else None
        torch.manual_seed(cfg.seed)

        self.model, self.transfer_report = self._build_model()
        self.model.to(self.device)
        if cfg.distributed.activation_checkpointing:
            distributed.enable_activation_checkpointing(self.model)
        # DDP wraps the model; FSDP shards it in place, so the optimizer comes after
        self.parallel = distributed.parallelize(self.model, self.dist, cfg.distributed.strategy)
        self.source_names: list[str] = list(getattr(train_data, "source_names", []))
        self.train_data = train_data if train_data is not None else self._train_mixture()
        self.test_data = test_data if test_data is not None else self._test_sets()
        self.optimizer = self._build_optimizer()
        o = cfg.optim
        self.schedule = LRSchedule(
            self.optimizer, cfg.steps, o.schedule, o.warmup, o.div_factor, o.final_div_factor
        )
        self.ema = (
            {k: v.detach().clone() for k, v in self.model.state_dict().items()} if cfg.ema else None
        )

        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.best = math.inf
        self.skipped, self.rollbacks, self.bad_streak = 0, 0, 0
        self.last_eval: dict[str, dict[str, float]] = {}
        self.history: list[dict] = []
        if resume_state is not None:
            self._load_state(resume_state)
        self._snapshot = self._take_snapshot()
        self.train_model = torch.compile(self.parallel) if cfg.compile else self.parallel
        self._batches: Iterator[dict] | None = None
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            cfg.to_yaml(self.run_dir / "config.yaml")
            self._trim_metrics()
            if self.transfer_report is not None:
                table = self.transfer_report.table()
                (self.run_dir / "transfer.txt").write_text(table + "\n")
                log.info("weights from %s:\n%s", cfg.init_from, table)
                self._emit({"event": "transfer", "step": self.step, "table": table})

    # ------------------------------------------------------------------ building
    def _build_model(self) -> tuple[DPOT, Any]:
        cfg = self.config
        base = source_model_config(cfg.init_from) if cfg.model.preset is None else None
        model = build_model(cfg.model_config(base))
        report = None
        if cfg.init_from:
            from dpot_lab.train.finetune import transfer_weights

            report = transfer_weights(model, cfg.init_from)
        return model, report

    def _resolve_sources(self, sources: list) -> dict[str, Any]:
        """Config sources -> {name: path}; generator specs are generated (rank 0) and cached."""
        cache = self.config.data.cache_dir
        specs = [s for s in sources if isinstance(s, dict)]
        if specs:
            from dpot_lab.data.generation import generate_cached

            if self.dist.is_main:  # rank 0 generates, the others then find the cache
                for spec in specs:
                    generate_cached(dict(spec), cache_dir=cache)
            distributed.barrier()
        named: dict[str, Any] = {}
        for src in sources:
            if isinstance(src, dict):
                name, path = str(src["generate"]), generate_cached(dict(src), cache_dir=cache)
            else:
                if not any(c in src for c in "*?[") and not Path(src).exists():
                    raise FileNotFoundError(
                        f"{self.config._source}: data: source {src} does not exist"
                    )
                glob = any(c in Path(src).name for c in "*?[")  # per-sample files: their folder
                name, path = (Path(src).parent.name if glob else Path(src).stem), src
            base, k = name, 2
            while name in named:
                name, k = f"{base}_{k}", k + 1
            named[name] = path
        return named

    def _train_mixture(self) -> Dataset:
        from dpot_lab.data.mixture import Mixture

        d, cfg = self.config.data, self.config
        sources = self._resolve_sources(d.sources)
        if not sources:
            raise ConfigError("data.sources: expected at least one path or generator spec")
        self._named_sources = sources
        mixture = Mixture(
            sources,
            weights=d.weights,
            resolution=d.resolution,
            t_in=d.t_in,
            t_out=cfg.t_ar * cfg.t_out,
            channels=d.channels,
            split="train",
            test_fraction=d.test_fraction,
            n_test=d.n_test,
            mode="window",
            pad_value=d.pad_value,
            seed=cfg.seed,
        )
        self.source_names = list(mixture.source_names)
        return mixture

    def _test_sets(self) -> dict[str, Dataset]:
        """One trajectory-mode Mixture per source: the test split, or ``data.test_sources``."""
        from dpot_lab.data.mixture import Mixture

        d = self.config.data
        if d.test_sources is not None:
            sources, split = self._resolve_sources(d.test_sources), "all"
        else:
            sources, split = getattr(self, "_named_sources", {}), "test"
        sets = {}
        counts = d.n_test if isinstance(d.n_test, list) else [d.n_test] * len(sources)
        n_test = dict(zip(sources, counts, strict=False))  # split "all" ignores them
        for name, src in sources.items():
            kwargs = dict(resolution=d.resolution, t_in=d.t_in, t_out=1, channels=d.channels)
            try:
                sets[name] = Mixture(
                    {name: src}, split=split, test_fraction=d.test_fraction, n_test=n_test[name],
                    mode="trajectory", pad_value=d.pad_value, **kwargs,
                )  # fmt: skip
            except ValueError as err:
                if "split is empty" not in str(err):
                    raise
                log.warning("source %s has no test trajectories: not evaluated", name)
        return sets

    def _build_optimizer(self) -> torch.optim.Optimizer:
        o = self.config.optim
        if o.part_lrs or o.freeze:
            from dpot_lab.train.finetune import param_groups

            groups = param_groups(self.model, o.lr, o.part_lrs, o.freeze, o.weight_decay)
        else:
            groups = [{"params": list(self.model.parameters()), "lr": o.lr}]
        cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
        kwargs = dict(lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)
        try:  # the fused kernel (CUDA, and CPU in recent torch) is several times faster
            return cls(groups, fused=True, **kwargs)
        except (RuntimeError, TypeError):
            return cls(groups, **kwargs)

    # ------------------------------------------------------------------ events and logs
    def _emit(self, event: dict) -> None:
        if not self.dist.is_main:
            return
        for fn in self.callbacks:
            fn(event)

    def _record(self, record: dict) -> None:
        """Append a record to metrics.jsonl and the history; pass it to the callbacks."""
        self.history.append(record)
        if self.dist.is_main:
            with open(self.run_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
        self._emit(record)

    def _trim_metrics(self) -> None:
        """Keep only the records up to the current step (a resume redoes the rest)."""
        path = self.run_dir / "metrics.jsonl"
        if not path.exists():
            return
        kept = [
            ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["step"] <= self.step
        ]
        path.write_text("".join(ln + "\n" for ln in kept))

    # ------------------------------------------------------------------ data
    def _batch_stream(self) -> Iterator[dict]:
        """Micro-batches forever, epoch after epoch, from the saved (epoch, batch) position;
        ``self.epoch`` and ``self.batch_in_epoch`` count what has been consumed."""
        from dpot_lab.data.mixture import make_loader

        loader = make_loader(
            self.train_data,
            batch_size=self.micro_batch,
            num_workers=self.config.data.num_workers,
            shuffle=True,
            distributed=self.dist.distributed,
            seed=self.config.seed,
            drop_last=True,
            pin_memory=self.device.type == "cuda",
        )
        batches = _EpochBatches(
            self.train_data, loader.sampler, self.micro_batch, self.epoch, self.batch_in_epoch
        )
        if batches.per_epoch() == 0:
            raise ValueError(
                f"the training data has {len(self.train_data)} windows per epoch, fewer than "
                f"one micro-batch of {self.micro_batch} per process"
            )
        epochs = DataLoader(
            _Epochs(self.train_data),
            batch_sampler=batches,
            num_workers=loader.num_workers,
            collate_fn=loader.collate_fn,
            pin_memory=loader.pin_memory,
        )
        for batch in epochs:
            self.batch_in_epoch += 1
            if self.batch_in_epoch == batches.per_epoch():
                self.epoch, self.batch_in_epoch = self.epoch + 1, 0
            yield batch

    def _to_device(self, batch: dict) -> tuple[torch.Tensor, ...]:
        x = batch["x"].to(self.device, non_blocking=True)  # (B, *S, t_in, C)
        y = batch["y"].to(self.device, non_blocking=True)  # (B, *S, t_ar·t_out, C)
        cm = batch["channel_mask"].to(self.device)  # (B, C)
        gm = batch["grid_mask"].to(self.device)  # (B, *S)
        c = self.model.config.in_channels
        if x.shape[-1] != c:
            raise ValueError(f"training data has {x.shape[-1]} channels, the model takes {c}")
        return x, y, cm, gm

    # ------------------------------------------------------------------ one step
    def _autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def rollout_loss(
        self,
        model: torch.nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        channel_mask: torch.Tensor,
        grid_mask: torch.Tensor,
        positions: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Mean over the ``t_ar`` steps of the masked relative L2 of noisy-input predictions.

        x (B, *S, t_in, C), y (B, *S, t_ar·t_out, C); ``positions``: each sample's place in the
        global batch, which keys its noise (None: the global RNG).
        """
        cfg, t_in = self.config, x.shape[-2]
        cm = channel_mask.view(channel_mask.shape[0], *(1,) * (x.dim() - 2), -1)  # (B, 1.., C)
        window, losses = x, []
        for k in range(cfg.t_ar):
            keys = None
            if positions is not None and cfg.noise.scale > 0:
                keys = [sample_key(cfg.seed, self.step, k, p) for p in positions]
            noisy = add_noise(window, cfg.noise.kind, cfg.noise.scale, channel_mask, keys)
            pred = model(noisy)  # (B, *S, t_out, C)
            if not cfg.loss.score_padded:
                pred = torch.where(cm, pred, torch.full_like(pred, cfg.data.pad_value))
            target = y[..., k * cfg.t_out : (k + 1) * cfg.t_out, :]
            losses.append(
                masked_relative_l2(pred, target, channel_mask, grid_mask, cfg.loss.score_padded)
            )
            if k + 1 < cfg.t_ar:
                window = torch.cat([window, pred.to(window.dtype)], dim=-2)[..., -t_in:, :]
        return torch.stack(losses).mean()

    def _grad_norm(self) -> torch.Tensor:
        params = [p for p in self.model.parameters() if p.grad is not None]
        clip = self.config.optim.clip_grad  # None: the norm is only measured
        norm = torch.nn.utils.clip_grad_norm_(params, clip if clip is not None else math.inf)
        return distributed.full(norm)  # FSDP: the norm over every rank's shards

    def train_step(self) -> dict:
        """One optimizer step (or a skipped one); returns its record."""
        cfg, world, rank = self.config, self.dist.world_size, self.dist.rank
        if self._batches is None:
            self._batches = self._batch_stream()
        self.train_model.train()
        self.optimizer.zero_grad(set_to_none=True)
        accum, total = cfg.optim.accumulate, torch.zeros((), device=self.device)
        for m in range(accum):
            x, y, cm, gm = self._to_device(next(self._batches))
            # place in the global batch under the distributed sampler's interleaving
            positions = [rank + world * (m * self.micro_batch + i) for i in range(x.shape[0])]
            with distributed.local_gradients(self.parallel, active=m + 1 < accum):
                with self._autocast():
                    loss = self.rollout_loss(self.train_model, x, y, cm, gm, positions)
                (loss / accum).backward()
            total += loss.detach()
        grad_norm = self._grad_norm()
        stats = distributed.all_reduce(torch.stack([total / accum, grad_norm.float()]), op="mean")
        loss_value, norm_value = stats.tolist()
        lr = self.schedule.get_last_lr()[0]
        ok = math.isfinite(loss_value) and math.isfinite(norm_value)
        if ok:
            if self.step % cfg.safety.snapshot_every == 0:  # weights known to give a finite step
                self._snapshot = self._take_snapshot()
            self.optimizer.step()
            self._update_ema()
            self.bad_streak = 0
        else:
            self.optimizer.zero_grad(set_to_none=True)
            self.skipped += 1
            self.bad_streak += 1
        self.schedule.step()
        self.step += 1
        return {"step": self.step, "loss": loss_value, "grad_norm": norm_value, "lr": lr, "ok": ok}

    # ------------------------------------------------------------------ safety
    def _take_snapshot(self) -> dict:
        """CPU copies of this rank's weights, optimizer state and EMA (its shards under FSDP)."""
        return distributed.local_copy(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "ema": self.ema,
                "step": self.step,
            }
        )

    def _restore_snapshot(self) -> None:
        """Put the snapshot back in place (no communication: each rank restores its part)."""
        snap, opt = self._snapshot, self.optimizer
        distributed.copy_into(self.model.state_dict(), snap["model"])
        params = [p for group in opt.param_groups for p in group["params"]]
        for i, p in enumerate(params):  # the state dict numbers parameters in this order
            if i in snap["optimizer"]["state"]:
                distributed.copy_into(opt.state[p], snap["optimizer"]["state"][i])
            else:  # no step had been taken then
                opt.state.pop(p, None)
        for group, saved in zip(opt.param_groups, snap["optimizer"]["param_groups"], strict=True):
            group.update({k: v for k, v in saved.items() if k != "params"})
        if self.ema is not None:
            distributed.copy_into(self.ema, snap["ema"])

    def _rollback(self) -> None:
        s = self.config.safety
        self.rollbacks += 1
        if self.rollbacks > s.max_rollbacks:
            raise RuntimeError(
                f"training diverged: {self.rollbacks - 1} rollbacks did not help (step "
                f"{self.step}); lower optim.lr or check the data"
            )
        self._restore_snapshot()
        self.schedule.lower(s.lr_factor)
        self.bad_streak = 0
        log.warning(
            "step %d: %d non-finite steps in a row; rolled back to the weights of step %d, "
            "learning rate x%g (now x%g of the schedule)",
            self.step, s.max_bad_steps, self._snapshot["step"], s.lr_factor, self.schedule.scale,
        )  # fmt: skip
        self._record(
            {
                "event": "rollback", "step": self.step, "loss": math.nan,
                "to_step": self._snapshot["step"], "lr_scale": self.schedule.scale,
                "rollbacks": self.rollbacks,
            }
        )  # fmt: skip

    def weights_finite(self) -> bool:
        """Whether every weight is finite, on every rank (collective)."""
        mine = _all_finite([distributed.local(v) for v in self.model.state_dict().values()])
        bad = distributed.all_reduce(torch.tensor(float(not mine), device=self.device))
        return bad.item() == 0

    # ------------------------------------------------------------------ EMA
    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.ema is None:
            return
        decay = self.config.ema
        for k, v in self.model.state_dict().items():
            if v.is_floating_point():
                self.ema[k].lerp_(v, 1 - decay)
            else:
                self.ema[k].copy_(v)

    def _full_ema(self) -> dict[str, torch.Tensor]:
        """The EMA weights, whole, on the CPU (collective under FSDP)."""
        return {k: distributed.full(v).cpu() for k, v in self.ema.items()}

    @contextmanager
    def _eval_weights(self):
        """The EMA weights in the model for the duration (when EMA is on)."""
        if self.ema is None:
            yield
            return
        live = self.model.state_dict()
        saved = {k: distributed.local(v).clone() for k, v in live.items()}
        distributed.copy_into(live, {k: distributed.local(v) for k, v in self.ema.items()})
        try:
            yield
        finally:
            distributed.copy_into(live, saved)

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self, horizon: int | None = None, max_samples: int | None = None) -> dict:
        """Rollout L2RE per source on the test sets (paper protocol) and the persistence baseline.

        The first ``t_in`` frames go in without noise; the model rolls out ``horizon`` steps
        (default ``eval.horizon``; capped by the trajectory); the relative L2 is taken over all
        rollout steps jointly per sample and channel, averaged over channels, then samples.
        Returns ``{source: {"l2re": float, "persistence": float, "samples": int}}``.
        """
        cfg = self.config
        horizon = horizon if horizon is not None else cfg.eval.horizon
        max_samples = max_samples if max_samples is not None else cfg.eval.max_samples
        t_in, world, rank = cfg.data.t_in, self.dist.world_size, self.dist.rank
        results = {}
        was_training = self.model.training
        self.model.eval()
        with self._eval_weights():
            for name, ds in self.test_data.items():
                n = len(ds) if max_samples is None else min(len(ds), max_samples)
                mine = list(range(rank, n, world))
                count = len(mine)  # the samples this rank scores; every rank runs as many
                mine += [0] * (-(-n // world) - count)  # batches (FSDP gathers in each one)
                sums = torch.zeros(3, dtype=torch.float64, device=self.device)
                seen = 0
                for batch in DataLoader(Subset(ds, mine), batch_size=cfg.eval.batch_size):
                    traj = batch["x"].to(self.device)  # (B, *S, T, C)
                    keep = torch.arange(seen, seen + traj.shape[0], device=self.device) < count
                    seen += traj.shape[0]
                    cm, gm = (
                        batch["channel_mask"].to(self.device),
                        batch["grid_mask"].to(self.device),
                    )
                    steps = (
                        traj.shape[-2] - t_in
                        if horizon is None
                        else min(horizon, traj.shape[-2] - t_in)
                    )
                    truth = traj[..., t_in : t_in + steps, :]
                    with self._autocast():
                        pred = autoregress(
                            self.model, traj[..., :t_in, :], steps, cm[0], cfg.data.pad_value
                        )
                    still = traj[..., t_in - 1 : t_in, :].expand_as(truth)
                    sums[0] += (relative_l2(pred.float(), truth, cm, gm) * keep).sum().double()
                    sums[1] += (relative_l2(still, truth, cm, gm) * keep).sum().double()
                    sums[2] += keep.sum()
                distributed.all_reduce(sums)
                s = sums.tolist()
                if s[2] > 0:
                    results[name] = {
                        "l2re": s[0] / s[2],
                        "persistence": s[1] / s[2],
                        "samples": int(s[2]),
                    }
        self.model.train(was_training)
        return results

    def _evaluate_and_log(self, loss: float) -> float | None:
        """Evaluate, log the record, and return the mean L2RE over sources (None: no test data)."""
        if not self.test_data:
            return None
        res = self.evaluate()
        if not res:
            return None
        self.last_eval = res
        mean = sum(r["l2re"] for r in res.values()) / len(res)
        self._record(
            {
                "event": "eval", "step": self.step, "loss": loss,
                "l2re": {k: r["l2re"] for k, r in res.items()},
                "l2re_persistence": {k: r["persistence"] for k, r in res.items()},
                "l2re_mean": mean,
            }
        )  # fmt: skip
        summary = ", ".join(
            f"{k} {r['l2re']:.4f} (persistence {r['persistence']:.4f})" for k, r in res.items()
        )
        log.info("step %d: rollout L2RE %s", self.step, summary)
        return mean

    # ------------------------------------------------------------------ checkpoints
    def state_extra(self) -> dict:
        """Everything besides the weights that ``resume`` needs, as checkpoint entries (collective:
        the optimizer state and EMA are gathered to the main rank)."""
        data_state = {"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch}
        if hasattr(self.train_data, "state_dict"):  # its epoch runs ahead while batches prefetch
            data_state["mixture"] = {**self.train_data.state_dict(), "epoch": self.epoch}
        return {
            "optimizer": distributed.optimizer_state(self.model, self.optimizer),
            "schedule": self.schedule.state_dict(),
            "step": self.step,
            "rng": rng_state(),
            "train_config": self.config.to_dict(),
            "data_state": data_state,
            "trainer_state": {
                "best": self.best,
                "skipped": self.skipped,
                "rollbacks": self.rollbacks,
                "bad_streak": self.bad_streak,
            },  # fmt: skip
            **({"ema": self._full_ema()} if self.ema is not None else {}),
        }

    def save_checkpoint(self, best: bool = False) -> Path | None:
        """Write the step checkpoint, ``last.pt`` (and ``best.pt``); every rank calls it (the state
        is gathered from all of them), the main rank writes, and all return once it is written.
        Returns the path on the main rank (None elsewhere, or when the weights are not finite)."""
        weights, extra = distributed.model_state(self.model), self.state_extra()
        path = self._write_checkpoint(weights, extra, best) if self.dist.is_main else None
        distributed.barrier()  # a rank that goes on (e.g. to resume) finds the files
        return path

    def _write_checkpoint(self, weights: dict, extra: dict, best: bool) -> Path | None:
        metadata = {
            "step": self.step, "name": self.config.name, "sources": self.source_names,
            "l2re": {k: r["l2re"] for k, r in self.last_eval.items()},
        }  # fmt: skip
        try:
            path = self.checkpoints.save(
                self.step, self.model, metadata, best=best, state=weights, **extra
            )
        except ValueError as err:  # non-finite weights: keep the previous checkpoints
            log.error("step %d: checkpoint not written: %s", self.step, err)
            return None
        self._emit({"event": "checkpoint", "step": self.step, "path": str(path), "best": best})
        return path

    def _load_state(self, ckpt: dict) -> None:
        saved = ckpt.get("train_config", {})
        mine = self.config.to_dict()
        diff = sorted(
            k
            for k in mine
            if k not in ("steps", "log", "eval", "checkpoint", "out_dir")
            and mine[k] != saved.get(k)
        )
        if diff:
            log.warning(
                "resuming with a config that differs from the saved one in: %s", ", ".join(diff)
            )
        distributed.load_model_state(self.model, ckpt["model"])
        distributed.load_optimizer_state(self.model, self.optimizer, ckpt["optimizer"])
        self.schedule.load_state_dict(ckpt["schedule"])
        self.step = int(ckpt["step"])
        data_state = ckpt["data_state"]
        self.epoch, self.batch_in_epoch = (
            int(data_state["epoch"]),
            int(data_state["batch_in_epoch"]),
        )
        if "mixture" in data_state and hasattr(self.train_data, "load_state_dict"):
            self.train_data.load_state_dict(data_state["mixture"])
        t = ckpt["trainer_state"]
        self.best, self.skipped = float(t["best"]), int(t["skipped"])
        self.rollbacks, self.bad_streak = int(t["rollbacks"]), int(t["bad_streak"])
        if self.ema is not None and "ema" in ckpt:
            self.ema = {k: distributed.shard_like(ckpt["ema"][k], v) for k, v in self.ema.items()}
        set_rng_state(ckpt["rng"])
        log.info(
            "resumed %s at step %d (epoch %d, batch %d)",
            self.run_dir,
            self.step,
            self.epoch,
            self.batch_in_epoch,
        )

    def _on_bad_step(self, rec: dict) -> None:
        self._record(
            {"event": "skip", **rec, "skipped": self.skipped, "bad_streak": self.bad_streak}
        )
        log.warning(
            "step %d: non-finite loss or gradient (loss %s, grad norm %s): step skipped",
            self.step, rec["loss"], rec["grad_norm"],
        )  # fmt: skip
        if self.bad_streak >= self.config.safety.max_bad_steps:
            self._rollback()

    def _periodic(self, loss: float, end: bool) -> None:
        """Evaluate and checkpoint when due (always at the end of ``fit``)."""
        cfg, mean = self.config, None
        if (cfg.eval.every and self.step % cfg.eval.every == 0) or end:
            mean = self._evaluate_and_log(loss)
        if (cfg.checkpoint.every and self.step % cfg.checkpoint.every == 0) or end:
            if end and not self.weights_finite():
                log.error("non-finite weights at the end: restoring those of step %d",
                          self._snapshot["step"])  # fmt: skip
                self._restore_snapshot()
            better = mean is not None and mean < self.best
            if better:
                self.best = mean
            self.save_checkpoint(best=better)

    # ------------------------------------------------------------------ the loop
    def fit(self, steps: int | None = None) -> list[dict]:
        """Train until global step ``steps`` (default: ``config.steps``, the schedule's length),
        evaluating every ``eval.every`` and checkpointing every ``checkpoint.every`` steps and at
        the end. Returns the records logged by this trainer."""
        cfg = self.config
        until = cfg.steps if steps is None else steps
        bar = tqdm(
            total=until, initial=self.step, desc=cfg.name, unit="step", dynamic_ncols=True,
            disable=not (self.dist.is_main and cfg.log.progress),
            mininterval=0.1 if sys.stderr.isatty() else 10.0,  # a log file gets a line per 10 s
        )  # fmt: skip
        meter = _Meter()
        while self.step < until:
            rec = self.train_step()
            meter.add(rec)
            bar.update(1)
            self._emit({"event": "step", **rec})
            if not rec["ok"]:
                self._on_bad_step(rec)
            elif self.step % cfg.log.every == 0 or self.step == until:
                stats = meter.read(cfg.batch_size)
                self._record({"event": "train", **rec, **stats, "epoch": self.epoch,
                              "skipped": self.skipped})  # fmt: skip
                bar.set_postfix(loss=f"{rec['loss']:.4f}", lr=f"{rec['lr']:.2e}")
            with meter.paused():  # evaluation and checkpoints are not training time
                self._periodic(rec["loss"], end=self.step == until)
        bar.close()
        self._emit(
            {
                "event": "end",
                "step": self.step,
                "skipped": self.skipped,
                "rollbacks": self.rollbacks,
            }
        )
        return self.history
