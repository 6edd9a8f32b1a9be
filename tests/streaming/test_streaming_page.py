"""The browser page in headless Chromium (skipped where no chromium binary is installed)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="no chromium binary installed")
def test_page_streams_in_headless_chromium(tmp_path):
    out = tmp_path / "page.png"
    cmd = [sys.executable, str(ROOT / "scripts" / "screenshot_page.py"), "--random"]
    run = subprocess.run(
        [*cmd, "--wait", "6", "--out", str(out)], capture_output=True, text=True, timeout=240
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    stats = json.loads(run.stdout.split("page stats: ")[1].splitlines()[0])
    values = dict(s.split(": ", 1) for s in stats["stats"])
    assert int(values["Frames"]) > 25  # frames came back over the WebSocket and were counted
    assert int(values["Speech frames"]) > 0  # the built-in speech reached the model
    assert values["TTFF"].endswith("ms")
