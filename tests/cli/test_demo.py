"""`lipforcing demo`: the built-in sample end to end with the shipped checkpoint."""

from __future__ import annotations

import json

from lipforcing.cli.main import main


def test_missing_checkpoint_names_the_training_command(tmp_path, capsys):
    code = main(
        ["demo", "--checkpoint", str(tmp_path / "none.safetensors"), "--out", str(tmp_path)]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "lipforcing train" in err


def test_video_without_audio_is_refused(tmp_path, capsys):
    assert main(["demo", "--video", str(tmp_path / "v.mp4"), "--out", str(tmp_path)]) == 2
    assert "--video and --audio" in capsys.readouterr().err


def test_demo_writes_video_sheet_and_metrics(tmp_path, capsys):
    """The built-in run (6 s): our SyncNet finds the output in sync with the new speech, more
    than the unmodified source it was made from (the independent oracle: a separately trained
    network), at offset 0."""
    from lipforcing.media.io import read_video

    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "TTFF" in printed and "FPS" in printed and "real-time factor" in printed
    clip = read_video(out / "output.mp4")
    assert clip.frames.shape[1:] == (256, 256, 3)  # the SynthTalk source's frame size
    assert abs(len(clip.frames) - 150) <= 1 and clip.audio is not None
    assert abs(len(clip.audio) / 16_000 - 6.0) <= 0.04  # audio within one frame of 6 s
    assert (out / "side_by_side.png").stat().st_size > 10_000
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["frames"] == 150 and metrics["fps"] > 0 and metrics["ttff_ms"] > 0
    assert metrics["sync_c_output"] > metrics["sync_c_source"] + 0.1
    assert metrics["sync_offset_output"] == 0
