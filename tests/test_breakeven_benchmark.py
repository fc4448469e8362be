"""benchmarks/breakeven.py --quick: the whole benchmark at tiny size, its table written with the
cost of making the model charged by the corpus's sampling weights."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import yaml

from dpot_lab.configfile import read_yaml
from dpot_lab.studies.breakeven import corpus_shares
from dpot_lab.viz import DEMO_DATA

ROOT = Path(__file__).resolve().parents[1]


def test_quick_run_writes_the_solve_count_table(tmp_path):
    spec = importlib.util.spec_from_file_location("breakeven", ROOT / "benchmarks" / "breakeven.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
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
