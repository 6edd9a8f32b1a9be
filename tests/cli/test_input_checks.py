"""Every media input of `sync` / `demo` / `eval` is checked before any heavy work: one `error:`
line and exit 2, with the model loader and the face tracker never reached."""

from __future__ import annotations

import argparse

import av
import numpy as np
import pytest
import soundfile as sf

from lipforcing.cli.main import main
from lipforcing.errors import MediaError
from lipforcing.media.inputs import check_source, check_speech


def write_video(path, seconds: float, fps: float, *, side: int = 16, audio: bool = False):
    """A small H.264 clip of exactly ``seconds * fps`` frames (AAC tone when ``audio``)."""
    from fractions import Fraction

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width = stream.height = side
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast"}
        sound = out.add_stream("aac", rate=16_000, layout="mono") if audio else None
        for i in range(int(round(seconds * fps))):
            image = np.full((side, side, 3), i % 255, np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode(None))
        if sound is not None:
            tone = 0.2 * np.sin(np.arange(int(seconds * 16_000)) / 5.0).astype(np.float32)
            for start in range(0, len(tone), 1024):
                frame = av.AudioFrame.from_ndarray(
                    tone[None, start : start + 1024].copy(), format="fltp", layout="mono"
                )
                frame.sample_rate, frame.pts = 16_000, start
                out.mux(sound.encode(frame))
            out.mux(sound.encode(None))
    return path


@pytest.fixture
def no_heavy_work(monkeypatch):
    """Loading a model or tracking a face fails the test (they must not be reached)."""

    def heavy(*args, **kwargs):
        raise AssertionError("heavy work started before the inputs were checked")

    import lipforcing.cli.options as options
    from lipforcing.evaluation.evaluate import Networks
    from lipforcing.streaming.source import Source

    monkeypatch.setattr(options, "load_pipeline", heavy)
    monkeypatch.setattr(Source, "from_file", heavy)
    monkeypatch.setattr(Networks, "load", heavy)


@pytest.fixture
def media(tmp_path):
    """Good and bad inputs."""
    m = {
        "video": write_video(tmp_path / "video.mp4", 1.0, 25, audio=True),
        "silent_video": write_video(tmp_path / "silent.mp4", 1.0, 25),
        "empty_wav": tmp_path / "empty.wav",
        "no_samples_wav": tmp_path / "header_only.wav",
        "garbage": tmp_path / "garbage.mp4",
        "odd_rate_wav": tmp_path / "odd.wav",
        "wav": tmp_path / "speech.wav",
        "odd_fps": write_video(tmp_path / "odd_fps.mkv", 0.5, 1000),
    }
    m["empty_wav"].write_bytes(b"")
    sf.write(m["no_samples_wav"], np.zeros(0, np.float32), 16_000)
    m["garbage"].write_bytes(np.random.default_rng(0).bytes(4096))
    sf.write(m["odd_rate_wav"], np.zeros(200, np.float32), 2_000)
    sf.write(m["wav"], 0.1 * np.ones(16_000, np.float32), 16_000)
    return m


def sync(media, tmp_path, video="video", audio="wav", *extra):
    args = ["sync", "--video", str(media[video]), "--out", str(tmp_path / "out.mp4"), *extra]
    return args + (["--audio", str(media[audio])] if audio else [])


@pytest.mark.parametrize(
    "video, audio, extra, says",
    [
        ("video", "empty_wav", (), "empty (0 bytes)"),
        ("video", "no_samples_wav", (), "no samples"),
        ("silent_video", None, (), "has no audio track"),
        ("garbage", "wav", (), "not a readable media file"),
        ("video", "garbage", (), "not a readable media file"),
        ("video", "odd_rate_wav", (), "sample rate 2000 Hz"),
        ("odd_fps", "wav", (), "frame rate 1000 fps"),
        ("video", "silent_video", (), "no audio stream"),
        ("video", "wav", ("--face", "middle"), "--face must be"),
    ],
)
def test_sync_refuses_bad_input_before_heavy_work(
    media, tmp_path, capsys, no_heavy_work, video, audio, extra, says
):
    code = main(sync(media, tmp_path, video, audio, *extra))
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("error: ") and says in err and len(err.splitlines()) == 1


def test_sync_checks_the_output_path(media, tmp_path, capsys, no_heavy_work):
    args = ["sync", "--video", str(media["video"]), "--audio", str(media["wav"])]
    assert main([*args, "--out", str(tmp_path / "out.avi")]) == 2
    assert main([*args, "--out", str(media["video"].with_suffix(".mp4"))]) == 2
    assert "overwrite an input" in capsys.readouterr().err


def test_good_inputs_reach_the_model_load(media, tmp_path, capsys, no_heavy_work):
    """The oracle of the tests above: with good inputs the (patched) heavy work IS reached."""
    assert main(sync(media, tmp_path)) == 1  # the AssertionError: an unexpected error, exit 1
    assert "heavy work started" in capsys.readouterr().err
    assert main(sync(media, tmp_path, "video", None)) == 1  # its own soundtrack is usable


def test_demo_and_eval_check_their_media_first(media, tmp_path, capsys, no_heavy_work):
    demo = ["demo", "--video", str(media["video"]), "--audio", str(media["empty_wav"])]
    assert main([*demo, "--out", str(tmp_path / "d")]) == 2
    evaluate = ["eval", "--pred", str(media["garbage"]), "--gt", str(media["video"])]
    assert main([*evaluate, "--out", str(tmp_path / "e")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all(e.startswith("error: ") for e in errors)


def test_a_source_of_exactly_the_limit_is_accepted(tmp_path):
    exact = write_video(tmp_path / "exact.mp4", 600.0, 1)  # 600 frames of 1 s: exactly 600 s
    assert check_source(exact).duration_s == pytest.approx(600.0)
    longer = write_video(tmp_path / "longer.mp4", 601.0, 1)
    with pytest.raises(MediaError, match="longer than 600 s"):
        check_source(longer)
    args = argparse.Namespace(video=str(exact), audio=None, out=str(tmp_path / "o.mp4"))
    args.device, args.dtype = "cpu", "auto"
    args.face = "largest"
    with pytest.raises(MediaError, match="no audio track"):  # past the length check
        from lipforcing.cli.sync import check_inputs

        check_inputs(args)


def test_source_from_file_length_limit_is_longer_than(tmp_path):
    """The decoder's own cap (Source.from_file) accepts exactly max_seconds of video too."""
    from lipforcing.config import MediaConfig
    from lipforcing.streaming.source import Source

    cfg = MediaConfig(crop_size=64)
    exact = write_video(tmp_path / "exact.mp4", 2.0, 25)
    with pytest.raises(MediaError, match="no face"):  # got past the length limit
        Source.from_file(exact, cfg, max_seconds=2.0)
    longer = write_video(tmp_path / "longer.mp4", 2.08, 25)
    with pytest.raises(MediaError, match="longer than 2 s"):
        Source.from_file(longer, cfg, max_seconds=2.0)


def test_memory_and_image_budgets(tmp_path, monkeypatch):
    import lipforcing.media.inputs as inputs

    video = write_video(tmp_path / "v.mp4", 1.0, 25, side=64)
    monkeypatch.setattr(inputs, "_physical_memory", lambda: 2 * 25 * 64 * 64 * 3)
    with pytest.raises(MediaError, match="GiB decoded"):
        check_source(video)  # 2 x 25 frames of 64x64 need all of the "machine"
    monkeypatch.setattr(inputs, "MAX_IMAGE_PIXELS", 32 * 32)
    import cv2

    cv2.imwrite(str(tmp_path / "big.png"), np.zeros((40, 40, 3), np.uint8))
    with pytest.raises(MediaError, match="40x40 pixels"):
        check_source(tmp_path / "big.png")
    assert check_speech(write_video(tmp_path / "a.mp4", 1.0, 25, audio=True)).has_audio
