"""media.io: decode/encode round trips, frame rates, sample rates, and bad files."""

from __future__ import annotations

import numpy as np
import pytest
from media_testutils import pattern_frames, psnr, tone, write_test_clip

from lipforcing.errors import MediaError, UserError
from lipforcing.media.io import conform, iter_frames, read_audio, read_video, write_video


@pytest.mark.parametrize("size", [(64, 96), (63, 65)])
def test_write_read_round_trip_keeps_frames_size_and_audio(tmp_path, size):
    frames = pattern_frames(30, *size)
    audio = tone(1.2, 16_000)[0]
    path = tmp_path / "out.mp4"
    write_video(path, frames, 25.0, audio=audio)
    clip = read_video(path)
    assert clip.frames.shape == frames.shape  # odd sizes kept exactly (yuv444p)
    assert clip.fps == pytest.approx(25.0)
    assert psnr(clip.frames, frames) > 30
    assert abs(len(clip.audio) - len(audio)) <= 16_000 / 25  # within one frame
    # the tone survives AAC: same dominant frequency
    spectrum = np.abs(np.fft.rfft(clip.audio[:16_000]))
    assert np.argmax(spectrum) == pytest.approx(440, abs=2)


def test_ntsc_rate_and_timestamps(tmp_path):
    frames = pattern_frames(30, 48, 64)
    path = write_test_clip(tmp_path / "ntsc.mp4", frames, fps=30000 / 1001)
    clip = read_video(path)
    assert len(clip.frames) == 30 and clip.fps == pytest.approx(29.97, abs=0.01)
    assert np.allclose(np.diff(clip.timestamps), 1001 / 30000, atol=1e-4)
    conformed = read_video(path, fps=25)
    assert len(conformed.frames) == round(30 * 1001 / 30000 * 25)
    # frame k of the 25 fps clip is the source frame on screen at k / 25 s
    expected = np.floor(np.arange(len(conformed.frames)) / 25 * 30000 / 1001 + 1e-6).astype(int)
    assert np.array_equal(conformed.source_index, expected)


def test_variable_frame_rate_is_conformed_by_timestamps(tmp_path):
    frames = pattern_frames(12, 48, 64)
    times = np.array([0, 0.04, 0.08, 0.2, 0.24, 0.28, 0.32, 0.52, 0.56, 0.6, 0.64, 0.68])  # gaps
    path = write_test_clip(tmp_path / "vfr.mkv", frames, fps=25, times=times)
    clip = read_video(path)
    assert np.allclose(clip.timestamps, times, atol=2e-3)
    out = conform(clip, 25.0)
    assert len(out.frames) == 18  # 0.68 s + one 40 ms frame = 0.72 s
    oracle = [np.searchsorted(times, k / 25 + 1e-6, side="right") - 1 for k in range(18)]
    assert np.array_equal(out.source_index, oracle)
    assert np.array_equal(out.frames, clip.frames[oracle])


@pytest.mark.parametrize("rate,channels", [(8_000, 1), (44_100, 2), (48_000, 2), (16_000, 1)])
def test_audio_rates_and_stereo_resampled_to_16k_mono(tmp_path, rate, channels):
    path = write_test_clip(
        tmp_path / "a.wav", None, audio=tone(1.0, rate, channels, 300.0), sample_rate=rate
    )
    audio = read_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - 16_000) <= 16
    spectrum = np.abs(np.fft.rfft(audio))
    assert np.argmax(spectrum) == pytest.approx(300, abs=2)
    assert np.max(np.abs(audio)) == pytest.approx(0.3, abs=0.03)


@pytest.mark.parametrize("codec,suffix", [("libvpx-vp9", ".webm"), ("libx265", ".mkv")])
def test_other_codecs(tmp_path, codec, suffix):
    frames = pattern_frames(8, 64, 64)
    path = write_test_clip(tmp_path / f"v{suffix}", frames, codec=codec)
    clip = read_video(path)
    assert clip.frames.shape == frames.shape and clip.audio is None
    assert psnr(clip.frames, frames) > 25


def test_video_audio_from_mp4(tmp_path):
    path = write_test_clip(
        tmp_path / "av.mp4",
        pattern_frames(25, 32, 32),
        audio=tone(1.0, 44_100, 2),
        sample_rate=44_100,
    )
    clip = read_video(path)
    assert abs(len(clip.audio) - 16_000) <= 16_000 / 25


def test_4k_frames(tmp_path):
    frames = pattern_frames(2, 2160, 3840)
    path = tmp_path / "4k.mp4"
    write_video(path, frames, 25.0)
    assert read_video(path).frames.shape == (2, 2160, 3840, 3)


def test_bad_files(tmp_path):
    with pytest.raises(MediaError, match="no such file"):
        read_video(tmp_path / "missing.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00not a video" * 100)
    with pytest.raises(MediaError, match="cannot open"):
        read_video(junk)
    good = tmp_path / "good.mp4"
    write_video(good, pattern_frames(25, 64, 64), 25.0, audio=tone(1.0, 16_000)[0])
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(MediaError):
        read_video(truncated)
    audio_only = write_test_clip(tmp_path / "a.wav", None, audio=tone(0.5, 16_000))
    with pytest.raises(MediaError, match="no video stream"):
        read_video(audio_only)
    silent = write_test_clip(tmp_path / "v.mp4", pattern_frames(5, 32, 32))
    assert read_video(silent).audio is None
    with pytest.raises(MediaError, match="no audio stream"):
        read_audio(silent)
    empty = write_test_clip(tmp_path / "empty.wav", None, audio=np.zeros((1, 0), np.float32))
    with pytest.raises(MediaError):
        read_audio(empty)
    with pytest.raises(UserError):
        write_video(tmp_path / "x.mp4", np.zeros((2, 8, 8), np.uint8), 25.0)


def test_iter_frames_streams_the_same_frames(tmp_path, shared_data):
    times = np.array([0, 1, 2, 5, 6, 7, 8, 13, 14, 15, 16, 17]) * 0.04 + 0.12  # late start
    vfr = write_test_clip(tmp_path / "vfr.mkv", pattern_frames(12, 32, 48), fps=25, times=times)
    ntsc = write_test_clip(tmp_path / "ntsc.mp4", pattern_frames(20, 32, 48), fps=30000 / 1001)
    real = shared_data / "clips" / "retalking_face_1.mp4"  # 22.13 fps, video starts at 33 ms
    for path, limit in ((vfr, None), (ntsc, None), (real, 40)):
        for fps in (None, 25.0, 30.0):
            clip = read_video(path, fps=fps, max_frames=limit)
            pairs = list(iter_frames(path, fps=fps, max_frames=limit))
            assert len(pairs) == len(clip.frames)
            assert np.array_equal(np.stack([f for _, f in pairs]), clip.frames)
            if fps is not None:
                assert np.array_equal([i for i, _ in pairs], clip.source_index)
