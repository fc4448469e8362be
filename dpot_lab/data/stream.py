"""One source's trajectories passed through the device in contiguous chunks: a background thread
reads the next chunk while the current one serves windows.

    stream = ChunkStream(read, samples, (P, T * C), chunk=16, per_epoch=100, device="cuda")
    field, ids = stream.at(step)  # the chunk serving run batch `step`: (m, P, T·C), (m,)

Run batch ``step`` (``epoch · per_epoch + batch``) is served by one chunk, a function of ``step``
alone: a cycle of ``n · q`` batches (``n`` trajectories, ``q = ceil(per_epoch / n)``, so a cycle
lasts about an epoch or more) visits the chunks in order, each for ``q`` batches per trajectory it
holds, so that every trajectory serves equally often in expectation. At most two chunks are held:
the one serving and the one being read.

On a CUDA device the background thread reads a chunk into one of two pinned staging buffers
(allocated once, used in turn) and uploads it on a side stream; the compute stream waits for that
copy's event before the chunk serves, and a buffer is refilled only once its last copy is done.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch


class CudaCalls:
    """The CUDA calls a chunk's upload makes on ``device`` (tests pass a stand-in on the CPU)."""

    def __init__(self, device: torch.device):
        self.device = device

    def pinned(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.empty(shape, pin_memory=True)

    def stream(self) -> torch.cuda.Stream:
        return torch.cuda.Stream(self.device)

    def event(self) -> torch.cuda.Event:
        return torch.cuda.Event()

    def using(self, stream: torch.cuda.Stream) -> torch.cuda.StreamContext:
        return torch.cuda.stream(stream)

    def current_stream(self) -> torch.cuda.Stream:
        return torch.cuda.current_stream(self.device)

    def record_stream(self, t: torch.Tensor, stream: torch.cuda.Stream) -> None:
        t.record_stream(stream)


class ChunkStream:
    """Chunks of ``chunk`` trajectories of ``samples``, each trajectory ``read(sample) ->
    (*shape)`` float32 on the CPU, held on ``device`` while they serve.

    ``held_bytes`` and ``peak_bytes``: the bytes of the chunks alive now and at most so far,
    counted from the live tensors on ``device`` (the one serving, the one read ahead). A failed
    read raises its error in the caller of :meth:`at`. ``cuda``: the calls that upload through
    the staging buffers and the side stream (:class:`CudaCalls` on a CUDA device when None; off
    CUDA none, the chunk read is the one served).
    """

    def __init__(
        self,
        read: Callable[[int], torch.Tensor],
        samples: np.ndarray,
        shape: tuple[int, ...],
        chunk: int,
        per_epoch: int,
        device: str | torch.device = "cpu",
        name: str = "source",
        cuda: CudaCalls | None = None,
    ):
        if chunk < 1 or per_epoch < 1:
            raise ValueError(f"chunk={chunk}, per_epoch={per_epoch}: both must be at least 1")
        self.read, self.shape, self.device = read, tuple(shape), torch.device(device)
        self.chunks = np.array_split(np.asarray(samples), math.ceil(len(samples) / chunk))
        q = -(-per_epoch // len(samples))  # batches a chunk serves per trajectory it holds
        self._ends = np.cumsum([len(c) for c in self.chunks]) * q  # where each chunk stops
        self.cycle = int(self._ends[-1])  # batches in which every chunk serves once
        if cuda is None and self.device.type == "cuda":
            cuda = CudaCalls(self.device)
        self._cuda = cuda
        if cuda is not None:  # (pinned (rows, *shape), the event of its last copy) × 2
            rows = max(len(c) for c in self.chunks)
            self._staging = [(cuda.pinned((rows, *self.shape)), cuda.event()) for _ in range(2)]
            self._turn = 0  # the staging buffer the next read fills (the reading thread's)
            self._side = cuda.stream()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=f"chunks of {name}")
        self._live: dict[int, weakref.ref] = {}  # id -> the chunk tensors made, alive or not
        self._lock = threading.Lock()
        self.peak_bytes = 0
        self._serving: tuple[int, torch.Tensor] | None = None  # (chunk, (m, *shape))
        self._ahead: tuple[int, Future] | None = None  # (chunk, its read and upload)

    def chunk_at(self, step: int) -> int:
        """The chunk serving run batch ``step``."""
        return int(np.searchsorted(self._ends, step % self.cycle, side="right"))

    def at(self, step: int) -> tuple[torch.Tensor, np.ndarray]:
        """(the chunk serving run batch ``step`` on the device (m, *shape), its sample ids (m,));
        switching chunks waits for the read ahead, then starts reading the next one."""
        c = self.chunk_at(step)
        if self._serving is None or self._serving[0] != c:
            self._serving = None  # freed before another chunk is read
            if self._ahead is None or self._ahead[0] != c:  # a jump: resumed elsewhere
                self._wait_ahead()
                self._ahead = (c, self._pool.submit(self._read, c))
            self._serving = (c, self._take_ahead())
            following = (c + 1) % len(self.chunks)
            if following != c:
                self._ahead = (following, self._pool.submit(self._read, following))
        return self._serving[1], self.chunks[c]

    @property
    def held_bytes(self) -> int:
        with self._lock:
            return self._alive()

    def _take_ahead(self) -> torch.Tensor:
        """The chunk read ahead, (m, *shape) on the device, ready for the current stream; its
        read's error if it failed."""
        _, future = self._ahead
        self._ahead = None
        chunk, copied = future.result()
        if copied is not None:  # uploaded on the side stream
            compute = self._cuda.current_stream()
            compute.wait_event(copied)
            self._cuda.record_stream(chunk, compute)  # its memory waits for compute when freed
        return chunk

    def _wait_ahead(self) -> None:
        """Let a read no longer needed finish, and drop it (its error too)."""
        if self._ahead is not None:
            self._ahead[1].exception()
            self._ahead = None

    def _read(self, c: int) -> tuple[torch.Tensor, Any]:
        """Chunk c from ``read`` -> ((m, *shape) on the device, the event of its upload on the
        side stream, None off CUDA)."""
        ids = self.chunks[c]
        if self._cuda is None:
            out = self._track(torch.empty((len(ids), *self.shape)))
            for i, sample in enumerate(ids):
                out[i] = self.read(int(sample))
            return out, None
        staging, copied = self._staging[self._turn]
        self._turn = 1 - self._turn
        copied.synchronize()  # this buffer's last upload is done
        host = staging[: len(ids)]  # (m, *shape)
        for i, sample in enumerate(ids):
            host[i] = self.read(int(sample))
        with self._cuda.using(self._side):
            out = self._track(torch.empty((len(ids), *self.shape), device=self.device))
            out.copy_(host, non_blocking=True)
            copied.record(self._side)
        return out, copied

    def _track(self, t: torch.Tensor) -> torch.Tensor:
        with self._lock:
            self._live[id(t)] = weakref.ref(t)
            self.peak_bytes = max(self.peak_bytes, self._alive())
        return t

    def _alive(self) -> int:
        """Bytes of the chunk tensors alive (the dead ones forgotten); under the lock."""
        self._live = {i: r for i, r in self._live.items() if r() is not None}
        return sum(r().nbytes for r in self._live.values())
