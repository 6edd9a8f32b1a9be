"""SynthTalk: determinism, audio-visual sync, formants, landmarks against dlib, files on disk."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.signal import welch

from lipforcing.cli.main import main
from lipforcing.media.synthtalk import render_clip, write_dataset
from lipforcing.media.synthtalk.speech import PHONES, SAMPLE_RATE, Voice, synthesize


def frame_rms(clip) -> np.ndarray:
    spf = clip.sample_rate / clip.fps
    return np.array(
        [
            np.sqrt(np.mean(clip.audio[int(i * spf) : int((i + 1) * spf)] ** 2))
            for i in range(len(clip.frames))
        ]
    )


def test_clip_is_a_pure_function_of_its_seed():
    a, b, c = (
        render_clip(5, 1.0, size=96),
        render_clip(5, 1.0, size=96),
        render_clip(6, 1.0, size=96),
    )
    assert a.frames.shape == (25, 96, 96, 3) and a.frames.dtype == np.uint8
    assert a.audio.shape == (SAMPLE_RATE,) and a.audio.dtype == np.float32
    assert a.landmarks5.shape == (25, 5, 2) and a.mouth.shape == (25, 3)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.audio, b.audio)
    assert not np.array_equal(a.frames, c.frames) and not np.allclose(a.audio, c.audio)
    assert a.mouth.min() >= 0 and a.mouth.max() <= 1
    assert np.abs(a.audio).max() <= 1.0


def test_mouth_opening_follows_the_audio():
    """Mouth opening and audio loudness rise and fall together; silence keeps the mouth shut."""
    corrs = []
    for seed in range(4):
        clip = render_clip(seed, 4.0, size=64)
        rms = frame_rms(clip)
        corrs.append(np.corrcoef(rms, clip.mouth[:, 0])[0, 1])
        t = (np.arange(len(clip.frames)) + 0.5) / clip.fps
        silent = np.zeros(len(t), bool)
        for label, s, e in clip.phonemes:
            if label == "_" and e - s > 0.2:
                silent |= (t > s + 0.08) & (t < e - 0.08)  # well inside a pause
        assert silent.any()
        assert clip.mouth[silent, 0].max() < 0.05
        assert rms[silent].max() < 0.1 * rms.max()
    assert min(corrs) > 0.5, corrs


def band_power(audio: np.ndarray, lo: float, hi: float) -> float:
    f, p = welch(audio, SAMPLE_RATE, nperseg=1024)
    return float(p[(f >= lo) & (f < hi)].sum())


def vowel(label: str) -> np.ndarray:
    rng = np.random.default_rng(0)
    voice = Voice(f0=110.0, tract=1.0, breath=0.02, rate=1.0, gain=0.5)
    script = [("_", 0.0, 0.1), (label, 0.1, 0.9), ("_", 0.9, 1.0)]
    return synthesize(script, voice, 1.0, rng)[int(0.2 * SAMPLE_RATE) : int(0.8 * SAMPLE_RATE)]


def test_vowel_spectra_have_their_formants():
    """Open /a/ has its first formant near 750 Hz, close /i/ near 290 Hz with F2 near 2300 Hz,
    rounded /u/ a low F2: the acoustic cues the mouth shapes are tied to."""
    a, i, u = vowel("a"), vowel("i"), vowel("u")
    assert PHONES["a"].formants[0] == 750 and PHONES["i"].formants[1] == 2300
    assert band_power(a, 650, 850) > 3 * band_power(a, 250, 350)
    assert band_power(i, 250, 350) > 3 * band_power(i, 650, 850)
    share = [band_power(x, 2100, 2500) / band_power(x, 0, 8000) for x in (i, u)]
    assert share[0] > 4 * share[1], share
    s = synthesize(
        [("s", 0.0, 1.0)], Voice(110.0, 1.0, 0.0, 1.0, 0.5), 1.0, np.random.default_rng(0)
    )
    assert band_power(s, 4000, 7500) > 5 * band_power(s, 0, 3000)  # /s/ is high-band noise


def test_mouth_pixels_darken_as_it_opens():
    clip = render_clip(2, 4.0, size=128)
    lm = clip.landmarks5
    dark = []
    for frame, marks in zip(clip.frames, lm, strict=True):
        (x0, y0), (x1, _) = marks[3], marks[4]
        w = x1 - x0
        box = frame[int(y0 - 0.3 * w) : int(y0 + 0.5 * w), int(x0) : int(x1)]
        dark.append((box.mean(-1) < 80).mean())
    assert np.corrcoef(dark, clip.mouth[:, 0])[0, 1] > 0.8


def test_landmarks_agree_with_dlib():
    """An independent detector (dlib HOG + 68 points) finds the faces and puts the eyes and the
    relaxed mouth corners where SynthTalk says they are."""
    pytest.importorskip("dlib")
    from lipforcing.config import tiny
    from lipforcing.media.faces import track_faces

    errors = []
    for seed in range(6):
        clip = render_clip(seed, 0.2, size=256)
        track = track_faces(clip.frames, tiny().media)
        if track.found.any():
            d = np.linalg.norm(track.landmarks[track.found] - clip.landmarks5[track.found], axis=-1)
            errors.append(np.median(d, 0))
    assert len(errors) >= 4
    errors = np.array(errors)
    eye_dist = 0.2 * 256
    assert np.median(errors[:, [0, 1]]) < 0.1 * eye_dist, errors
    assert np.median(errors[:, [3, 4]]) < 0.15 * eye_dist, errors


def test_dataset_files_round_trip_and_resume(tmp_path):
    from lipforcing.media.io import read_video

    paths = write_dataset(tmp_path, 2, 1.0, 40, size=96, progress=False)
    assert [p.name for p in paths] == ["synthtalk_0000040.mp4", "synthtalk_0000041.mp4"]
    clip = render_clip(40, 1.0, size=96)
    video = read_video(paths[0])
    assert video.frames.shape == clip.frames.shape and video.fps == 25.0
    assert np.abs(video.frames.astype(int) - clip.frames).mean() < 4  # H.264 at crf 18
    with np.load(paths[0].with_suffix(".npz")) as z:
        assert np.array_equal(z["landmarks5"], clip.landmarks5)
        assert np.array_equal(z["mouth"], clip.mouth)
        assert list(z["phoneme_labels"]) == [p[0] for p in clip.phonemes]
    import soundfile as sf

    wav, rate = sf.read(paths[0].with_suffix(".wav"), dtype="float32")
    assert rate == SAMPLE_RATE and np.abs(wav - clip.audio).max() < 2 / 32768
    stamp = paths[0].stat().st_mtime_ns
    write_dataset(tmp_path, 3, 1.0, 40, size=96, progress=False)  # resumes: only clip 42 is new
    assert paths[0].stat().st_mtime_ns == stamp
    assert len(json.loads((tmp_path / "index.json").read_text())["clips"]) == 3
    again = write_dataset(tmp_path / "again", 1, 1.0, 40, size=96, progress=False)[0]
    for suffix in (".wav", ".npz"):  # the same seed gives byte-identical data
        assert again.with_suffix(suffix).read_bytes() == paths[0].with_suffix(suffix).read_bytes()
    # libx264 (as bundled with PyAV) is not byte-reproducible from run to run, even with one
    # thread, so the two encodes of the same frames are compared decoded.
    other = read_video(again).frames.astype(int)
    assert other.shape == video.frames.shape and np.abs(other - video.frames).mean() < 1


def test_preprocess_uses_the_exact_landmarks(tmp_path):
    from lipforcing.config import tiny
    from lipforcing.data.preprocess import load_shard, preprocess

    write_dataset(tmp_path / "raw", 1, 1.0, 7, size=128, progress=False)
    preprocess([tmp_path / "raw"], tmp_path / "shards", tiny(), progress=False)
    arrays, meta = load_shard(tmp_path / "shards" / "synthtalk_0000007")
    assert meta["landmarks"] == "npz" and meta["found_ratio"] == 1.0
    assert arrays["crops"].shape == (25, 128, 128, 3)


def test_cli_writes_clips_and_sheet(tmp_path, capsys):
    assert main(["synthtalk", "--out", str(tmp_path), "--clips", "1", "--seconds", "0.5"]) == 0
    assert (tmp_path / "synthtalk_0000000.mp4").is_file() and (tmp_path / "sheet.png").is_file()
    assert main(["synthtalk", "--out", str(tmp_path), "--clips", "0"]) == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith("error: --clips")
