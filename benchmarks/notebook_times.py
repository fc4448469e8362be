"""Wall time of the walk's notebooks, 01_pretrain -> 02_finetune -> 03_rollout, run as a user runs
them (a real Jupyter kernel, every cell in order, one OUT_DIR, a fresh data cache so that data
generation counts), in quick mode and then 02 and 03 in full mode. Prints one table.

    python benchmarks/notebook_times.py                 # quick 01-03, then full 02-03
    python benchmarks/notebook_times.py --quick-only

01's full mode is the GPU run of configs/notebook_pretrain_gpu.yaml; without a GPU it runs the
quick config, so on a CPU only its quick time is measured. Full 02 starts from the shipped model
(no 01 checkpoint in its OUT_DIR), as a user without a GPU does.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import nbformat
import torch
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def run(name: str, out_dir: Path, quick: bool) -> float:
    """Seconds to execute notebook ``name`` with OUT_DIR = ``out_dir`` in quick or full mode."""
    os.environ["DPOT_LAB_QUICK"] = "1" if quick else "0"
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell(f"OUT_DIR = {str(out_dir)!r}"))
    start = time.perf_counter()
    client = NotebookClient(nb, timeout=3600, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}})  # fmt: skip
    client.execute()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick-only", action="store_true", help="skip the full-mode runs")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["DPOT_LAB_CACHE"] = str(Path(tmp) / "cache")
        for name in ("01_pretrain", "02_finetune", "03_rollout"):
            rows.append((name, "quick", run(name, Path(tmp) / "quick", quick=True)))
        if not args.quick_only:
            for name in ("02_finetune", "03_rollout"):
                rows.append((name, "full", run(name, Path(tmp) / "full", quick=False)))
    print(f"# notebook wall times ({os.cpu_count()} CPUs, torch threads "
          f"{torch.get_num_threads()}, fresh data cache)")  # fmt: skip
    print("| notebook | mode | seconds |\n|---|---|---|")
    for name, mode, seconds in rows:
        print(f"| {name} | {mode} | {seconds:.0f} |")


if __name__ == "__main__":
    main()
