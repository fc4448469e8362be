"""benchmarks/breakeven.py --quick: the whole benchmark at tiny size, its table written with the
cost of making the model charged by the corpus's sampling weights."""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
from pathlib import Path

import pytest
import yaml

from dpot_lab.configfile import read_yaml
from dpot_lab.studies.breakeven import corpus_shares
from dpot_lab.viz import DEMO_DATA

ROOT = Path(__file__).resolve().parents[1]


def _benchmark():
    spec = importlib.util.spec_from_file_location("breakeven", ROOT / "benchmarks" / "breakeven.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_run_writes_the_solve_count_table(tmp_path):
    module = _benchmark()
    out = tmp_path / "breakeven.md"
    module.main(["--quick", "--pretrain-seconds", "7000", "--corpus-data-seconds", "900",
                 "--out", str(out)])  # fmt: skip
    text = out.read_text()
    assert "- command: `python " in text and "--quick" in text
    config = read_yaml(DEMO_DATA.parent / yaml.safe_load(DEMO_DATA.read_text())["config"])
    share = corpus_shares(config["data"]["sources"], config["data"]["weights"])["ns2d"]
    made = re.search(r"cost of making: ([\d,]+) CPU-s = corpus share ([\d.]+) × \(900 data \+ "
                     r"7,000 pre-training\) \+ fine-tuning set ([\d,]+) .* \+ fine-tuning ([\d,]+)",
                     text)  # fmt: skip
    assert made, text
    cost, printed_share, ft_data, ft_train = (float(g.replace(",", "")) for g in made.groups())
    assert printed_share == pytest.approx(share, abs=5e-4)
    assert cost == pytest.approx(share * 7900 + ft_data + ft_train, abs=2)
    row = re.search(r"\| 32² \| ([\d.e-]+) \| ([\d.e-]+) \| ([\d.e-]*) \| (.+) \|", text)
    assert row, text
    count = row.group(4)
    assert count.startswith(("none", "never")) or float(count.split()[-1].replace(",", "")) > 0


def test_each_pretraining_stage_is_shared_by_its_own_weights(tmp_path):
    """Stage 1: 100 s × 2 threads, ns2d and DR weighted 1 : 3; stage 2: 50 s × 1 thread, 1 : 1."""
    module = _benchmark()
    specs = [
        {"generate": "ns2d", "n_samples": 4},
        {"generate": "diffusion_reaction", "n_samples": 4},
    ]
    runs = []
    for k, (seconds, weights) in enumerate([(100.0, [1, 3]), (50.0, [1, 1])]):
        run = tmp_path / f"stage{k + 1}"
        run.mkdir()
        config = {"batch_size": 10, "data": {"sources": specs, "weights": weights}}
        (run / "config.yaml").write_text(yaml.safe_dump(config))
        record = {"event": "train", "step": 100, "samples_per_s": 1000 / seconds}
        (run / "metrics.jsonl").write_text(json.dumps(record) + "\n")
        runs.append(str(run))
    args = argparse.Namespace(pretrain_seconds=None, pretrain_run=runs, pretrain_threads=[2, 1])
    total, shares, source = module.pretraining_charge(args, {})
    assert total == pytest.approx(250.0)
    assert shares["ns2d"] == pytest.approx((200 * 0.25 + 50 * 0.5) / 250)
    assert shares["diffusion_reaction"] == pytest.approx((200 * 0.75 + 50 * 0.5) / 250)
    assert "100 s × 2 threads" in source and "50 s × 1 threads" in source
    args.pretrain_threads = [2, 2, 2]
    with pytest.raises(SystemExit, match="--pretrain-threads: expected 1 or 2 values"):
        module.pretraining_charge(args, {})
