"""Batches gathered from resident trajectories: the same as RunLoader's, resumable, budgeted;
sources beyond the budget streamed in chunks."""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import re
import time
import weakref
from collections import Counter

import numpy as np
import pytest
import torch
import xarray as xr

from dpot_lab.data import native, resident
from dpot_lab.data.loader import RunLoader
from dpot_lab.data.mixture import Mixture
from dpot_lab.data.resident import ResidentLoader, chunk_plan, resident_bytes, run_loader
from dpot_lab.data.stream import ChunkStream, CudaCalls


def random_ds(n: int, t: int, shape: tuple[int, ...], channels: int, seed: int) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    dims = ("sample", "time", "x", "y", "z")[: 2 + len(shape)]
    return xr.Dataset(
        {
            f"f{c}": (dims, rng.standard_normal((n, t, *shape), dtype=np.float32))
            for c in range(3)[:channels]
        },
        attrs={"pde": f"random{seed}", "source_format": "test"},
    )


@pytest.fixture(scope="module")
def mixture(tmp_path_factory) -> Mixture:
    """Two sources, both resized (one up, one down with antialiasing), one padded to 3
    channels, one keeping its aspect ratio, different lengths, one read from a file."""
    path = native.save(random_ds(5, 12, (24, 40), 2, 1), tmp_path_factory.mktemp("res") / "b.h5")
    return Mixture(
        {"a": random_ds(4, 9, (12, 12), 1, 0), "b": path}, weights={"a": 2, "b": 1},
        resolution=(16, 20), t_in=3, t_out=2, channels=3, split="train", n_test=1,
        keep_aspect=True, seed=3,
    )  # fmt: skip


@pytest.fixture(scope="module")
def unresized() -> Mixture:
    """Two sources already on the model grid (channels padded only)."""
    a, b = random_ds(3, 8, (8, 6), 1, 2), random_ds(4, 10, (8, 6), 2, 3)
    return Mixture([a, b], resolution=(8, 6), t_in=2, t_out=1, channels=2, split="all")


def take(loader, n: int) -> list[dict]:
    return list(itertools.islice(iter(loader), n))


def assert_same(a: list[dict], b: list[dict], atol: float = 0.0) -> None:
    """Equal batches; fields ``x``, ``y`` within ``atol``."""
    assert len(a) == len(b)
    for one, two in zip(a, b, strict=True):
        assert one.keys() == two.keys()
        for key in one:
            assert one[key].dtype == two[key].dtype, key
            if key in ("x", "y"):
                torch.testing.assert_close(one[key], two[key], rtol=0.0, atol=atol)
            else:
                assert torch.equal(one[key], two[key]), key


@pytest.mark.parametrize(("data", "atol"), [("mixture", 1e-6), ("unresized", 0.0)])
def test_batches_equal_the_loaders_over_several_epochs(data, atol, request):
    """Bitwise on the model grid; resized, within a float32 ulp (the interpolation kernel's
    vector lanes depend on how many frames it resizes at once)."""
    mixture = request.getfixturevalue(data)
    loader, resident = RunLoader(mixture, 3, seed=5), ResidentLoader(mixture, 3, seed=5)
    assert resident.per_epoch == loader.per_epoch == len(mixture) // 3
    n = 2 * loader.per_epoch + 1
    ours, theirs = take(resident, n), take(loader, n)
    assert_same(ours, theirs, atol)
    assert {int(k) for b in ours for k in b["source"]} == {0, 1}
    assert (resident.epoch, resident.batch) == (loader.epoch, loader.batch) == (2, 1)
    assert resident.state_dict() == loader.state_dict()


@pytest.mark.parametrize("source", [0, 1])  # upsampled, shrunk with antialiasing
def test_windows_of_resized_trajectories_equal_resized_windows(mixture, source):
    whole, _ = mixture.frames(source, 0, 0, 9)  # (*R, T, C)
    window, _ = mixture.frames(source, 0, 4, 9)
    torch.testing.assert_close(whole[..., 4:9, :], window, rtol=0.0, atol=1e-6)


def test_a_batch_is_rewritten_only_once_nothing_references_it(unresized):
    """On the CPU the tensors of dropped batches serve again (no fresh pages per batch); a batch
    kept whole, a view of one and a numpy array on one stay as they were."""
    run, loader = ResidentLoader(unresized, 2, seed=1), RunLoader(unresized, 2, seed=1)
    n = 4 * run.per_epoch
    expected, seen, reused, kept = take(loader, 2 * n), {}, 0, []
    parts = (  # what the second half keeps of a batch
        lambda b: b,
        lambda b: {"y": b["y"][..., -1:, :], "grid_mask": b["grid_mask"][0]},
        lambda b: {"x": torch.from_numpy(b["x"].numpy()[1])},
    )
    for i, batch in enumerate(itertools.islice(iter(run), 2 * n)):
        assert_same([batch], [expected[i]])
        base = run._ring[-1][1][0]  # the ring's buffer under the batch's x
        assert base.ctypes.data == batch["x"].data_ptr()
        reused += id(base) in seen and seen[id(base)]() is base
        seen[id(base)] = weakref.ref(base)
        if i >= n:
            kept.append((i, parts[i % 3](batch)))
        del batch, base
        if i == n - 1:
            assert reused == n - 2  # two sets: the one taken, the one RunLoader's iterator holds
    assert reused < 2 * n - 2  # keeping batches made new ones
    for i, part in kept:
        want = parts[i % 3](expected[i])
        assert all(torch.equal(part[key], want[key]) for key in want), i


def test_resume_mid_epoch_continues_with_the_same_batches(mixture):
    run = ResidentLoader(mixture, 2, seed=1)
    take(run, 3)
    state = run.state_dict()
    following = take(run, run.per_epoch)
    for cls in (ResidentLoader, RunLoader):
        again = cls(mixture, 2, seed=1)
        again.load_state_dict(state)
        assert_same(take(again, run.per_epoch), following, atol=1e-6)


def test_budget_streams_what_does_not_fit_and_auto_falls_back_below_two_trajectories(mixture):
    sizes = resident_bytes(mixture)
    assert sizes == {"a": 3 * 9 * 16 * 20 * 3 * 4, "b": 4 * 12 * 16 * 20 * 3 * 4}
    one_a, one_b = 9 * 16 * 20 * 3 * 4, 12 * 16 * 20 * 3 * 4  # bytes per trajectory
    assert chunk_plan(mixture, sum(sizes.values())) == {}
    assert chunk_plan(mixture, sum(sizes.values()) - 1) == {1: 1}  # b streams, a held whole
    assert chunk_plan(mixture, sizes["a"] + 2 * one_b - 1) == {0: 1, 1: 1}  # both stream
    too_small = 2 * one_a + 2 * one_b - 1
    assert chunk_plan(mixture, too_small) == {0: 1, 1: 0}  # no room for two of b
    with pytest.raises(ValueError, match=r"'a'.*'b'.*max_bytes=" + str(too_small) + r".*\['b'\]"):
        ResidentLoader(mixture, 2, max_bytes=too_small)
    assert type(run_loader(mixture, 2, "auto", max_bytes=too_small)) is RunLoader
    assert type(run_loader(mixture, 2, "auto", max_bytes=too_small + 1)) is ResidentLoader
    assert type(run_loader(mixture, 2, "loader")) is RunLoader
    with pytest.raises(ValueError, match="placement='gpu'"):
        run_loader(mixture, 2, "gpu")


def test_trajectory_mode_and_other_datasets_are_refused(mixture):
    traj = Mixture(
        {"a": random_ds(3, 9, (12, 12), 1, 0)}, resolution=12, t_in=3, t_out=2, mode="trajectory"
    )
    with pytest.raises(ValueError, match="window-mode Mixture.*'trajectory'"):
        ResidentLoader(traj, 1)
    assert type(run_loader(traj, 1, "auto")) is RunLoader


TRAJECTORY = 8 * 8 * 8 * 2 * 4  # bytes of one trajectory of ``streamed`` on its model grid


@pytest.fixture(scope="module")
def b_file(tmp_path_factory):
    """10 trajectories, 2 channels, 8², 8 frames."""
    return native.save(random_ds(10, 8, (8, 8), 2, 4), tmp_path_factory.mktemp("st") / "b.h5")


@pytest.fixture(scope="module")
def streamed(b_file) -> Mixture:
    """A source 'a' of 3 trajectories and 'b' of 10 read from a file, weights 1 and 2."""
    return Mixture(
        {"a": random_ds(3, 8, (8, 8), 1, 5), "b": b_file}, weights={"a": 1, "b": 2},
        resolution=8, t_in=2, t_out=1, channels=2, split="all", seed=2,
    )  # fmt: skip


BUDGET = 3 * TRAJECTORY + 2 * 2 * TRAJECTORY  # 'a' whole, 'b' two chunks of 2 trajectories


def test_streamed_windows_keep_the_weights_and_visit_every_trajectory_alike(streamed):
    """Sources in the loader's order (its windows where held whole); a streamed window is the
    true window of a trajectory of the serving chunk, at the loader's first frame."""
    assert chunk_plan(streamed, BUDGET) == {1: 2}
    run, loader = ResidentLoader(streamed, 3, max_bytes=BUDGET), RunLoader(streamed, 3)
    epochs = 60
    ours, theirs = take(run, epochs * run.per_epoch), take(loader, epochs * run.per_epoch)
    counts, per_sample = Counter(), Counter()
    for one, two in zip(ours, theirs, strict=True):
        assert torch.equal(one["source"], two["source"]) and torch.equal(one["start"], two["start"])
        ids = one["source"], one["sample"], one["start"]
        for j, (k, sample, start) in enumerate(zip(*ids, strict=True)):
            counts[int(k)] += 1
            if k == 0:
                assert torch.equal(one["x"][j], two["x"][j]) and int(sample) == two["sample"][j]
                continue
            per_sample[int(sample)] += 1
            field, _ = streamed.frames(1, int(sample), int(start), int(start) + 3)
            assert torch.equal(one["x"][j], field[..., :2, :])
            assert torch.equal(one["y"][j], field[..., 2:, :])
    assert counts[1] / sum(counts.values()) == pytest.approx(20 / 23, abs=0.02)
    assert set(per_sample) == set(range(10))
    mean = counts[1] / 10
    assert all(abs(n - mean) < 0.25 * mean for n in per_sample.values()), per_sample


def test_streaming_is_deterministic_per_seed_and_resumes_mid_chunk(streamed):
    first = take(ResidentLoader(streamed, 3, seed=4, max_bytes=BUDGET), 12)
    assert_same(take(ResidentLoader(streamed, 3, seed=4, max_bytes=BUDGET), 12), first)
    other = take(ResidentLoader(streamed, 3, seed=5, max_bytes=BUDGET), 12)
    assert any(not torch.equal(a["x"], b["x"]) for a, b in zip(first, other, strict=True))
    run = ResidentLoader(streamed, 3, seed=4, max_bytes=BUDGET)
    take(run, 5)  # 5 chunks of 2 serve 2 batches each: run batch 5 is chunk 2's second
    state = run.state_dict()
    following = take(run, 10)
    again = ResidentLoader(streamed, 3, seed=4, max_bytes=BUDGET)
    again.load_state_dict(state)
    assert_same(take(again, 10), following)


def test_a_source_beyond_the_budget_never_holds_more(b_file):
    """10 trajectories in a budget of 3: chunks of one, read one ahead."""
    only_b = Mixture({"b": b_file}, resolution=8, t_in=2, t_out=1, channels=2, split="all")
    budget = 3 * TRAJECTORY
    assert resident_bytes(only_b) == {"b": 10 * TRAJECTORY} and chunk_plan(only_b, budget) == {0: 1}
    run = run_loader(only_b, 2, "auto", max_bytes=budget)
    batches = iter(run)
    seen = {int(s) for s in next(batches)["sample"]}
    end = time.monotonic() + 30  # the read ahead runs in the background: wait for it, not a race
    while run.held_bytes < 2 * TRAJECTORY and time.monotonic() < end:
        time.sleep(0.01)
    assert run.held_bytes == 2 * TRAJECTORY  # the chunk serving and the one read ahead
    for batch in itertools.islice(batches, 2 * run.per_epoch - 1):
        assert run.held_bytes <= budget
        seen |= {int(s) for s in batch["sample"]}
    assert seen == set(range(10))
    assert run.peak_bytes == 2 * TRAJECTORY  # never more than those two


def test_the_background_readers_error_names_the_file(tmp_path):
    path = native.save(random_ds(6, 8, (8, 8), 2, 6), tmp_path / "b.h5")
    mix = Mixture({"b": path}, resolution=8, t_in=2, t_out=1, channels=2, split="all")
    run = ResidentLoader(mix, 2, max_bytes=3 * TRAJECTORY)  # reads nothing yet
    os.replace(native.save(random_ds(6, 8, (8, 8), 2, 7), tmp_path / "new.h5"), path)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*changed"):
        take(run, 1)


class FakeStream:
    def __init__(self, log: list, name: str):
        self.log, self.name = log, name

    def wait_event(self, event) -> None:
        self.log.append(("wait", self.name, id(event)))


class FakeEvent:
    def __init__(self, log: list):
        self.log = log

    def record(self, stream: FakeStream) -> None:
        self.log.append(("record", stream.name, id(self)))

    def synchronize(self) -> None:
        self.log.append(("synchronize", None, id(self)))


class FakeCuda(CudaCalls):
    """The CUDA calls of a staged upload, on the CPU: logged as (call, stream, event id), the
    "pinned" buffers kept."""

    def __init__(self):
        super().__init__(torch.device("cpu"))
        self.log: list[tuple] = []
        self.buffers: list[torch.Tensor] = []

    def pinned(self, shape):
        self.buffers.append(torch.empty(shape))
        return self.buffers[-1]

    def stream(self):
        return FakeStream(self.log, "side")

    def event(self):
        return FakeEvent(self.log)

    @contextlib.contextmanager
    def using(self, stream):
        self.log.append(("enter", stream.name, None))
        yield
        self.log.append(("exit", stream.name, None))

    def current_stream(self):
        return FakeStream(self.log, "compute")

    def record_stream(self, t, stream):
        self.log.append(("record_stream", stream.name, None))


def test_staged_uploads_reuse_two_pinned_buffers_and_wait_for_each_copy():
    """9 trajectories in chunks of 2, 2, 2, 2, 1 over three cycles and a jump: the chunks served
    equal the plain path's; two pinned buffers of the largest chunk, made once; every chunk's
    event is recorded on the side stream after its copy and waited for by the compute stream
    before it serves; a buffer is refilled only after its last copy's event."""
    shape = (4, 3)

    def read(sample: int) -> torch.Tensor:
        return torch.arange(12.0).view(shape) + 100 * sample

    fake = FakeCuda()
    plain = ChunkStream(read, np.arange(9), shape, 2, per_epoch=9)
    staged = ChunkStream(read, np.arange(9), shape, 2, per_epoch=9, cuda=fake)
    steps = [*range(3 * staged.cycle), 4, 5, 0]  # then resumed at another chunk
    for step in steps:
        (chunk, ids), (want, want_ids) = staged.at(step), plain.at(step)
        assert torch.equal(chunk, want) and np.array_equal(ids, want_ids), step
        assert chunk.untyped_storage().data_ptr() not in {
            b.untyped_storage().data_ptr() for b in fake.buffers
        }  # a copy, not the staging buffer the next reads overwrite
        del chunk  # held no longer than a trainer holds it
    assert [tuple(b.shape) for b in fake.buffers] == [(2, *shape)] * 2
    log = list(fake.log)  # the read ahead may still be logging
    chunks = [staged.chunk_at(step) for step in steps]
    switches = 1 + sum(a != b for a, b in itertools.pairwise(chunks))
    waits = [i for i, (call, _, _) in enumerate(log) if call == "wait"]
    assert len(waits) == switches and {log[i][1] for i in waits} == {"compute"}
    assert all(log[i + 1][:2] == ("record_stream", "compute") for i in waits)
    side = False
    last: dict[int, str] = {}  # event -> its last call
    for i, (call, stream, event) in enumerate(log):
        side = {"enter": True, "exit": False}.get(call, side)
        if call == "record":
            assert side and stream == "side" and last.get(event, "synchronize") == "synchronize"
        if call == "wait":
            assert last[event] == "record", i  # the copy of the chunk about to serve
        if event is not None:
            last[event] = call if call != "wait" else last[event]
    assert len(last) == 2  # the two buffers' events, used in turn
    assert staged.peak_bytes == 2 * 2 * 12 * 4  # the chunk serving and the one read ahead


def test_staged_uploads_give_the_same_batches(streamed, monkeypatch):
    """A ResidentLoader streaming through the staged path (CUDA's calls stood in for on the CPU)
    gives the plain path's batches."""
    plain = take(ResidentLoader(streamed, 3, seed=4, max_bytes=BUDGET), 3 * 13)
    fake = FakeCuda()
    monkeypatch.setattr(resident, "ChunkStream", functools.partial(ChunkStream, cuda=fake))
    assert_same(take(ResidentLoader(streamed, 3, seed=4, max_bytes=BUDGET), 3 * 13), plain)
    assert len(fake.buffers) == 2 and any(call == "wait" for call, *_ in fake.log)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_streamed_batches_on_cuda_equal_the_cpus(streamed, monkeypatch):
    cpu = take(ResidentLoader(streamed, 3, seed=4, max_bytes=BUDGET), 3 * 13)
    made = []

    class Counting(CudaCalls):
        def pinned(self, shape):
            made.append(tuple(shape))
            return super().pinned(shape)

    uploads = functools.partial(ChunkStream, cuda=Counting(torch.device("cuda")))
    monkeypatch.setattr(resident, "ChunkStream", uploads)
    cuda = take(ResidentLoader(streamed, 3, seed=4, device="cuda", max_bytes=BUDGET), 3 * 13)
    assert_same([{k: v.cpu() for k, v in b.items()} for b in cuda], cpu)
    assert made == [(2, 8 * 8, 8 * 2)] * 2  # two staging buffers of a 2-trajectory chunk
