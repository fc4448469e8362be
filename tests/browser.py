"""What the browser tests share: Debian's Chromium (``/usr/bin/chromium``), which Playwright only
drives (it never downloads a browser), and a free local port for the server under test.

Imported as ``from browser import ...``: tests/ is not a package, so pytest's default import mode
("prepend") puts tests/ on ``sys.path`` when it loads tests/conftest.py.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]  # fmt: skip


def chromium_launch_args() -> dict[str, Any]:
    """Keywords for Playwright's ``chromium.launch``: Debian's Chromium, headless. Skips the
    calling test (or fixture) when Playwright or Chromium is missing."""
    pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium")
    return {"executable_path": CHROMIUM, "headless": True, "args": CHROMIUM_ARGS}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
