"""The server soak harness, for a minute (the 8-hour run is `scripts/soak_server.py`): rows are
appended as it goes, and every speech sample sent comes back, in order, through the server."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_module():
    spec = importlib.util.spec_from_file_location(
        "soak_server", ROOT / "scripts" / "soak_server.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_server_soak_for_a_minute(tmp_path):
    soak = load_module()
    path = tmp_path / "soak.csv"
    soak.main(["--hours", str(1 / 60), "--every-s", "10", "--csv", str(path)])
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= 4 and float(rows[-1]["stream_h"]) * 3600 > 40
    assert int(rows[-1]["audio_mismatch"]) == 0
    sent, back = float(rows[-1]["audio_sent_s"]), float(rows[-1]["audio_back_s"])
    assert back > 0.8 * sent - 2.0  # what is still queued when the last row is written
    summary = soak.summarise(path)
    assert summary["audio_mismatch"] == 0 and (tmp_path / "soak.png").is_file()
