"""What every benchmark writes beside its tables (the machine, the date, the command) and the
markdown file under benchmarks/results/ that holds them, written whole or not at all."""

from __future__ import annotations

import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

import torch

from dpot_lab.atomic import atomic_path


def machine() -> str:
    """CPU model, cores and threads, torch version."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines()
                 if ln.startswith("model name")]  # fmt: skip
        cpu = names[0] if names else cpu
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} with "
            f"{torch.get_num_threads()} threads")  # fmt: skip


def provenance(device: str | None = None, argv: list[str] | None = None) -> list[str]:
    """The machine (and ``device``), date and command lines of a results file; ``argv``: the
    command's arguments when they are not ``sys.argv``."""
    command = sys.argv if argv is None else [sys.argv[0], *argv]
    return [
        f"- machine: {machine()}" + (f", device {device}" if device else ""),
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- command: `{' '.join(['python', *command])}`",
    ]


def write_report(out: str | Path, header: list[str], tables: list[str]) -> None:
    """``header`` lines, then the tables, to the markdown file ``out``."""
    out = Path(out)
    with atomic_path(out) as tmp:
        tmp.write_text("\n".join(header) + "\n\n" + "\n\n".join(tables) + "\n")
    print(f"wrote {out}")
