"""benchmarks/gpu_check.py --smoke: every part of the GPU check at tiny size on the CPU, with every
table the full run prints."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_smoke_runs_every_part_and_prints_every_table(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DPOT_LAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OUT", str(tmp_path / "out"))
    check = _gpu_check()
    check.main(["--smoke"])
    printed = capsys.readouterr().out
    for heading in (
        "## Parity", "| model | check | device vs cpu / fp32 |",
        "## Training step, bf16 autocast", "| preset | bare samples/s | Trainer samples/s | "
        "Trainer / bare | counted GFLOP | paper GFLOP | MFU (counted) | MFU (paper) | "
        "bare peak MiB | Trainer peak MiB | syncs in Trainer steps |",
        "## notebook_pretrain_gpu", "| source | test samples | L2RE | persistence |",
    ):  # fmt: skip
        assert " ".join(heading.split()) in " ".join(printed.split()), heading
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    found = check.find_fixtures(None)  # a clone without the release's golden files skips them
    assert (report["parity_fp32"] or found is None) and all(r["ok"] for r in report["parity_fp32"])
    assert [r["model"] for r in report["parity_bf16"]] == ["shipped", "Ti (random weights)"]
    assert all(r["ok"] for r in report["parity_bf16"])
    (speed,) = report["speed"]
    assert speed["bare_sps"] > 0 and speed["trainer_sps"] > 0 and speed["counted_gflop"] > 0
    nb = report["notebook"]
    names = ["ns2d", "ns2d_2", "ns2d_3", "diffusion_reaction", "shallow_water", "cns2d"]
    assert list(nb["sources"]) == names and nb["steps"] >= 2
    assert all(math.isfinite(s["l2re"]) and s["persistence"] > 0 for s in nb["sources"].values())


def test_counted_flops_count_a_complex_matmul_as_four_real_ones():
    check = _gpu_check()
    mapping = {op: check._complex_aware(f) for op, f in check.MATMULS.items()}
    a, b = torch.randn(8, 16), torch.randn(16, 4)
    counts = []
    for x, y in ((a, b), (torch.complex(a, a), torch.complex(b, b))):
        with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
            x @ y
        counts.append(counter.get_total_flops())
    assert counts == [2 * 8 * 16 * 4, 4 * 2 * 8 * 16 * 4]
