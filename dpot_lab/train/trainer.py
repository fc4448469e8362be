"""The denoising trainer: one loop for pre-training and fine-tuning, in a notebook or torchrun.

    import dpot_lab as dl
    trainer = dl.train.Trainer("configs/tiny_cpu.yaml", callbacks=[print])
    trainer.fit()                      # train, evaluate, checkpoint; returns the metric records
    trainer.evaluate()                 # {source: {"l2re", "persistence"}} on the test split

Each optimizer step takes the global ``batch_size`` windows (``batch_size / world_size`` per rank,
in ``optim.accumulate`` micro-batches), and for each of ``t_ar`` auto-regressive steps adds noise to
the current window, predicts ``t_out`` frames and scores them with the masked relative L2; the
prediction is fed back with its gradient. A non-finite loss or gradient skips the step, decided
on the device (the fused optimizer's ``found_inf``); ``safety.max_bad_steps`` in a row restore the
last in-memory snapshot with a lowered learning rate.

Between log points the host never waits for the device: a step's loss, gradient norm and
finiteness stay on the device until the next log point, evaluation, checkpoint or safety snapshot
(``safety.snapshot_every``), where they are read at once and the skipped steps, "step" events and
rollbacks are handled in step order.

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
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from dpot_lab.evaluate.rollout import predict_frames
from dpot_lab.evaluate.score import score_batch
from dpot_lab.train import distributed
from dpot_lab.train.assembly import assemble
from dpot_lab.train.checkpointing import recipe_changes, rng_state, set_rng_state
from dpot_lab.train.config import TrainConfig
from dpot_lab.train.loss import masked_relative_l2
from dpot_lab.train.noise import add_noise, keyed_normal, sample_key
from dpot_lab.train.rundir import restore_aside, set_aside, trim_metrics

log = logging.getLogger(__name__)
Callback = Callable[[dict], Any]


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


class Trainer:
    """Train a DPOT model as ``config`` says (a ``TrainConfig``, a dict or a YAML path).

    ``callbacks``: functions called on the main rank with every event dict (``event`` is one of
    "step", "train", "eval", "skip", "rollback", "checkpoint", "transfer", "end").
    ``train_data`` / ``test_data``: datasets to use instead of the config's sources (a Mixture in
    window mode; a dict name -> Mixture in trajectory mode). ``resume``: continue the run in
    ``run_dir`` from ``checkpoints/last.pt`` exactly (weights, optimizer, schedule, RNG, data
    order), or from the newest intact checkpoint when it is damaged; a changed recipe (any config
    key but length, logging, evaluation, checkpointing, device, parallel strategy and data-reading
    ones: ``checkpointing.recipe_changes``) is an error unless ``allow_changes``. A run directory
    that holds checkpoints is refused unless ``resume`` or ``overwrite``: ``overwrite`` sets the
    earlier run aside (``<run_dir>.old-<stamp>-…``) once everything is built, deletes it when
    this run writes its first checkpoint and puts it back when ``fit`` ends without one.

    ``train.assembly.assemble`` builds what the loop runs on: the config, the ``init_from`` file
    and every trajectory of the data (readable, finite) are checked before the run directory
    changes. The trainer holds an OS lock on the run directory (``run.lock``; shared by the
    trainers of one process) until ``close`` or its collection: another process's trainer on it
    is refused with the holder's PID.

    Beside the loop: ``loader`` (the data position: ``data.loader.RunLoader``, or
    ``data.resident.ResidentLoader`` by ``data.placement``), ``guard``
    (``safety.DivergenceGuard``: skipped steps, rollbacks), ``ema`` (``ema.EMA`` or None),
    ``transfer_report`` and ``lora_report`` (what ``init_from`` and ``optim.lora`` did, or None).
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
        allow_changes: bool = False,
    ):
        parts = assemble(config, run_dir, train_data, test_data, resume, overwrite)
        self.callbacks = list(callbacks)
        self.config, self.dist, self.device = parts.config, parts.dist, parts.dist.device
        self.run_dir, self.checkpoints = parts.run_dir, parts.checkpoints
        self.micro_batch, self.amp_dtype = parts.micro_batch, parts.amp_dtype
        self.model, self.parallel, self.train_model = parts.model, parts.parallel, parts.train_model
        self.transfer_report, self.lora_report = parts.transfer_report, parts.lora_report
        self.train_data, self.test_data = parts.train_data, parts.test_data
        self.source_names = [s.name for s in getattr(self.train_data, "sources", ())]
        self.loader, self.optimizer, self.schedule = parts.loader, parts.optimizer, parts.schedule
        self.ema, self.guard = parts.ema, parts.guard
        self._eval_copy = parts.eval_copy
        lock = parts.lock  # released by close(), or when this trainer is collected
        self._unlock = weakref.finalize(self, lock.release) if lock is not None else None

        self.step, self.best = 0, math.inf
        self.saved_step: int | None = None  # the step of the newest checkpoint of this run
        self.checkpoint_error: str | None = None  # why the last checkpoint was not written
        self._aside: Path | None = None  # the earlier run that overwrite set aside
        self.last_eval: dict[str, dict[str, float]] = {}
        self.history: list[dict] = []
        self._batches: Iterator[dict] | None = None
        self._pending: list[tuple[int, float, torch.Tensor]] = []  # (step, lr, [loss, norm])
        try:  # nothing in the run directory changes before the state is in place
            if parts.resume_state is not None:
                self._load_state(parts.resume_state, allow_changes)
            self.guard.take_snapshot(self.step)
        except BaseException:
            self.close(remove_dir=True)
            raise
        if self.dist.is_main:
            self._open_run_dir(set_aside_first=overwrite and not resume)

    def _open_run_dir(self, set_aside_first: bool) -> None:
        """Set an earlier run aside (``overwrite``), write the resolved ``config.yaml``, cut
        ``metrics.jsonl`` back to this run's step and report what ``init_from`` and
        ``optim.lora`` did (main rank)."""
        if set_aside_first:
            self._aside = set_aside(self.run_dir)
            if self._aside is not None:
                log.warning("the earlier run in %s is set aside in %s until this run writes "
                            "its first checkpoint", self.run_dir, self._aside)  # fmt: skip
        self.config.to_yaml(self.run_dir / "config.yaml")  # the sizes from the data filled
        trim_metrics(self.run_dir / "metrics.jsonl", self.step)
        self._report_init()

    def close(self, remove_dir: bool = False) -> None:
        """Release the run directory's lock (``remove_dir``: and the folder, when this trainer
        made it and nothing was written there). The lock is also released when the trainer is
        garbage collected or its process ends."""
        held = self._unlock.detach() if self._unlock is not None else None
        if held is not None:
            _, release, _, _ = held
            release(remove_dir)

    def _report_init(self) -> None:
        """Log what ``init_from`` and ``optim.lora`` did (main rank; ``transfer.txt``)."""
        if self.transfer_report is not None:
            table = self.transfer_report.table()
            (self.run_dir / "transfer.txt").write_text(table + "\n")
            log.info("weights from %s:\n%s", self.config.init_from, table)
            self._emit({"event": "transfer", "step": self.step, "table": table})
        if self.lora_report is not None:
            log.info(self.lora_report.summary())

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

    # ------------------------------------------------------------------ one step
    @property
    def epoch(self) -> int:
        return self.loader.epoch

    def next_batch(self) -> tuple[torch.Tensor, ...]:
        """The next micro-batch of the run on the device: x (B, *S, t_in, C), y (B, *S,
        t_ar·t_out, C), channel mask (B, C), grid mask (B, *S)."""
        if self._batches is None:
            self._batches = iter(self.loader)
        batch = next(self._batches)
        x = batch["x"].to(self.device, non_blocking=True)
        y = batch["y"].to(self.device, non_blocking=True)
        cm = batch["channel_mask"].to(self.device, non_blocking=True)
        gm = batch["grid_mask"].to(self.device, non_blocking=True)
        c = self.model.config.in_channels
        if x.shape[-1] != c:
            raise ValueError(f"training data has {x.shape[-1]} channels, the model takes {c}")
        return x, y, cm, gm

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
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mean over the ``t_ar`` steps of the masked relative L2 of noisy-input predictions,
        each fed back with its gradient (``predict_frames``).

        x (B, *S, t_in, C), y (B, *S, t_ar·t_out, C); ``positions`` (B,): each sample's place in
        the global batch, its row of the step's noise (``keyed_normal``: the whole global batch
        drawn at once; None: the global RNG).
        """
        cfg = self.config

        def noisy(window: torch.Tensor, k: int) -> torch.Tensor:
            normal = None
            if positions is not None and cfg.noise.scale > 0:
                key, shape = sample_key(cfg.seed, self.step, k), tuple(window.shape[1:])
                normal = keyed_normal(key, cfg.batch_size, positions, shape, window.device)
            return add_noise(window, cfg.noise.kind, cfg.noise.scale, channel_mask, normal)

        reset = None if cfg.loss.score_padded else channel_mask
        frames = predict_frames(model, x, reset, cfg.data.pad_value, perturb=noisy)
        losses = [
            masked_relative_l2(
                pred,
                y[..., k * cfg.t_out : (k + 1) * cfg.t_out, :],
                channel_mask,
                grid_mask,
                cfg.loss.score_padded,
            )  # fmt: skip
            for k, pred in enumerate(islice(frames, cfg.t_ar))
        ]
        return torch.stack(losses).mean()

    def _grad_norm(self) -> torch.Tensor:
        params = [p for p in self.model.parameters() if p.grad is not None]
        clip = self.config.optim.clip_grad  # None: the norm is only measured
        if clip is None:
            norm = torch.nn.utils.get_total_norm([p.grad for p in params])
        else:
            norm = torch.nn.utils.clip_grad_norm_(params, clip)
        return distributed.full(norm)  # FSDP: the norm over every rank's shards

    def train_step(self) -> dict:
        """One optimizer step (or a skipped one); returns its record (waits for the device)."""
        self._launch_step()
        return self._settle()[-1]

    def _launch_step(self) -> None:
        """Queue one optimizer step on the device without waiting for it: a non-finite loss or
        gradient norm skips the update there. Its (step, lr, [loss, grad norm]) joins
        ``_pending`` for :meth:`_settle`; only a step due for a safety snapshot waits, to learn
        whether its weights gave a finite step."""
        cfg, world, rank = self.config, self.dist.world_size, self.dist.rank
        self.train_model.train()
        self.optimizer.zero_grad(set_to_none=True)
        accum, total = cfg.optim.accumulate, torch.zeros((), device=self.device)
        for m in range(accum):
            x, y, cm, gm = self.next_batch()
            # place in the global batch under the distributed sampler's interleaving
            index = torch.arange(x.shape[0], device=self.device)
            positions = rank + world * (m * self.micro_batch + index)  # (B,)
            with distributed.local_gradients(self.parallel, active=m + 1 < accum):
                with self._autocast():
                    loss = self.rollout_loss(self.train_model, x, y, cm, gm, positions)
                (loss / accum).backward()
            total += loss.detach()
        grad_norm = self._grad_norm()
        stats = distributed.all_reduce(torch.stack([total / accum, grad_norm.float()]), op="mean")
        finite = torch.isfinite(stats).all()  # () bool, on the device
        if self.guard.snapshot_due(self.step) and bool(finite):  # waits (copies the weights)
            self.guard.take_snapshot(self.step)
        self._optimizer_step(finite)
        self._pending.append((self.step + 1, self.schedule.get_last_lr()[0], stats))
        self.schedule.step()
        self.step += 1

    def _optimizer_step(self, finite: torch.Tensor) -> None:
        """``optimizer.step()`` and the EMA update when ``finite`` (a device bool): decided on
        the device by the fused optimizers (``found_inf``), by the host otherwise."""
        if self.optimizer.defaults.get("fused"):
            self.optimizer.found_inf = (~finite).float()  # read by the fused step, as AMP does
            self.optimizer.step()
        elif bool(finite):
            self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.step, finite)

    def _settle(self) -> list[dict]:
        """Read the pending steps' outcomes from the device at once and do their host
        bookkeeping in step order (skip records, rollbacks); returns their records."""
        if not self._pending:
            return []
        values = torch.stack([stats for _, _, stats in self._pending]).tolist()  # one wait
        records = []
        for (step, lr, _), (loss, norm) in zip(self._pending, values, strict=True):
            ok = math.isfinite(loss) and math.isfinite(norm)
            rec = {"step": step, "loss": loss, "grad_norm": norm, "lr": lr, "ok": ok}
            if ok:
                self.guard.good_step()
            else:
                self._on_bad_step(rec, self.guard.bad_step())
            records.append(rec)
        self._pending = []
        return records

    def _on_bad_step(self, rec: dict, rollback: bool) -> None:
        g = self.guard
        self._record({"event": "skip", **rec, "skipped": g.skipped, "bad_streak": g.bad_streak})
        log.warning(
            "step %d: non-finite loss or gradient (loss %s, grad norm %s): step skipped",
            rec["step"], rec["loss"], rec["grad_norm"],
        )  # fmt: skip
        if rollback:
            self._record(g.rollback(rec["step"]))

    def weights_finite(self) -> bool:
        """Whether every weight is finite, on every rank (collective)."""
        return self.guard.weights_finite()

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self, horizon: int | None = None, max_samples: int | None = None) -> dict:
        """The paper's score (``evaluate.score``) per test source, against persistence.

        The first ``t_in`` frames go in without noise; the model (its EMA weights, when on) rolls
        out ``horizon`` steps (default ``eval.horizon``; capped by the trajectory) in float32
        whatever the training precision; each sample scores ``score_batch``, the source the mean
        over samples (spread over the ranks).
        Returns ``{source: {"l2re": float, "persistence": float, "samples": int}}``.
        """
        cfg = self.config
        horizon = horizon if horizon is not None else cfg.eval.horizon
        max_samples = max_samples if max_samples is not None else cfg.eval.max_samples
        was_training = self.model.training
        self.model.eval()
        with self.ema.applied() if self.ema is not None else nullcontext():
            model = distributed.float32_copy(self.model) if self._eval_copy else self.model
            sums = {name: self._score_source(model, ds, horizon, max_samples)
                    for name, ds in self.test_data.items()}  # fmt: skip
        self.model.train(was_training)
        return {
            name: {"l2re": s[0] / s[2], "persistence": s[1] / s[2], "samples": int(s[2])}
            for name, s in sums.items()
            if s[2] > 0
        }

    def _score_source(
        self, model: torch.nn.Module, ds: Dataset, horizon: int | None, max_samples: int | None
    ) -> list:
        """[Σ ``model``'s L2RE, Σ persistence L2RE, samples] over one test set, from every rank."""
        t_in, pad = self.config.data.t_in, self.config.data.pad_value
        world, rank = self.dist.world_size, self.dist.rank
        n = len(ds) if max_samples is None else min(len(ds), max_samples)
        mine = list(range(rank, n, world))
        count = len(mine)  # the samples this rank scores; every rank runs as many
        mine += [0] * (-(-n // world) - count)  # batches (FSDP gathers in each one)
        sums = torch.zeros(3, dtype=torch.float64, device=self.device)
        seen = 0
        for batch in DataLoader(Subset(ds, mine), batch_size=self.config.eval.batch_size):
            traj = batch["x"].to(self.device)  # (B, *S, T, C)
            cm, gm = batch["channel_mask"].to(self.device), batch["grid_mask"].to(self.device)
            keep = torch.arange(seen, seen + traj.shape[0], device=self.device) < count
            seen += traj.shape[0]
            ours, still = score_batch(model, traj, t_in, horizon, cm, gm, pad)  # float32
            sums[0] += (ours * keep).sum().double()
            sums[1] += (still * keep).sum().double()
            sums[2] += keep.sum()
        return distributed.all_reduce(sums).tolist()

    def _evaluate_and_log(self, loss: float) -> float | None:
        """Evaluate, log the record, and return the mean L2RE over sources (None: no test data)."""
        res = self.evaluate() if self.test_data else {}
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
        return {
            "optimizer": distributed.optimizer_state(self.model, self.optimizer),
            "schedule": self.schedule.state_dict(),
            "step": self.step,
            "rng": rng_state(),
            "train_config": self.config.to_dict(),
            "data_state": self.loader.state_dict(),
            "trainer_state": {"best": self.best, **self.guard.state_dict()},
            **({"ema": self.ema.full()} if self.ema is not None else {}),
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
            self.checkpoint_error = str(err)
            log.error("step %d: checkpoint not written: %s", self.step, err)
            return None
        self.saved_step, self.checkpoint_error = self.step, None
        if self._aside is not None:  # this run has a checkpoint: the earlier one goes
            shutil.rmtree(self._aside)
            log.info("deleted the earlier run set aside in %s", self._aside)
            self._aside = None
        self._emit({"event": "checkpoint", "step": self.step, "path": str(path), "best": best})
        return path

    def _load_state(self, ckpt: dict, allow_changes: bool) -> None:
        saved, mine = ckpt.get("train_config", {}), self.config.to_dict()
        try:  # through today's schema: keys added since then compare at their defaults
            saved = TrainConfig.from_dict(saved).to_dict()
        except ValueError:
            pass
        changes = recipe_changes(saved, mine)
        if changes and not allow_changes:
            raise ValueError(
                f"cannot resume {self.run_dir} with a changed recipe: {'; '.join(changes)} "
                "(resume with allow_changes=True / --allow-changes to train on with them)"
            )
        if changes:
            log.warning("resuming with a changed recipe: %s", "; ".join(changes))
        hyper = [{k: v for k, v in g.items() if k != "params"} for g in self.optimizer.param_groups]
        distributed.load_model_state(self.model, ckpt["model"])
        distributed.load_optimizer_state(self.model, self.optimizer, ckpt["optimizer"])
        for group, mine in zip(self.optimizer.param_groups, hyper, strict=True):
            group.update(mine)  # the config's lr, betas, decay (the saved ones unless changed)
        self.schedule.load_state_dict(ckpt["schedule"])
        self.step = self.saved_step = int(ckpt["step"])
        self.loader.load_state_dict(ckpt["data_state"])
        self.best = float(ckpt["trainer_state"]["best"])
        self.guard.load_state_dict(ckpt["trainer_state"])
        if self.ema is not None and "ema" in ckpt:
            self.ema.load(ckpt["ema"])
        set_rng_state(ckpt["rng"])
        log.info("resumed %s at step %d (epoch %d, batch %d)", self.run_dir, self.step,
                 self.loader.epoch, self.loader.batch)  # fmt: skip

    def _periodic_due(self) -> tuple[bool, bool]:
        """Whether an evaluation and a checkpoint are due at the current step."""
        cfg, step = self.config, self.step
        return (
            bool(cfg.eval.every) and step % cfg.eval.every == 0,
            bool(cfg.checkpoint.every) and step % cfg.checkpoint.every == 0,
        )

    def _periodic(self, loss: float, end: bool) -> None:
        """Evaluate and checkpoint when due (always at the end of ``fit``, where the checkpoint
        is written first, so that a failing evaluation cannot cost the trained weights)."""
        eval_due, checkpoint_due = self._periodic_due()
        if end:
            if not self.weights_finite():
                log.error("non-finite weights at the end: restoring those of step %d",
                          self.guard.snapshot["step"])  # fmt: skip
                self.guard.restore()
            self.save_checkpoint()
        mean = self._evaluate_and_log(loss) if eval_due or end else None
        if checkpoint_due or end:
            better = mean is not None and mean < self.best
            if better:
                self.best = mean
            if not end or mean is not None:  # at the end: again, with the evaluation
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
        try:
            self._train_until(until, bar, meter)
        finally:
            bar.close()
            if self._aside is not None and self.saved_step is None:
                restore_aside(self.run_dir, self._aside)
                log.warning("no checkpoint written: the earlier run is back in %s", self.run_dir)
                self._aside = None
        g = self.guard
        self._emit({"event": "end", "step": self.step, "skipped": g.skipped,
                    "rollbacks": g.rollbacks})  # fmt: skip
        return self.history

    def _train_until(self, until: int, bar: tqdm, meter: _Meter) -> None:
        cfg = self.config
        while self.step < until:
            self._launch_step()
            bar.update(1)
            end = self.step == until
            log_due = self.step % cfg.log.every == 0 or end
            if not (log_due or any(self._periodic_due())):
                continue
            records = self._settle()  # the host waits for the device here only
            for rec in records:
                meter.add(rec)
                self._emit({"event": "step", **rec})
            rec = records[-1]
            if rec["ok"] and log_due:
                stats = meter.read(cfg.batch_size)
                self._record({"event": "train", **rec, **stats, "epoch": self.epoch,
                              "skipped": self.guard.skipped})  # fmt: skip
                bar.set_postfix(loss=f"{rec['loss']:.4f}", lr=f"{rec['lr']:.2e}")
            with meter.paused():  # evaluation and checkpoints are not training time
                self._periodic(rec["loss"], end=end)
