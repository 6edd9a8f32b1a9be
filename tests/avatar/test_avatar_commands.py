"""`--avatar NAME.avatar` on sync, demo and serve, and the integrations' stream_inputs: the
avatar's own student, codec and footage run; clashing or broken inputs are one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from avatar_helpers import SR, untrained_avatar

from lipforcing.avatar import Avatar, stream_inputs
from lipforcing.cli.main import main
from lipforcing.media.io import read_video


@pytest.fixture(scope="module")
def avatar(tmp_path_factory):
    return untrained_avatar(tmp_path_factory.mktemp("avatars"))


def speech(tmp_path, seconds=1.0):
    t = np.arange(int(seconds * SR)) / SR
    wav = tmp_path / "speech.wav"
    import soundfile as sf

    sf.write(wav, (0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 3 * t) > 0)), SR)
    return wav


def test_sync_with_an_avatar_uses_its_footage_and_networks(avatar, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    argv = ["sync", "--avatar", str(avatar), "--audio", str(speech(tmp_path)), "--out", str(out)]
    assert main(argv + ["--device", "cpu"]) == 0
    clip = read_video(out)
    assert clip.frames.shape[1:] == (128, 128, 3) and len(clip.frames) == 25
    pipe, source = stream_inputs(avatar)
    assert pipe.checkpoint.endswith("me.avatar/student.safetensors")
    base = Avatar.load(avatar).source(pipe.preset.media)
    assert np.array_equal(source.crops, base.crops) and len(source) == 50


def test_demo_with_an_avatar(avatar, tmp_path):
    out = tmp_path / "demo"
    argv = ["demo", "--avatar", str(avatar), "--seconds", "1", "--out", str(out)]
    assert main(argv + ["--device", "cpu"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["input"].startswith(f"avatar {avatar}") and metrics["frames"] == 25
    assert metrics["checkpoint"].endswith("me.avatar/student.safetensors")


def test_clashing_and_broken_avatars_are_one_line_errors(avatar, tmp_path, capsys):
    wav = str(speech(tmp_path))
    base = ["sync", "--audio", wav, "--out", str(tmp_path / "o.mp4"), "--device", "cpu"]
    cases = [
        (base + ["--avatar", str(avatar), "--checkpoint", "x.safetensors"], "drop --checkpoint"),
        (base, "give --video"),
        (base + ["--avatar", str(tmp_path / "none.avatar")], "no such avatar folder"),
    ]
    broken = tmp_path / "broken.avatar"
    broken.mkdir()
    (broken / "card.json").write_text(
        json.dumps({**Avatar.load(avatar).card, "files": {"student.safetensors": {"bytes": 1}}})
    )
    cases.append((base + ["--avatar", str(broken)], "incomplete: student.safetensors is missing"))
    for argv, message in cases:
        assert main(argv) == 2
        assert message in capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize("example", ["livekit_avatar", "pipecat_pipeline"])
def test_integration_examples_take_an_avatar(avatar, monkeypatch, example):
    """LIPFORCING_AVATAR in the voice-agent examples: the avatar's student and footage."""
    import importlib.util
    from pathlib import Path
    from types import SimpleNamespace

    pytest.importorskip(example.split("_")[0])
    path = Path(__file__).resolve().parents[2] / "examples" / f"{example}.py"
    spec = importlib.util.spec_from_file_location(f"example_{example}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setenv("LIPFORCING_AVATAR", str(avatar))
    if example == "livekit_avatar":
        proc = SimpleNamespace(userdata={})
        module.load(proc)
        pipeline, source = proc.userdata["pipeline"], proc.userdata["source"]
    else:
        pipeline, source = module.model()
    assert pipeline.checkpoint.endswith("me.avatar/student.safetensors")
    assert len(source) == 50 and source.name == "me (avatar)"
