"""Process groups for ``torchrun`` (DDP: gloo on CPU, NCCL on CUDA); activation checkpointing.

One entry point serves every launch::

    # one process (CPU or one GPU)
    python -m dpot_lab.cli pretrain configs/tiny_cpu.yaml --out runs/tiny
    # 8 GPUs on one node
    torchrun --standalone --nproc_per_node=8 -m dpot_lab.cli pretrain configs/pretrain_Ti.yaml \\
        --out runs/ti
    # 2 nodes of 8 GPUs (run on each node)
    torchrun --nnodes=2 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 \\
        -m dpot_lab.cli pretrain configs/pretrain_L.yaml --out runs/l

The large sizes (L, H) use DDP with activation checkpointing of every block
(``distributed.activation_checkpointing: true``): weights, gradients and Adam state of H (1.03B
parameters, ~16 GB in fp32) fit one 80 GB GPU, and recomputing the blocks in the backward pass
removes most activation memory. FSDP is not used.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.checkpoint import checkpoint

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


def wrap_ddp(model: nn.Module, info: DistInfo) -> nn.Module:
    """DistributedDataParallel around ``model`` when there are several processes."""
    if not info.distributed:
        return model
    ids = [info.device.index] if info.device.type == "cuda" else None
    unused = hasattr(model, "cls_head")  # the class head takes no part in the loss
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=unused)


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
