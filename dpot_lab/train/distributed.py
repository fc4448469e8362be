"""Process groups for ``torchrun`` (gloo on CPU, NCCL on CUDA), DDP or FSDP, and the state of
a model and optimizer gathered for checkpoints or kept per rank for rollback.

One entry point serves every launch::

    # one process (CPU or one GPU)
    python -m dpot_lab.cli pretrain configs/tiny_cpu.yaml --out runs/tiny
    # 8 GPUs on one node
    torchrun --standalone --nproc_per_node=8 -m dpot_lab.cli pretrain configs/pretrain_Ti.yaml \\
        --out runs/ti
    # 2 nodes of 8 GPUs (run on each node)
    torchrun --nnodes=2 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 \\
        -m dpot_lab.cli pretrain configs/pretrain_L.yaml --out runs/l

``distributed.strategy: ddp`` replicates the model on every rank (Ti/S/M). The large sizes (L, H)
use ``strategy: fsdp``: FSDP2 (``fully_shard`` of each block, then of the whole model) splits
weights, gradients and Adam state over the ranks (H, 1.03B parameters: ~16 GB in fp32 on one GPU,
~2 GB each on 8), gathering a block's weights only while it runs; with
``activation_checkpointing: true`` the blocks are recomputed in the backward pass instead of
keeping their activations. Checkpoints hold the full, unsharded state in either case, keyed by
parameter name, so a run saved on 8 GPUs with FSDP resumes on one GPU, and the other way round.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.tensor import DTensor, distribute_tensor
from torch.utils.checkpoint import checkpoint

from dpot_lab.models.dpot import build_model
from dpot_lab.models.util import unwrap
from dpot_lab.train.lora import merged_state

log = logging.getLogger(__name__)


@dataclass
class DistInfo:
    """Where this process runs: its rank among ``world_size`` and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> the local CUDA device when there is one, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device: {name!r}, but this torch sees no CUDA GPU; use auto or cpu")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device


def setup(device: str = "auto", backend: str = "auto") -> DistInfo:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1); else one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world == 1:
        return DistInfo(device=dev)
    if backend == "auto":
        backend = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    info = DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, dev)
    log.info("rank %d of %d on %s (%s)", info.rank, info.world_size, dev, backend)
    return info


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def parallelize(
    model: nn.Module, info: DistInfo, strategy: str = "ddp", low: torch.dtype | None = None
) -> nn.Module:
    """The module to train with when there are several processes; ``model`` itself otherwise.

    ``ddp``: a DistributedDataParallel wrapper (``model`` keeps full weights). ``fsdp``: ``model``
    is sharded in place (its parameters become DTensors) and returned; build the optimizer after.
    ``low`` (fsdp only): the dtype the blocks' weights are gathered and computed in (their
    gradients still reduced and kept in float32, their inputs left as they come: the residual
    stream stays float32); the rest of the model (embedding, time aggregation, head: the float32
    islands) is gathered in float32. Such a model computes in ``low`` whatever the autocast, so
    evaluate a :func:`float32_copy` of it.
    """
    if not info.distributed:
        return model
    if strategy == "fsdp":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mesh = init_device_mesh(info.device.type, (info.world_size,))
        blocks = MixedPrecisionPolicy()
        if low is not None:
            blocks = MixedPrecisionPolicy(low, torch.float32, cast_forward_inputs=False)
        for block in getattr(model, "blocks", []):
            fully_shard(block, mesh=mesh, mp_policy=blocks)
        return fully_shard(model, mesh=mesh)
    if strategy != "ddp":
        raise ValueError(f"distributed.strategy: expected 'ddp' or 'fsdp', got {strategy!r}")
    ids = [info.device.index] if info.device.type == "cuda" else None
    unused = hasattr(model, "cls_head")  # the class head takes no part in the loss
    return nn.parallel.DistributedDataParallel(  # buffers are constants (DFT matrices)
        model, device_ids=ids, find_unused_parameters=unused, broadcast_buffers=False
    )


def float32_copy(model: nn.Module) -> nn.Module:
    """A plain DPOT (not sharded, adapters merged) holding ``model``'s full float32 weights on
    this rank's device, in eval mode; the global RNG is left as it was (collective under FSDP)."""
    state = merged_state(get_model_state_dict(model, options=_FULL))
    device = next(iter(state.values())).device
    with torch.random.fork_rng([device] if device.type == "cuda" else []), device:
        plain = build_model(unwrap(model).config)
    plain.load_state_dict(state)
    return plain.eval()


@contextmanager
def local_gradients(parallel: nn.Module, active: bool = True) -> Iterator[None]:
    """When ``active``: backward passes accumulate gradients on this rank without reducing them
    (DDP ``no_sync``, FSDP ``set_requires_gradient_sync(False)``), for all but the last
    micro-batch of an accumulated step."""
    if not active:
        yield
    elif hasattr(parallel, "no_sync"):
        with parallel.no_sync():
            yield
    elif hasattr(parallel, "set_requires_gradient_sync"):
        parallel.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            parallel.set_requires_gradient_sync(True)
    else:
        yield


# ---------------------------------------------------------------------- sharded tensors
def process_rank() -> int:
    """This process's rank in the default process group (0 without one)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def local(t: torch.Tensor) -> torch.Tensor:
    """This rank's part of ``t`` (the tensor itself unless FSDP sharded it)."""
    return t.to_local() if isinstance(t, DTensor) else t


def full(t: torch.Tensor) -> torch.Tensor:
    """The whole of ``t``, gathered from every rank when FSDP sharded it (collective)."""
    return t.full_tensor() if isinstance(t, DTensor) else t


def shard_like(whole: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``whole`` placed and sharded as ``like`` is (every rank passes the same ``whole``)."""
    if isinstance(like, DTensor):
        return distribute_tensor(whole.to(like.device), like.device_mesh, like.placements)
    return whole.to(like.device)


@torch.no_grad()
def local_copy(obj: Any, into: Any = None) -> Any:
    """Nested containers with every tensor replaced by a CPU copy of this rank's part.

    ``into``: an earlier copy whose tensors are overwritten where shape and dtype agree (so its
    memory is reused and it changes); new ones are pinned for CUDA tensors. Copies from CUDA run
    asynchronously, waited for once at the end."""
    waits = set()
    out = _copy_to_host(obj, into, waits)
    for device in waits:
        torch.cuda.synchronize(device)
    return out


def _copy_to_host(obj: Any, into: Any, waits: set) -> Any:
    if isinstance(obj, torch.Tensor):
        src = local(obj).detach()
        fits = (
            isinstance(into, torch.Tensor)
            and into.shape == src.shape
            and into.dtype == src.dtype
            and into.device.type == "cpu"
        )  # fmt: skip
        dst = into if fits else torch.empty_like(src, device="cpu", pin_memory=src.is_cuda)
        if src.is_cuda:
            waits.add(src.device)
        return dst.copy_(src, non_blocking=src.is_cuda and dst.is_pinned())
    if isinstance(obj, dict):
        old = into if isinstance(into, dict) else {}
        return {k: _copy_to_host(v, old.get(k), waits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        old = (
            into if isinstance(into, (list, tuple)) and len(into) == len(obj) else [None] * len(obj)
        )
        return type(obj)(_copy_to_host(v, o, waits) for v, o in zip(obj, old, strict=True))
    return obj


@torch.no_grad()
def copy_into(live: dict[str, torch.Tensor], saved: dict[str, torch.Tensor]) -> None:
    """Write ``local_copy``'d tensors back into ``live`` ones (this rank's parts), in place."""
    for k, v in live.items():
        local(v).copy_(saved[k])


# ---------------------------------------------------------------------- checkpoint state
_FULL = StateDictOptions(full_state_dict=True)
_FULL_CPU = StateDictOptions(full_state_dict=True, cpu_offload=True)


def model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The full weights on the CPU, keyed by name (collective; complete on the main rank)."""
    return get_model_state_dict(model, options=_FULL_CPU)


def load_model_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load full weights (the same on every rank) into a plain, DDP'd or FSDP-sharded model."""
    set_model_state_dict(model, state, options=_FULL)


def optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """The full optimizer state on the CPU, keyed by parameter name (collective)."""
    return get_optimizer_state_dict(model, optimizer, options=_FULL_CPU)


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load what ``optimizer_state`` gave, or a plain ``optimizer.state_dict()`` (by index)."""
    if any(isinstance(p, int) for g in state["param_groups"] for p in g["params"]):
        optimizer.load_state_dict(state)
    else:
        set_optimizer_state_dict(model, optimizer, state, options=_FULL)


def all_reduce(t: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """Sum (or mean) of ``t`` over all processes; identity in a single process."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        if op == "mean":
            t /= dist.get_world_size()
    return t


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def enable_activation_checkpointing(model: nn.Module) -> int:
    """Recompute each of ``model.blocks`` in the backward pass instead of storing its activations.

    The blocks keep their names (state-dict keys are unchanged). Returns how many were wrapped.
    """
    blocks = getattr(model, "blocks", [])
    for block in blocks:
        if not getattr(block, "_activation_checkpointed", False):
            block.forward = functools.partial(checkpoint, block.forward, use_reentrant=False)
            block._activation_checkpointed = True
    return len(blocks)
