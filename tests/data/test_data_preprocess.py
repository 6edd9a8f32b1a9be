"""data.preprocess and the `preprocess` command on synthetic SynthTalk-style clips and bad files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile

from lipforcing.cli.main import main
from lipforcing.config import tiny
from lipforcing.data.preprocess import find_shards, load_shard, write_shard
from lipforcing.errors import UserError
from lipforcing.media.align import canonical_template, fit_similarity, warp_to_crop
from lipforcing.media.audio import audio_features
from lipforcing.media.faces import track_faces
from lipforcing.media.io import read_video, write_video

LANDMARKS = np.array([[80.0, 70.0], [120.0, 72.0], [100.0, 95.0], [84.0, 118.0], [116.0, 119.0]])


def frames(t: int, h: int = 160, w: int = 200) -> np.ndarray:
    """Smooth colour ramps that scroll by one pixel per frame."""
    yy, xx = np.mgrid[0:h, 0:w]
    ramp = np.stack([(xx * 3) % 256, (yy * 2) % 256, (xx + yy) % 256], -1).astype(np.uint8)
    return np.stack([np.roll(ramp, i, axis=1) for i in range(t)])


def synth_clip(folder, name, t=30, audio=True, wav=False, npz=True):
    """A SynthTalk-layout clip: <name>.mp4 (+ <name>.npz landmarks5, + <name>.wav)."""
    sound = 0.2 * np.sin(np.arange(int(t / 25 * 16_000)) * 0.05).astype(np.float32)
    write_video(folder / f"{name}.mp4", frames(t), 25.0, audio=sound if audio else None)
    if wav:
        soundfile.write(folder / f"{name}.wav", sound, 16_000)
    if npz:
        np.savez(folder / f"{name}.npz", landmarks5=np.repeat(LANDMARKS[None], t, 0))
    return folder / f"{name}.mp4"


def test_shards_from_synthtalk_layout(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    synth_clip(src, "a")
    synth_clip(src, "b", audio=False, wav=True)  # clips-256 layout: silent mp4 + wav beside
    out = tmp_path / "shards"
    assert main(["preprocess", str(src), "--out", str(out), "--preset", "tiny"]) == 0
    preset = tiny()
    for name in ("a", "b"):
        arrays, meta = load_shard(out / name)
        t, s = meta["frames"], preset.media.crop_size
        assert t == 30 and meta["found_ratio"] == 1.0 and meta["landmarks"] == "npz"
        assert arrays["crops"].shape == (t, s, s, 3) and arrays["crops"].dtype == np.uint8
        assert arrays["found"].all() and arrays["mask"].shape == (s, s)
        # constant landmarks: every transform is the exact fit onto the template
        fit = fit_similarity(LANDMARKS, canonical_template(s))
        assert np.allclose(arrays["transforms"], fit[None], atol=1e-9)
        decoded = read_video(src / f"{name}.mp4").frames
        assert np.array_equal(arrays["crops"], warp_to_crop(decoded, arrays["transforms"], s))
        assert abs(len(arrays["audio"]) - t * 640) <= 640
        feats = audio_features(np.asarray(arrays["audio"]), preset.audio, t)
        assert np.allclose(arrays["audio_features"], feats)
        assert arrays["audio_features"].shape == (t, preset.audio.feature_dim)
    report = json.loads((out / "report.json").read_text())
    assert sorted(report["done"]) == ["a", "b"] and not report["failed"]
    # resumable: a rerun skips complete shards and leaves them alone
    stamp = (out / "a" / "meta.json").stat().st_mtime_ns
    (out / ".b.tmp").mkdir()  # debris of an interrupted run
    assert main(["preprocess", str(src), "--out", str(out)]) == 0
    assert (out / "a" / "meta.json").stat().st_mtime_ns == stamp
    assert sorted(json.loads((out / "report.json").read_text())["skipped"]) == ["a", "b"]
    # --fps conforms the clip: 30 frames at 25 fps -> 29 at 24 fps (1.2 s)
    out24 = tmp_path / "shards24"
    assert main(["preprocess", str(src / "a.mp4"), "--out", str(out24), "--fps", "24"]) == 0
    assert load_shard(out24 / "a")[1]["frames"] == 29
    # a rate at which the tiny preset's mel windows would change size is refused in one line
    assert main(["preprocess", str(src / "a.mp4"), "--out", str(out24), "--fps", "30"]) == 2
    assert "changes the size" in capsys.readouterr().err


def test_bad_inputs_are_reported_not_fatal(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    good = synth_clip(src, "good")
    silent = synth_clip(src, "silent", audio=False)  # no audio stream, no wav
    noface = synth_clip(src, "noface", npz=False)  # the detector finds nothing
    junk = src / "junk.mp4"
    junk.write_bytes(b"garbage" * 50)
    missing = src / "missing.mp4"
    out = tmp_path / "out"
    argv = [str(p) for p in (good, silent, noface, junk, missing)]
    assert main(["preprocess", *argv, "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["done"] == ["good"]
    failed = report["failed"]
    assert "no audio" in failed[str(silent)] and "face" in failed[str(noface)]
    assert "cannot open" in failed[str(junk)] and "no such file" in failed[str(missing)]
    assert "skipped" in capsys.readouterr().err
    # nothing usable at all: one error line and exit code 2
    assert main(["preprocess", str(junk), str(missing), "--out", str(tmp_path / "o2")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: no usable video")
    assert main(["preprocess", str(good), "--out", str(out), "--preset", "nope"]) == 2
    assert (
        main(["preprocess", str(good), "--out", str(tmp_path / "w"), "--preset", "wan-1.3b"]) == 2
    )
    assert "--wav2vec2" in capsys.readouterr().err


def test_real_clip(shared_data, tmp_path):
    clip_path = shared_data / "clips" / "r3dp_May_5s.mp4"
    out = tmp_path / "real"
    assert main(["preprocess", str(clip_path), "--out", str(out), "--max-frames", "30"]) == 0
    arrays, meta = load_shard(out / "r3dp_May_5s")
    assert meta["found_ratio"] == 1.0 and meta["landmarks"] == "dlib" and meta["frames"] == 30
    assert np.isfinite(arrays["landmarks"]).all()
    # the streaming two-pass shard equals tracking the whole decoded clip at once
    media = tiny().media
    clip = read_video(clip_path, fps=media.fps, max_frames=30)
    track = track_faces(clip.frames, media)
    assert np.allclose(arrays["transforms"], track.transforms)
    assert np.array_equal(arrays["crops"], warp_to_crop(clip.frames, track, media.crop_size))


def _media_testutils():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "media" / "media_testutils.py"
    spec = importlib.util.spec_from_file_location("media_testutils_data", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_odd_rates_and_layouts_through_the_command(tmp_path):
    mt = _media_testutils()
    src = tmp_path / "src"
    src.mkdir()
    lm = lambda t: np.repeat(LANDMARKS[None], t, 0)  # noqa: E731
    # 29.97 fps with 48 kHz stereo AAC
    mt.write_test_clip(
        src / "ntsc.mp4",
        frames(30),
        30000 / 1001,
        audio=mt.tone(1.0, 48_000, 2),
        sample_rate=48_000,
    )
    np.savez(src / "ntsc.npz", landmarks5=lm(30))
    # variable frame rate (gaps), 44.1 kHz stereo wav beside it
    times = np.array([0, 1, 2, 5, 6, 7, 8, 13, 14, 15, 16, 17]) * 0.04
    mt.write_test_clip(src / "vfr.mkv", frames(12), 25, times=times)
    soundfile.write(src / "vfr.wav", mt.tone(0.72, 44_100, 2).T, 44_100)
    np.savez(src / "vfr.npz", landmarks5=lm(12))
    # 8 kHz mono wav beside, and an empty wav beside
    write_video(src / "low.mp4", frames(25), 25.0)
    soundfile.write(src / "low.wav", mt.tone(1.0, 8_000)[0], 8_000)
    np.savez(src / "low.npz", landmarks5=lm(25))
    write_video(src / "mute.mp4", frames(25), 25.0)
    soundfile.write(src / "mute.wav", np.zeros(0, np.float32), 16_000)
    np.savez(src / "mute.npz", landmarks5=lm(25))
    out = tmp_path / "out"
    assert main(["preprocess", str(src), "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert sorted(report["done"]) == ["low", "ntsc", "vfr"]
    assert "empty" in report["failed"][str(src / "mute.mp4")]
    expected = {"ntsc": 25, "vfr": 18, "low": 25}  # frames at 25 fps: 1.0 s, 0.72 s, 1.0 s
    for name, t in expected.items():
        arrays, meta = load_shard(out / name)
        assert meta["frames"] == t and meta["fps"] == 25.0
        assert abs(len(arrays["audio"]) - t * 640) <= 640
        assert np.abs(np.asarray(arrays["audio"])).max() == pytest.approx(0.3, abs=0.05)


def test_find_shards_takes_a_shard_or_a_folder_of_shards(tmp_path):
    one = {"found": np.ones(2, bool)}
    a = write_shard(tmp_path / "set", "a", one, {"frames": 2})
    b = write_shard(tmp_path / "set", "b", one, {"frames": 2})
    (tmp_path / "set" / ".c.tmp").mkdir()  # an unfinished write is no shard
    assert find_shards([tmp_path / "set"]) == [a, b]
    assert find_shards([str(b), str(a)]) == [b, a]
    with pytest.raises(UserError, match="no shards under .*empty"):
        find_shards([tmp_path / "empty"])
    with pytest.raises(UserError, match=r"no shards under \(nothing given\)"):
        find_shards([])
