"""dl.generate for Gray–Scott: files hold what the solver computes from each sample's own seed
(Pearson's seeded initial state), whatever the batch size; F and k per trajectory are stored and in
range; the frames keep changing after the burn-in; a pattern that dies is drawn again."""

from __future__ import annotations

import numpy as np
import pytest

import dpot_lab as dl
from dpot_lab.data.generation import GENERATORS, generate
from dpot_lab.data.generators_patterns import _draw_living, _pearson_state, make_gray_scott
from dpot_lab.solvers.gray_scott import gray_scott_2d
from dpot_lab.solvers.grid import cell_centres

# the default cell size (side 1.25 on 64 cells) on 16 cells, a short run
SMALL = dict(resolution=16, length=1.25 / 4, n_frames=3, burn_in=100.0, dt_save=50.0)


def test_deterministic_per_seed_and_batch_size_independent(tmp_path):
    def made(pde: str, name: str, **kw):
        return dl.open_dataset(generate(pde, tmp_path / name, 3, progress=False, **SMALL, **kw))

    a = made("gs2d", "a.h5", seed=5, batch_size=1)
    b = made("gray_scott", "b.h5", seed=5, batch_size=2)
    c = made("gray_scott", "c.h5", seed=6)
    assert a.attrs["pde"] == "gray_scott_2d" and a.attrs["source_format"] == "dpot-lab"
    assert dl.data.schema.field_names(a) == ["u", "v"]
    for name in ("u", "v"):
        values = a[name].values
        assert a[name].dims == ("sample", "time", "x", "y") and values.shape == (3, 3, 16, 16)
        np.testing.assert_array_equal(values, b[name].values)
        assert np.abs(values - c[name].values).max() > 1e-3  # another seed, another set
        assert np.abs(values[0] - values[1]).max() > 1e-3  # samples differ
        assert np.isfinite(values).all()
        assert np.abs(np.diff(values, axis=1)).max(axis=(1, 2, 3)).min() > 1e-4  # frames change
    for name in ("f", "k"):
        assert a[name].dims == ("sample",)
        np.testing.assert_array_equal(a[name].values, b[name].values)
        low, high = a.attrs[f"{name}_min"], a.attrs[f"{name}_max"]
        assert np.all((a[name].values >= low) & (a[name].values <= high))
        assert len(set(a[name].values.tolist())) == 3


def test_registered_name_and_alias():
    assert GENERATORS["gs2d"] is GENERATORS["gray_scott"]
    assert GENERATORS["gray_scott"].parameters()["length"] == 1.25


def test_samples_are_the_solver_run_from_pearsons_seeded_state(tmp_path):
    path = generate("gray_scott", tmp_path / "g.h5", 2, seed=4, progress=False, **SMALL)
    ds = dl.open_dataset(path)
    length = SMALL["length"]
    np.testing.assert_allclose(ds["time"].values, [100.0, 150.0, 200.0])
    np.testing.assert_allclose(ds["x"].values, cell_centres(16, 0, length))
    rng = np.random.default_rng(np.random.SeedSequence(4).spawn(2)[1])
    f, k = rng.uniform(0.035, 0.055), rng.uniform(0.0605, 0.0625)
    x = cell_centres(16, 0, length)
    seeded = np.zeros((16, 16), dtype=bool)
    for cx, cy in rng.uniform(0.0, length, (rng.integers(4, 11), 2)):
        seeded |= (((x - cx) % length) < 0.06)[:, None] & (((x - cy) % length) < 0.06)[None, :]
    assert 0 < seeded.sum() < 16 * 16
    u0 = np.where(seeded, 0.5, 1.0) + 0.02 * rng.standard_normal((16, 16))
    v0 = np.where(seeded, 0.25, 0.0) + 0.02 * rng.standard_normal((16, 16))
    expected = gray_scott_2d(u0, v0, [100.0, 150.0, 200.0], f=f, k=k, length=length, dt=2.0)
    assert (ds["f"].values[1], ds["k"].values[1]) == (f, k)
    np.testing.assert_array_equal(ds["u"].values[1], expected[:, 0].astype(np.float32))
    np.testing.assert_array_equal(ds["v"].values[1], expected[:, 1].astype(np.float32))


def test_defaults_form_patterns_that_keep_changing():
    # the default cell size and times, on 32² cells (a quarter of the default square)
    ds = make_gray_scott(3, 32, np.random.SeedSequence(11).spawn(3), length=1.25 / 2)
    v = ds["v"].values.astype(np.float64)  # (S, T, X, Y)
    change = np.linalg.norm(np.diff(v, axis=1), axis=(2, 3)) / np.linalg.norm(v[:, 1:], axis=(2, 3))
    assert 0.1 < change[:, 0].mean() < 0.6 and 0.03 < change[:, -1].mean() < 0.4, change
    assert np.all(v[:, -1].max(axis=(1, 2)) > 0.2)  # spots and stripes of v, not decayed
    covered = (v[:, -1] > 0.1).mean(axis=(1, 2))
    assert np.all((covered > 0.05) & (covered < 0.95)), covered


@pytest.mark.parametrize(
    "bad,match",
    [
        (dict(f_min=0.05, f_max=0.04), "f_max"),
        (dict(k_min=-0.01), "k_min"),
        (dict(length=0.0), "length"),
        (dict(seed_size=2.0), "seed_size"),
        (dict(n_seeds_min=0), "n_seeds_min"),
        (dict(dt_save=0.0), "dt_save"),
        (dict(burn_in=-1.0), "burn_in"),
    ],
)
def test_bad_parameters_are_named(bad, match):
    with pytest.raises(ValueError, match=match):
        make_gray_scott(1, 8, np.random.SeedSequence(0).spawn(1), **bad)


def test_a_sample_whose_pattern_dies_is_drawn_again_from_its_own_generator():
    # sample 23 of seed 5000 (benchmarks/transfer.py's Gray–Scott set): its first draw
    # (f 0.0533, k 0.0616, its seeds) decays to v = 0 before the first saved frame
    seq = np.random.SeedSequence(5000).spawn(32)[23]
    rng = np.random.default_rng(seq)
    first = rng.uniform(0.035, 0.055), rng.uniform(0.0605, 0.0625)
    u0, v0 = _pearson_state(rng, (64, 64), 1.25, n_min=4, n_max=10, size=0.06, noise_std=0.02)
    out = gray_scott_2d(u0, v0, [300.0], f=first[0], k=first[1], length=1.25, dt=2.0)
    assert np.ptp(out[0, 1]) < 1e-6  # (T, 2, X, Y): v flat at the first saved frame
    ds = make_gray_scott(1, 64, [seq], n_frames=2)
    v = ds["v"].values[0]  # (T, X, Y)
    assert (v.max(axis=(1, 2)) - v.min(axis=(1, 2))).min() > 0.1  # spots, not a flat field
    assert (ds["f"].values[0], ds["k"].values[0]) != first  # its second draw
    again = make_gray_scott(2, 64, np.random.SeedSequence(5000).spawn(32)[22:24], n_frames=2)
    np.testing.assert_array_equal(again["v"].values[1], v)  # whatever the batch


def test_a_range_where_every_pattern_dies_is_an_error_naming_it():
    with pytest.raises(ValueError, match=r"sample\(s\) \[0, 1\] died \(v flat\) in each of 10 "
                       r"draws of f in \[0.01, 0.012\], k in \[0.075, 0.08\]"):  # fmt: skip
        short = {k: v for k, v in SMALL.items() if k != "resolution"}
        make_gray_scott(2, 16, np.random.SeedSequence(1).spawn(2), f_min=0.01, f_max=0.012,
                        k_min=0.075, k_max=0.08, **short)  # fmt: skip


@pytest.mark.parametrize("alive_at, ok", [(1, True), (10, True), (11, False)])
def test_each_of_the_draws_is_checked_the_last_one_too(alive_at, ok):
    """Sample 1's pattern lives from its ``alive_at``-th draw on (sample 0's from the first)."""
    counts = [0, 0]

    def draw(rng: int) -> int:
        counts[rng] += 1
        return counts[rng] if rng == 1 else alive_at  # sample 0 alive at once

    def solve(drawn: list[int]) -> np.ndarray:  # (B, T, 2, X, Y): v flat until alive
        out = np.zeros((len(drawn), 1, 2, 4, 4), np.float32)
        for b, n in enumerate(drawn):
            out[b, 0, 1, 0, 0] = float(n >= alive_at)
        return out

    if ok:
        drawn, uv = _draw_living([0, 1], draw, solve, "ranges")
        assert drawn == [alive_at, alive_at] and counts[1] == alive_at and np.ptp(uv[1, 0, 1]) == 1
    else:
        with pytest.raises(ValueError, match=r"sample\(s\) \[1\] died \(v flat\) in each of 10"):
            _draw_living([0, 1], draw, solve, "ranges")
        assert counts[1] == 10
