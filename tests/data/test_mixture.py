"""The training mixture: weights, masks, resizing, splits, epochs, workers and bad input."""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import pytest
import torch
import xarray as xr
from torch.utils.data import DistributedSampler

from dpot_lab.data import native
from dpot_lab.data.loader import make_loader
from dpot_lab.data.mixture import Mixture
from dpot_lab.data.open import open_dataset


def make_ds(n=6, t=14, shape=(16, 16), channels=1, pde="heat", seed=0) -> xr.Dataset:
    """Random fields (sample, time, *shape), one variable per channel."""
    rng = np.random.default_rng(seed)
    dims = ("sample", "time", "x", "y", "z")[: 2 + len(shape)]
    data = rng.standard_normal((channels, n, t, *shape)).astype(np.float32)
    return xr.Dataset(
        {f"f{c}": (dims, data[c]) for c in range(channels)},
        attrs={"pde": pde, "source_format": "test"},
    )


def smooth_ds(n=3, t=12, shape=(64, 64)) -> xr.Dataset:
    """Fields made of the Fourier modes |k_x|, |k_y| <= 1 on cell centres, random per frame."""
    rng = np.random.default_rng(1)
    x, y = ((np.arange(s) + 0.5) / s for s in shape)
    gx, gy = np.meshgrid(x, y, indexing="ij")
    data = np.zeros((n, t, *shape), np.float32)
    for kx in (-1, 0, 1):
        for ky in (0, 1):
            amp = rng.standard_normal((n, t, 1, 1))
            phase = rng.uniform(0, 2 * np.pi, (n, t, 1, 1))
            data += amp * np.cos(2 * np.pi * (kx * gx + ky * gy) + phase)
    return xr.Dataset({"u": (("sample", "time", "x", "y"), data)}, attrs={"pde": "smooth"})


def frames(ds: xr.Dataset, sample: int, start: int, stop: int) -> torch.Tensor:
    """Independent read of a window straight from the Dataset -> (*S, T, C)."""
    arr = np.stack([ds[v].values[sample, start:stop] for v in ds.data_vars], axis=-1)
    return torch.from_numpy(np.moveaxis(arr, 0, -2))


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_weights_set_how_often_each_source_and_trajectory_appears():
    a, b = make_ds(n=6, pde="a"), make_ds(n=4, pde="b", seed=1)
    m = Mixture({"a": a, "b": b}, weights={"a": 3, "b": 1}, resolution=16, split="all")
    assert len(m) == 3 * 6 + 1 * 4
    assert [(s.name, s.weight) for s in m.sources] == [("a", 3), ("b", 1)]
    per_traj = Counter(m.locate(i) for i in range(len(m)))
    assert per_traj == {**{(0, i): 3 for i in range(6)}, **{(1, i): 1 for i in range(4)}}
    # a full epoch through the loader, and through torch's DistributedSampler over 2 ranks
    seen = Counter()
    for batch in make_loader(m, batch_size=5, num_workers=0, drop_last=False):
        seen.update(batch["source"].tolist())
    assert seen == {0: 18, 1: 4}
    ranks = [list(DistributedSampler(m, num_replicas=2, rank=r, seed=3)) for r in (0, 1)]
    assert sorted(ranks[0] + ranks[1]) == list(range(len(m)))
    assert Counter(m.locate(i)[0] for i in ranks[0] + ranks[1]) == {0: 18, 1: 4}
    # changing the weights changes the counts
    m2 = Mixture({"a": a, "b": b}, weights=[1, 5], resolution=16, split="all")
    assert Counter(m2.locate(i)[0] for i in range(len(m2))) == {0: 6, 1: 20}


def test_sources_are_read_only_records_and_the_repr_lists_them():
    m = Mixture({"a": make_ds(n=10, channels=2)}, resolution=16, split="test", n_test=3)
    (src,) = m.sources
    assert (src.name, src.path, src.variables, src.native) == ("a", None, ("f0", "f1"), (16, 16))
    assert (src.t_total, src.weight, src.samples.tolist()) == (14, 1, [7, 8, 9])
    with pytest.raises(dataclasses.FrozenInstanceError):
        src.weight = 2
    with pytest.raises(ValueError, match="read-only"):
        src.samples[0] = 0
    assert m.config["samples"] == [[7, 8, 9]]
    assert "a: 3 trajectories x1, grid (16, 16), T=14, channels ['f0', 'f1']" in repr(m)


def test_channel_mask_marks_the_real_channels_and_windows_hold_the_data():
    sources = {f"c{c}": make_ds(n=3, channels=c, seed=c) for c in (1, 2, 3)}
    m = Mixture(sources, resolution=16, t_in=4, t_out=2, channels=4, split="all", pad_value=1.0)
    assert [s.variables for s in m.sources] == [("f0",), ("f0", "f1"), ("f0", "f1", "f2")]
    assert [(s.t_total, s.native) for s in m.sources] == [(14, (16, 16))] * 3
    for i in range(len(m)):
        item = m[i]
        k, c = int(item["source"]), len(m.sources[int(item["source"])].variables)
        assert item["channel_mask"].tolist() == [True] * c + [False] * (4 - c)
        assert item["x"].shape == (16, 16, 4, 4) and item["y"].shape == (16, 16, 2, 4)
        assert item["grid_mask"].all()
        start, sample = int(item["start"]), int(item["sample"])
        assert 0 <= start <= 14 - 6
        window = torch.cat([item["x"], item["y"]], dim=-2)
        want = frames(list(sources.values())[k], sample, start, start + 6)
        assert torch.equal(window[..., :c], want)  # native grid = model grid: no resampling
        assert (window[..., c:] == 1.0).all()


def test_64_grid_to_128_and_back_within_interpolation_error():
    """Bilinear up (64 -> 128) then antialiased bilinear down on |k| <= 1 Fourier modes: the
    round trip is measured at 2.2e-3 relative L2; asserted below 1e-2."""
    ds = smooth_ds()
    m = Mixture([ds], resolution=128, t_in=10, t_out=1, split="all")
    for i in range(len(m)):
        item = m[i]
        assert item["grid_mask"].all()  # square source on a square grid: every point is real
        model_grid = torch.cat([item["x"], item["y"]], dim=-2)[None]  # (1, 128, 128, 11, 4)
        back = m.to_native(model_grid, int(item["source"]))[0]  # (64, 64, 11, 1)
        start, sample = int(item["start"]), int(item["sample"])
        assert rel(back, frames(ds, sample, start, start + 11)) < 1e-2


def test_keep_aspect_pads_and_masks_a_non_square_source():
    ds = smooth_ds(n=2, shape=(48, 96))
    stretched = Mixture([ds], resolution=128, split="all")
    assert stretched.grid_mask(0).all()
    m = Mixture([ds], resolution=128, split="all", keep_aspect=True, pad_value=1.0)
    item = m[0]
    mask = item["grid_mask"]
    assert mask[:64].all() and not mask[64:].any()  # 48 x 96 -> 64 x 128 at the origin
    assert (item["x"][64:] == 1.0).all()
    back = m.to_native(torch.cat([item["x"], item["y"]], dim=-2)[None], 0)[0]
    start, sample = int(item["start"]), int(item["sample"])
    assert back.shape == (48, 96, 11, 1)
    assert rel(back, frames(ds, sample, start, start + 11)) < 1e-2
    # a non-square model grid: a square source is stretched, or kept square and masked
    square = make_ds(n=2, shape=(16, 16))
    assert Mixture([square], resolution=(24, 16), split="all")[0]["x"].shape == (24, 16, 10, 4)
    kept = Mixture([square], resolution=(24, 16), split="all", keep_aspect=True)[0]
    assert kept["grid_mask"].sum() == 16 * 16 and kept["grid_mask"][:16].all()
    start, sample = int(kept["start"]), int(kept["sample"])
    assert torch.equal(kept["x"][:16, :, :, :1], frames(square, sample, start, start + 10))


def test_split_is_by_trajectory():
    sources = [make_ds(n=10, pde="a"), make_ds(n=7, pde="b")]
    train = Mixture(sources, weights=[2, 3], resolution=16, test_fraction=0.2)
    test = Mixture(sources, resolution=16, split="test", test_fraction=0.2)
    located = [train.locate(i) for i in range(len(train))]
    for k, n in enumerate((10, 7)):
        tr = {sample for source, sample in located if source == k}
        te = {int(test[i]["sample"]) for i in range(len(test)) if int(test[i]["source"]) == k}
        assert tr.isdisjoint(te) and tr | te == set(range(n))
        assert te == set(range(n - round(0.2 * n), n))  # the last samples are the test split
    fixed = Mixture(sources, resolution=16, split="test", n_test=3)
    assert [s.samples.tolist() for s in fixed.sources] == [[7, 8, 9], [4, 5, 6]]
    each = Mixture(sources, resolution=16, split="test", n_test=[2, 4])
    assert [s.samples.tolist() for s in each.sources] == [[8, 9], [3, 4, 5, 6]]
    by_name = Mixture(sources, resolution=16, split="train", n_test={"b": 1})  # a: 10%
    assert [len(s.samples) for s in by_name.sources] == [9, 6]
    with pytest.raises(ValueError, match=r"n_test has 1 entries for 2 sources"):
        Mixture(sources, resolution=16, n_test=[1])
    traj = Mixture(sources, resolution=8, split="test", mode="trajectory", test_fraction=0.2)
    assert len(traj) == 2 + 1
    item = traj[0]
    assert item["x"].shape == (8, 8, 14, 4) and item["native_shape"].tolist() == [16, 16]
    assert "y" not in item


def test_windows_are_deterministic_change_with_epoch_and_resume():
    sources = [make_ds(n=8, t=30, pde="a"), make_ds(n=5, t=20, pde="b")]
    m1 = Mixture(sources, weights=[2, 2], resolution=16, split="all", seed=7)
    m2 = Mixture(sources, weights=[2, 2], resolution=16, split="all", seed=7)
    starts0 = [m1.window_start(i) for i in range(len(m1))]
    assert starts0 == [m2.window_start(i) for i in range(len(m2))]
    assert torch.equal(m1[3]["x"], m2[3]["x"])
    m1.set_epoch(1)
    starts1 = [m1.window_start(i) for i in range(len(m1))]
    assert starts1 != starts0
    assert [int(m1[i]["start"]) for i in range(len(m1))] == starts1
    # starts cover [0, T - t_in - t_out] for each source over a few epochs
    drawn = {0: set(), 1: set()}
    for e in range(30):
        m2.set_epoch(e)
        for i in range(len(m2)):
            drawn[m2.locate(i)[0]].add(m2.window_start(i))
    assert drawn == {0: set(range(30 - 11 + 1)), 1: set(range(20 - 11 + 1))}
    # exact resume from a state dict
    m1.set_epoch(5)
    resumed = Mixture(sources, weights=[2, 2], resolution=16, split="all", seed=0)
    resumed.load_state_dict(m1.state_dict())
    assert resumed.epoch == 5 and resumed.seed == 7
    for i in (0, 9, len(m1) - 1):
        assert torch.equal(resumed[i]["x"], m1[i]["x"]) and torch.equal(resumed[i]["y"], m1[i]["y"])
    other = Mixture(sources, weights=[1, 2], resolution=16, split="all")
    with pytest.raises(ValueError, match="weights"):
        other.load_state_dict(m1.state_dict())


def test_loader_workers_read_files_like_the_main_process(tmp_path):
    a = make_ds(n=5, t=13, shape=(24, 24), pde="a")
    paths = [
        native.save(a, tmp_path / "a.h5"),
        native.save(make_ds(n=4, t=12, shape=(16, 16), channels=2, seed=2), tmp_path / "b.h5"),
    ]
    m = Mixture(paths, weights=[1, 2], resolution=32, split="all")
    assert [s.name for s in m.sources] == ["a", "b"]
    loader = make_loader(m, batch_size=3, num_workers=2, drop_last=False)
    for epoch in (0, 1):
        m.set_epoch(epoch)
        order = list(loader.sampler)
        assert sorted(order) == list(range(len(m)))
        got = [b for b in loader]
        xs = torch.cat([b["x"] for b in got])
        ys = torch.cat([b["y"] for b in got])
        starts = torch.cat([b["start"] for b in got]).tolist()
        assert starts == [m.window_start(i) for i in order]
        for j, i in enumerate(order):
            item = m[i]
            assert torch.equal(xs[j], item["x"]) and torch.equal(ys[j], item["y"])
    # the file's windows equal those of the same data held in memory
    in_memory = Mixture([a, make_ds(n=4, t=12, shape=(16, 16), channels=2, seed=2)],
                        weights=[1, 2], resolution=32, split="all")  # fmt: skip
    in_memory.set_epoch(1)
    for i in range(len(m)):
        assert torch.equal(in_memory[i]["x"], m[i]["x"])
    # a file opened and sliced or re-ordered by the user (same shape) is read through that
    # selection, to the values of the same selection held in memory
    for pick in (slice(1, None), [4, 0, 3, 1, 2]):
        picked = Mixture([open_dataset(paths[0]).isel(sample=pick)], resolution=32, split="all")
        held = Mixture([a.isel(sample=pick)], resolution=32, split="all")
        for i in range(len(held)):
            assert torch.equal(picked[i]["x"], held[i]["x"])


def test_too_few_frames_or_too_many_channels_name_the_source():
    with pytest.raises(ValueError, match=r"source 'short'.*'time' has 8 frames.*10 \+ 1"):
        Mixture({"short": make_ds(t=8)}, resolution=16)
    with pytest.raises(ValueError, match=r"source 'wide'.*5 channels.*channels=4"):
        Mixture({"wide": make_ds(channels=5)}, resolution=16)
    with pytest.raises(ValueError, match="mix 2D and 3D"):
        Mixture([make_ds(), make_ds(shape=(8, 8, 8), pde="cube")], resolution=16)


def test_non_finite_values_are_reported_or_skipped():
    ds = make_ds(n=5, t=11)
    ds["f0"][3, 7, 2, 5] = np.nan
    m = Mixture({"bad": ds}, resolution=16, split="all")  # t = t_in + t_out: one window each
    m[2]  # a clean trajectory reads fine
    with pytest.raises(ValueError, match=r"source 'bad'.*'f0', sample 3, frame 7"):
        m[3]
    with pytest.warns(UserWarning, match=r"dropped 1 of 5 samples: sample 3: NaN/Inf$"):
        skipping = Mixture({"bad": ds}, resolution=16, split="all", check_finite="skip")
    assert skipping.sources[0].samples.tolist() == [0, 1, 2, 4]
    assert all(torch.isfinite(skipping[i]["x"]).all() for i in range(len(skipping)))
    unchecked = Mixture({"bad": ds}, resolution=16, split="all", check_finite="off")
    assert torch.isnan(unchecked[3]["x"]).any()


def test_a_channel_zero_everywhere_at_a_predicted_frame_is_reported_or_skipped():
    """Its relative L2 divides by a norm of 0 (a dead Gray–Scott pattern: v = 0): refused by
    default, dropped with check_finite='skip'; 0 at an input frame only (a wave at rest) is fine."""
    ds = make_ds(n=4, t=14, channels=2)
    ds["f1"][2, 11:] = 0.0  # sample 2: channel f1 is 0 from frame 11 on
    ds["f0"][1, :10] = 0.0  # sample 1: channel f0 is 0 on its input frames only
    m = Mixture({"dead": ds}, resolution=16, split="all")
    for i in range(len(m)):
        k, sample, start = m.window(i)
        if sample != 2 or start + 10 < 11:  # frames start..start+10: none predicted is 0
            assert torch.isfinite(m[i]["y"]).all()
        else:
            message = r"'dead'.*'f1' of sample 2 is 0 everywhere at frame 11, a frame the model"
            with pytest.raises(ValueError, match=message):
                m[i]
    with pytest.raises(ValueError, match=r"'f1' of sample 2 is 0 everywhere at frame 11"):
        m.validate()
    with pytest.warns(UserWarning, match=r"dropped 1 of 4 samples: sample 2: a channel 0"):
        skipping = Mixture({"dead": ds}, resolution=16, split="all", check_finite="skip")
    assert skipping.sources[0].samples.tolist() == [0, 1, 3]
    skipping.validate()


def test_truncated_file_is_a_clear_error_in_main_and_in_workers(tmp_path):
    path = native.save(make_ds(n=4, t=12), tmp_path / "cut.h5")
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ValueError, match=r"source 'cut'.*truncated"):
        Mixture([path], resolution=16)
    path.write_bytes(whole)
    m = Mixture([path], resolution=16, split="all")
    path.write_bytes(whole[: len(whole) // 2])  # cut after the mixture was built
    with pytest.raises(ValueError, match=r"source 'cut'.*cannot read sample"):
        next(iter(make_loader(m, batch_size=2, num_workers=2)))


def test_3d_sources_and_loader_options():
    m = Mixture([make_ds(n=3, t=12, shape=(6, 6, 6))], resolution=8, channels=2, split="all")
    item = m[0]
    assert item["x"].shape == (8, 8, 8, 10, 2) and item["grid_mask"].shape == (8, 8, 8)
    with pytest.raises(ValueError, match="persistent_workers"):
        make_loader(m, batch_size=1, persistent_workers=True)
    with pytest.raises(ValueError, match="initialised process group"):
        make_loader(m, batch_size=1, distributed=True)
    assert len(list(make_loader(m, batch_size=2, num_workers=0, drop_last=True))) == 1
