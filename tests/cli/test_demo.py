"""`lipforcing demo`: the built-in sample end to end (needs the shipped checkpoint)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lipforcing.cli.main import main

ASSETS = Path(__file__).resolve().parents[2] / "src" / "lipforcing" / "assets" / "tiny"


def test_missing_checkpoint_names_the_training_command(tmp_path, capsys):
    code = main(
        ["demo", "--checkpoint", str(tmp_path / "none.safetensors"), "--out", str(tmp_path)]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "lipforcing train" in err


def test_video_without_audio_is_refused(tmp_path, capsys):
    assert main(["demo", "--video", str(tmp_path / "v.mp4"), "--out", str(tmp_path)]) == 2
    assert "--video and --audio" in capsys.readouterr().err


@pytest.mark.skipif(
    not (ASSETS / "student.safetensors").is_file(),
    reason="the built-in checkpoint assets/tiny/student.safetensors is not trained yet",
)
def test_demo_writes_video_sheet_and_metrics(tmp_path, capsys):
    from lipforcing.media.io import read_video

    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--seconds", "2"]) == 0
    printed = capsys.readouterr().out
    assert "TTFF" in printed and "FPS" in printed and "real-time factor" in printed
    clip = read_video(out / "output.mp4")
    assert clip.frames.shape[1:] == (256, 256, 3)  # the SynthTalk source's frame size
    assert abs(len(clip.frames) - 50) <= 1 and clip.audio is not None and len(clip.audio)
    assert (out / "side_by_side.png").stat().st_size > 10_000
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["frames"] == 50 and metrics["fps"] > 0 and metrics["ttff_ms"] > 0
