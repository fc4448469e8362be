"""The dpot-lab CLI end to end on tiny data: generate -> pretrain -> evaluate -> finetune, and its
one-line errors for bad configs, bad arguments, bad files and runs that exist."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

import dpot_lab as dl
from dpot_lab.cli import main
from dpot_lab.train import Trainer

TINY = {"preset": "nano", "embed_dim": 32, "depth": 1, "modes": 4, "mlp_ratio": 1,
        "out_layer_dim": 16}  # fmt: skip


@pytest.fixture(scope="module")
def ns_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "ns.h5"
    code = main(["-q", "generate", "ns2d", "--out", str(path), "--n-samples", "6",
                 "--resolution", "16", "--seed", "3", "--param", "n_frames=8",
                 "--param", "dt_save=0.25", "--param", "nu=1e-3"])  # fmt: skip
    assert code == 0
    return path


def _config(tmp_path, ns_file, **changes) -> str:
    cfg = {"steps": 3, "batch_size": 2, "model": dict(TINY),
           "data": {"sources": [str(ns_file)], "resolution": 16, "t_in": 4, "channels": 1,
                    "n_test": 2},
           "eval": {"horizon": 4}, "log": {"progress": False}, **changes}  # fmt: skip
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_generate_writes_the_asked_for_file(ns_file):
    ds = dl.open_dataset(ns_file)
    assert dict(ds.sizes) == {"sample": 6, "time": 8, "x": 16, "y": 16}
    assert ds.attrs["nu"] == pytest.approx(1e-3) and ds.attrs["seed"] == 3


def test_generate_onto_an_existing_file_needs_overwrite(tmp_path, capsys):
    path = tmp_path / "g.h5"
    argv = ["-q", "generate", "ns2d", "--out", str(path), "--resolution", "8",
            "--param", "n_frames=2", "--param", "dt_save=0.25"]  # fmt: skip
    assert main([*argv, "--n-samples", "2"]) == 0
    capsys.readouterr()
    assert main([*argv, "--n-samples", "1"]) == 2
    assert f"{path} exists: pass overwrite=True (CLI: --overwrite)" in capsys.readouterr().err
    assert dl.open_dataset(path).sizes["sample"] == 2
    assert main([*argv, "--n-samples", "1", "--overwrite"]) == 0
    assert dl.open_dataset(path).sizes["sample"] == 1


def test_pretrain_evaluate_finetune(ns_file, tmp_path, capsys):
    cfg = _config(tmp_path, ns_file)
    settings = ["--set", "optim.lr=2e-3", "--set", "noise={kind: norm, scale: 1e-4}"]
    argv = ["-q", "pretrain", cfg, "--out", str(tmp_path / "pre"), "--max-steps", "2", *settings]
    assert main(argv) == 0
    ckpt = tmp_path / "pre" / "checkpoints" / "best.pt"
    model = dl.load_checkpoint(ckpt)
    assert model.metadata["step"] == 2  # --max-steps overrides the config's steps
    resolved = yaml.safe_load((tmp_path / "pre" / "config.yaml").read_text())
    assert resolved["steps"] == 2 and resolved["model"]["embed_dim"] == 32
    assert resolved["optim"]["lr"] == 2e-3 and resolved["noise"] == {"kind": "norm", "scale": 1e-4}
    capsys.readouterr()

    assert main(["-q", "evaluate", str(ckpt), "--data", str(ns_file), "--horizon", "4",
                 "--last", "2"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    row = re.search(rf"{re.escape(str(ns_file))}\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", out)
    l2re, _vrmse, persistence = (float(v) for v in row.groups())
    # the same numbers from the trainer's own (tensor) evaluation of the same two trajectories
    trainer = Trainer(_config(tmp_path, ns_file, init_from=str(ckpt)), run_dir=tmp_path / "ev")
    ours = trainer.evaluate(horizon=4)["ns"]
    assert l2re == pytest.approx(ours["l2re"], rel=1e-3)
    truth = dl.open_dataset(ns_file)["vorticity"].values[-2:]  # (2, T, X, Y)
    still = truth[:, 3:4]
    ref = np.sqrt(
        ((truth[:, 4:8] - still) ** 2).sum((1, 2, 3)) / (truth[:, 4:8] ** 2).sum((1, 2, 3))
    )
    assert persistence == pytest.approx(ref.mean(), rel=1e-4)
    # and from dl.rollout + the score on the xarray Dataset
    last = dl.open_dataset(ns_file).isel(sample=slice(-2, None))
    scored = dl.evaluate.score_model(model, last, steps=4)
    assert float(scored["mean"]) == pytest.approx(ours["l2re"], rel=1e-4)
    assert float(scored["persistence_mean"]) == pytest.approx(ours["persistence"], rel=1e-5)

    # the architecture from the checkpoint: ``preset: null`` is valid once --from gives init_from
    cfg = _config(tmp_path, ns_file, model={"preset": None})
    code = main(["-q", "finetune", cfg, "--from", str(ckpt), "--out", str(tmp_path / "ft")])
    assert code == 0
    table = (tmp_path / "ft" / "transfer.txt").read_text()
    assert "loaded" in table and "blocks.0.filter.w1" in table
    tuned = dl.load_checkpoint(tmp_path / "ft" / "checkpoints" / "last.pt")
    assert not torch.equal(tuned.blocks[0].filter.w1, model.blocks[0].filter.w1)


def test_user_errors_are_one_line_messages(ns_file, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  lr: fast\n")
    assert main(["pretrain", str(bad), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml: optim.lr: expected float, got str 'fast'" in err
    assert (
        main(["pretrain", _config(tmp_path, ns_file), "--out", str(tmp_path / "r"), "--resume"])
        == 2
    )
    assert "cannot resume" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "nope.pt"), "--data", str(ns_file)]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["pretrain", "{tmp}/nope.yaml", "--out", "{tmp}/r"], "nope.yaml does not exist"),
        (["pretrain", "{tmp}", "--out", "{tmp}/r"], "is a folder, not a YAML file"),
        (["pretrain", "{tmp}/empty.yaml", "--out", "{tmp}/r"], "empty.yaml: the file is empty"),
        (["pretrain", "{cfg}", "--out", "{tmp}/old"], "holds checkpoints of an earlier run"),
        (["evaluate", "{tmp}/corrupt.pt", "--data", "{ns}"], "corrupt.pt is corrupt"),
        (["export", "{tmp}/corrupt.pt", "{tmp}/x.pt"], "corrupt.pt is corrupt"),
        (["export", "{tmp}/corrupt.pt", "{tmp}"], "is a folder: give the path of the file"),
        (["generate", "ns2d", "--out", "{tmp}", "--n-samples", "1", "--resolution", "8"],
         "is a folder"),
        (["generate", "nope", "--out", "{tmp}/g.h5", "--n-samples", "1", "--resolution", "8"],
         "unknown generator 'nope'"),
        (["generate", "ns2d", "--out", "{tmp}/g.h5", "--n-samples", "1", "--resolution", "8",
          "--param", "nuu=1"], "unknown parameter(s) nuu"),
        (["generate", "ns2d", "--out", "{tmp}/g.h5", "--n-samples", "1", "--resolution", "8",
          "--param", "nu=abc"], "parameter nu='abc': expected a number"),
        (["evaluate", "{tmp}/corrupt.pt", "--data", "{tmp}/nodata.h5"],
         "--data: " + "{tmp}/nodata.h5 does not exist"),  # checked before the checkpoint
        (["pretrain", "{nosrc}", "--out", "{tmp}/r"], "nosrc.yaml: data: source"),
        # argparse: usage, then one error line
        (["pretrain", "{cfg}", "--out", "{tmp}/r", "--max-steps", "0"], "expected an int >= 1"),
        (["pretrain", "{cfg}", "--out", "{tmp}/r", "--resume", "--overwrite"], "not allowed"),
        (["pretrain", "{cfg}", "--out", "{tmp}/r", "--set", "optim.lr"], "expected KEY=VALUE"),
        (["pretrain", "{cfg}", "--out", "{tmp}/r", "--set", "optim.lr=fast"],
         "optim.lr: expected float, got str 'fast'"),
        (["pretrain", "{cfg}", "--out", "{tmp}/r", "--set", "optim.lrr=1"], "optim.lrr"),
        # --set through a list applies (the missing source is reported), or is refused
        (["pretrain", "{cfg}", "--out", "{tmp}/r", "--set", "data.sources.0={tmp}/missing.h5"],
         "missing.h5"),
        (["pretrain", "{cfg}", "--out", "{tmp}/r", "--set", "data.sources.1=x.h5"],
         "cannot set data.sources.1: data.sources is a list of 1 entries"),
        (["pretrain", "{cfg}", "--out", "{tmp}/r", "--set", "optim.lr=1e-3", "--set",
          "optim.lr.x=1"], "cannot set optim.lr.x: optim.lr is float 0.001"),
        (["demo", "--port", "99999"], "--port: expected a port number 1..65535, got '99999'"),
        (["evaluate", "{tmp}/corrupt.pt", "--data", "{ns}", "--last", "0"], "an int >= 1"),
        (["generate", "ns2d", "--out", "{tmp}/g.h5", "--n-samples", "2", "--resolution", "x"],
         "expected an int >= 1, got 'x'"),
    ],
)  # fmt: skip
def test_every_error_is_one_line(ns_file, tmp_path, capsys, argv, expected):
    (tmp_path / "empty.yaml").write_text("# nothing yet\n")
    (tmp_path / "corrupt.pt").write_bytes(b"not a checkpoint" * 8)
    (tmp_path / "old" / "checkpoints").mkdir(parents=True)
    (tmp_path / "old" / "checkpoints" / "step_00000099.pt").write_bytes(b"")
    (tmp_path / "nosrc.yaml").write_text(f"data:\n  sources: [{tmp_path / 'gone.h5'}]\n")
    names = {"tmp": tmp_path, "ns": ns_file, "cfg": _config(tmp_path, ns_file),
             "nosrc": tmp_path / "nosrc.yaml"}  # fmt: skip
    expected = expected.format(**names)
    try:
        code = main(["-q", *(a.format(**names) for a in argv)])
    except SystemExit as stop:  # argparse
        code = stop.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("dpot-lab")]
    assert code == 2 and "Traceback" not in err and len(lines) == 1 and expected in lines[0]


def test_finetune_from_a_file_that_mostly_does_not_fit_or_holds_nan(ns_file, tmp_path, capsys,
                                                                      caplog):  # fmt: skip
    torch.manual_seed(0)
    small = {k: v for k, v in TINY.items() if k != "preset"}
    src = dl.save_checkpoint(tmp_path / "one_block.pt", dl.create_model("nano", **small))
    cfg = _config(tmp_path, ns_file, model=dict(TINY, depth=4))  # 3 of 4 blocks not in --from
    argv = ["-q", "finetune", cfg, "--from", str(src)]
    assert main([*argv, "--out", str(tmp_path / "ft")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "under half of the model comes from the source" in err[0]
    assert "init_allow_partial: true (--allow-partial)" in err[0]
    with caplog.at_level("WARNING"):
        assert main([*argv, "--out", str(tmp_path / "ft2"), "--allow-partial"]) == 0
    assert "under half of the model comes from the source" in caplog.text
    assert yaml.safe_load((tmp_path / "ft2" / "config.yaml").read_text())["init_allow_partial"]

    ckpt = torch.load(src, weights_only=True)
    ckpt["model"]["blocks.0.mlp.0.weight"][3, 1] = float("nan")
    torch.save(ckpt, tmp_path / "nan.pt")
    cfg = _config(tmp_path, ns_file)
    assert main(["-q", "finetune", cfg, "--from", str(tmp_path / "nan.pt"), "--out",
                 str(tmp_path / "ft3")]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nan.pt: tensor blocks.0.mlp.0.weight holds 1 non-finite" in err[0]


def _nan_evaluation(ns_file, folder, sample: int, frame: int):
    """A tiny checkpoint (t_in 4) and a copy of ``ns_file`` with one NaN at ``sample, frame``."""
    torch.manual_seed(0)
    ckpt = dl.save_checkpoint(folder / "m.pt", dl.create_model(
        "nano", **{k: v for k, v in TINY.items() if k != "preset"}, img_size=16, in_channels=1,
        out_channels=1, in_timesteps=4))  # fmt: skip
    ds = dl.open_dataset(ns_file).load()
    ds["vorticity"][sample, frame, 2, 3] = np.nan
    with pytest.warns(UserWarning, match="NaN"):
        bad = dl.data.save(ds, folder / f"nan_{sample}_{frame}.h5")
    return ckpt, bad


def test_evaluate_refuses_nan_in_the_scored_frames(ns_file, tmp_path, capsys):
    ckpt, bad = _nan_evaluation(ns_file, tmp_path, sample=4, frame=6)  # frame 6: scored (t_in 4)
    assert main(["-q", "evaluate", str(ckpt), "--data", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"dpot-lab evaluate: error: {bad}: the truth holds NaN/Inf in its scored frames: first in "
        "field 'vorticity', sample 4, frame 6 (time 1.75); 1 (sample, frame, field) entries in "
        "all; the scores would be NaN"
    ]


def test_evaluate_warns_of_nan_predictions_naming_the_samples(ns_file, tmp_path, caplog):
    ckpt, bad = _nan_evaluation(ns_file, tmp_path, sample=3, frame=1)  # an input frame: NaN rollout
    with caplog.at_level("WARNING"):
        assert main(["-q", "evaluate", str(ckpt), "--data", str(bad)]) == 0
    assert f"{bad}: the prediction of sample(s) [3] is NaN/Inf (the model diverged" in caplog.text


def test_the_nan_hint_names_a_config_key_that_works(ns_file, tmp_path, capsys):
    ds = dl.open_dataset(ns_file).load()
    ds["vorticity"][1, 5, 2, 3] = np.nan  # a training trajectory (n_test 2: samples 4, 5 test)
    with pytest.warns(UserWarning, match="NaN"):
        bad = dl.data.save(ds, tmp_path / "nan.h5")
    cfg = _config(tmp_path, bad)
    argv = ["-q", "pretrain", cfg, "--max-steps", "8"]
    assert main([*argv, "--out", str(tmp_path / "r1")]) == 2
    err = capsys.readouterr().err
    hint = re.search(r"in a run config: (\S+): (\S+)\)", err)
    assert "sample 1, frame 5" in err and hint, err
    with pytest.warns(UserWarning, match="check_finite dropped 1 of 4 samples: sample 1: NaN/Inf"):
        assert main([*argv, "--out", str(tmp_path / "r2"), "--set", "=".join(hint.groups())]) == 0
    assert dl.load_checkpoint(tmp_path / "r2" / "checkpoints" / "last.pt").metadata["step"] == 8


def test_generate_help_lists_every_generator_with_its_parameters(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["generate", "--help"])
    out = capsys.readouterr().out
    assert stop.value.code == 0 and out.startswith("usage: dpot-lab generate")
    for name, entry in dl.data.generation.GENERATORS.items():
        line = re.search(rf"^  {entry.name}(?: \(also ([^)]*)\))?: ", out, re.M)
        assert line and (name == entry.name or name in line.group(1).split(", ")), name
    out = out.replace("\n      ", " ")  # the parameters, wrapped, as one line
    assert "  shallow_water (also swe): 2D shallow water" in out
    assert "nu=0.001, forcing='fno', n_frames=20" in out  # ns2d's keyword defaults
    assert "g=1.0, h_in=2.0, h_out=1.0" in out  # shallow water's defaults (a **params generator)


def test_overwrite_starts_an_existing_run_anew(ns_file, tmp_path):
    old = tmp_path / "run" / "checkpoints" / "step_00000099.pt"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"")
    argv = ["-q", "pretrain", _config(tmp_path, ns_file), "--out", str(tmp_path / "run")]
    assert main([*argv, "--max-steps", "1", "--overwrite"]) == 0
    assert not old.exists() and (old.parent / "last.pt").is_file()


def _run_files(run_dir) -> dict:
    """Every file of a run directory but its lock, with its bytes."""
    return {
        str(p.relative_to(run_dir)): p.read_bytes()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.name != "run.lock"
    }


def test_overwrite_with_a_bad_source_keeps_the_earlier_run(ns_file, tmp_path, capsys):
    """The data is checked before --overwrite touches the run: a typo, a NaN in the held-out
    split, or a missing --from file cost nothing."""
    ds = dl.open_dataset(ns_file).load()
    ds["vorticity"][5, 6, 2, 2] = np.nan  # sample 5 is held out (n_test 2)
    with pytest.warns(UserWarning, match="NaN"):
        nan_file = dl.data.save(ds, tmp_path / "nan.h5")
    run = tmp_path / "run"
    argv = ["-q", "pretrain", _config(tmp_path, ns_file), "--out", str(run), "--max-steps", "1"]
    assert main(argv) == 0
    before = _run_files(run)
    assert "checkpoints/best.pt" in before
    capsys.readouterr()
    for sources, expected in (
        (tmp_path / "typo.h5", "typo.h5 does not exist"),
        (nan_file, "non-finite value in variable 'vorticity', sample 5, frame 6"),
    ):
        assert main([*argv, "--overwrite", "--set", f"data.sources=[{sources}]"]) == 2
        err = capsys.readouterr().err
        assert err.count("error:") == 1 and expected in err
        assert _run_files(run) == before and not list(tmp_path.glob("run.old-*"))
    ft = ["-q", "finetune", _config(tmp_path, ns_file), "--out", str(run), "--overwrite"]
    assert main([*ft, "--from", str(tmp_path / "gone.pt")]) == 2
    assert "gone.pt" in capsys.readouterr().err and _run_files(run) == before


def test_a_second_run_on_one_out_is_refused_with_the_holders_pid(ns_file, tmp_path, capsys):
    """A run that trains (held at its first step) in a child process; a second run on its --out
    is refused at once; once the child is killed, its lock is taken over."""
    run, cfg = tmp_path / "run", _config(tmp_path, ns_file)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time\nfrom dpot_lab.train import Trainer\n"
         "def hold(event):\n    if event['event'] == 'step':\n"
         "        print('training', flush=True)\n        time.sleep(120)\n"
         f"Trainer({cfg!r}, run_dir={str(run)!r}, callbacks=[hold]).fit()"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    argv = ["-q", "pretrain", cfg, "--out", str(run), "--max-steps", "1"]
    try:
        assert holder.stdout.readline().strip() == "training"
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"{run} is in use by another run (PID {holder.pid} " in err
        assert not (run / "checkpoints").exists()
    finally:
        holder.kill()
        holder.wait(10)
    assert main(argv) == 0


def test_a_run_that_writes_no_checkpoint_fails(ns_file, tmp_path, capsys):
    """Fine-tuning weights with NaN skip every step: no checkpoint, so no exit 0."""
    cfg = _config(tmp_path, ns_file)
    assert main(["-q", "pretrain", cfg, "--out", str(tmp_path / "pre"), "--max-steps", "1"]) == 0
    ckpt = torch.load(tmp_path / "pre" / "checkpoints" / "last.pt", weights_only=True)
    ckpt["model"]["pos_embed"].fill_(float("nan"))
    torch.save(ckpt, tmp_path / "nan.pt")
    capsys.readouterr()
    argv = ["-q", "finetune", cfg, "--out", str(tmp_path / "ft"), "--max-steps", "2"]
    assert main([*argv, "--from", str(tmp_path / "nan.pt")]) == 2
    out, err = capsys.readouterr()
    assert "run directory:" not in out and err.count("error:") == 1
    assert not (tmp_path / "ft" / "checkpoints" / "last.pt").exists()


def test_resume_with_a_changed_recipe_needs_allow_changes(ns_file, tmp_path, capsys):
    run = str(tmp_path / "run")
    cfg = _config(tmp_path, ns_file)
    assert main(["-q", "pretrain", cfg, "--out", run, "--max-steps", "1"]) == 0
    capsys.readouterr()
    again = ["-q", "pretrain", cfg, "--out", run, "--max-steps", "2", "--set", "optim.lr=1e-4"]
    assert main([*again, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "changed recipe: optim.lr 0.001 -> 0.0001" in err and "--allow-changes" in err
    assert main([*again, "--allow-changes"]) == 2
    assert "--allow-changes: only with --resume" in capsys.readouterr().err
    assert main([*again, "--resume", "--allow-changes"]) == 0
    assert dl.models.read_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 2
