"""A full disk: every writer fails with one line naming the file and "no space left on device",
keeps the file that was there, leaves no temporary file and does not crash the interpreter.

Runs on a small tmpfs, so only as root (mount needs it); skipped otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

import dpot_lab as dl

SIZE = 1 << 20  # bytes of the tmpfs


@pytest.fixture
def small_disk(tmp_path):
    """A folder on a 1 MiB tmpfs, unmounted after the test."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    folder = tmp_path / "disk"
    folder.mkdir()
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(folder)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if mount.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.strip()}")
    yield folder
    subprocess.run(["umount", "--lazy", str(folder)], check=True)  # --lazy: even if still open


def fill(folder: Path, leave: int) -> None:
    """Take all but about ``leave`` bytes of the folder's file system."""
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    (folder / "filler").write_bytes(b"\0" * max(free - leave, 0))


def left_over(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_generate_on_a_full_disk_keeps_the_good_file_and_exits_cleanly(small_disk):
    out = small_disk / "ns.h5"
    argv = [sys.executable, "-m", "dpot_lab.cli", "-q", "generate", "ns2d", "--out", str(out),
            "--resolution", "16", "--param", "n_frames=6"]  # fmt: skip
    first = subprocess.run([*argv, "--n-samples", "1"], capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    good = out.read_bytes()
    fill(small_disk, leave=64 << 10)
    # 40 trajectories of 6 frames of 16² float32: 245 KiB, more than is left
    run = subprocess.run([*argv, "--n-samples", "40", "--overwrite"], capture_output=True,
                         text=True)  # fmt: skip
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2, run.stderr  # a segfault in HDF5's clean-up gives -11 (139)
    assert lines == [
        f"dpot-lab generate: error: [Errno 28] no space left on device writing {out} "
        "(a file there before is unchanged)"
    ]
    assert out.read_bytes() == good and left_over(small_disk) == []


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_checkpoint_on_a_full_disk_keeps_the_good_one(small_disk, suffix):
    torch.manual_seed(0)
    path = small_disk / f"model{suffix}"
    small = dl.create_model("nano", embed_dim=16, depth=1, out_layer_dim=8)
    dl.save_checkpoint(path, small)
    fill(small_disk, leave=16 << 10)
    with pytest.raises(OSError, match=rf"no space left on device writing {path} ") as caught:
        dl.save_checkpoint(path, dl.create_model("nano"))  # about 1 MB
    assert caught.value.errno == 28 and "\n" not in str(caught.value)
    back = dl.load_checkpoint(path).state_dict()
    assert all(torch.equal(back[k], v) for k, v in small.state_dict().items())
    assert left_over(small_disk) == []


@pytest.mark.parametrize("write, suffix", [(dl.data.save, ".h5"), (dl.data.to_netcdf, ".nc")])
def test_data_files_on_a_full_disk_raise_and_keep_the_good_file(small_disk, write, suffix):
    def frames(n: int) -> xr.Dataset:
        u = np.random.default_rng(0).standard_normal((n, 4, 32, 32)).astype(np.float32)
        return xr.Dataset({"u": (("sample", "time", "x", "y"), u)},
                          attrs={"pde": "test", "source_format": "test"})  # fmt: skip

    path = write(frames(1), small_disk / f"u{suffix}")
    fill(small_disk, leave=64 << 10)
    with pytest.raises(OSError, match=rf"no space left on device writing {path} "):
        write(frames(20), path)  # 320 KiB
    with (
        xr.open_dataset(path, engine="h5netcdf") if suffix == ".nc" else dl.open_dataset(path) as ds
    ):
        assert ds.sizes["sample"] == 1 and left_over(small_disk) == []


def test_run_config_on_a_full_disk_keeps_the_good_one(small_disk):
    from dpot_lab.train import TrainConfig

    path = TrainConfig().to_yaml(small_disk / "config.yaml")
    good = path.read_text()
    fill(small_disk, leave=0)
    with pytest.raises(OSError, match=rf"no space left on device writing {path} "):
        TrainConfig(name="x" * 8192).to_yaml(path)
    assert path.read_text() == good and left_over(small_disk) == []


def test_a_failed_write_is_raised_naming_the_file_and_keeps_the_good_one(tmp_path):
    from dpot_lab.atomic import atomic_path

    good = tmp_path / "out.bin"
    good.write_bytes(b"good")
    with pytest.raises(OSError, match=rf"^\[Errno 5\] Input/output error writing {good} \(a file"):
        with atomic_path(good) as tmp:
            tmp.write_bytes(b"half")
            raise OSError(5, "Input/output error")  # as a failing write raises it
    with pytest.raises(FileNotFoundError, match=r"elsewhere\.h5"):  # not a write: unchanged
        with atomic_path(good):
            open(tmp_path / "elsewhere.h5", "rb")
    assert good.read_bytes() == b"good" and [p.name for p in tmp_path.iterdir()] == ["out.bin"]
