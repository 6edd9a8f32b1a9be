"""`lipforcing info` and `stream-smoke`: counts, checkpoint errors, a short stream."""

from __future__ import annotations

import dataclasses
import json

import pytest

from lipforcing.cli.main import main
from lipforcing.config import get_preset
from lipforcing.models import build_model
from lipforcing.models.checkpoints import save_checkpoint


@pytest.mark.parametrize(("name", "base"), [("wan-1.3b", 1.419e9), ("wan-14b", 14.29e9)])
def test_info_json_reports_base_and_lipsync(name, base, capsys):
    assert main(["info", "--preset", name, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    p = out["params"]
    print(name, p)
    assert out["preset"] == name and out["config"]["model"]["dim"] == get_preset(name).model.dim
    assert abs(p["base"] - base) / base < 0.005
    assert p["lipsync"] > 0 and p["base"] + p["lipsync"] == p["total"]


def _tiny(layers=1):
    preset = get_preset("tiny").with_attention("block_causal")
    return dataclasses.replace(preset, model=dataclasses.replace(preset.model, num_layers=layers))


def test_info_loads_a_checkpoint(tmp_path, capsys):
    preset = _tiny()
    path = save_checkpoint(tmp_path / "s.safetensors", build_model(preset.model), preset)
    assert main(["info", "--checkpoint", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["checked_params"] == out["params"]["total"]


def test_corrupt_checkpoint_is_one_error_line(tmp_path, capsys):
    preset = _tiny()
    path = save_checkpoint(tmp_path / "s.safetensors", build_model(preset.model), preset)
    path.write_bytes(b"\x00" * 64)
    assert main(["info", "--checkpoint", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_mismatched_checkpoint_is_refused(tmp_path, capsys):
    small, big = _tiny(1), _tiny(2)
    path = save_checkpoint(tmp_path / "s.safetensors", build_model(small.model), small)
    path.with_suffix(".json").write_text(json.dumps({"preset": big.to_dict()}))
    assert main(["info", "--checkpoint", str(path)]) == 2
    err = capsys.readouterr().err
    assert "does not match" in err and err.count("\n") == 1


def test_stream_smoke_tiny(capsys):
    assert main(["stream-smoke", "--preset", "tiny", "--chunks", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["chunks"] == 3 and out["finite"] and out["chunks_per_s"] > 0
