"""media.probe and the untrusted decode path of media.io: kinds from content, budgets before
decoding (issue 19 items 1 and 2 at the media level)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from hostile_media import concat_script, container_video, hls_playlist, png_bomb, timed_mkv
from lipforcing.errors import MediaError
from lipforcing.media.io import Untrusted, iter_frames, write_video
from lipforcing.media.probe import MediaBudget, probe_video, read_image, sniff

_Y, _X = np.mgrid[0:48, 0:64]
PICTURE = np.stack([4 * _X, 5 * _Y, 2 * (_X + _Y)], -1).astype(np.uint8)  # smooth: codecs keep it


@pytest.fixture
def videos(tmp_path):
    frames = np.repeat(PICTURE[None], 5, 0)
    write_video(tmp_path / "a.mp4", frames, 25)
    container_video(tmp_path / "a.mkv", frames, 25, "matroska")
    container_video(tmp_path / "a.webm", frames, 25, "webm")
    for ext in ("png", "jpg", "webp", "bmp"):
        cv2.imwrite(str(tmp_path / f"a.{ext}"), PICTURE)
    return tmp_path


def test_kinds_come_from_content_not_names(videos, tmp_path):
    expect = {"mp4": "mp4", "mkv": "mkv", "webm": "mkv", "png": "png", "jpg": "jpeg"}
    expect |= {"webp": "webp", "bmp": "bmp"}
    for ext, kind in expect.items():
        data = (videos / f"a.{ext}").read_bytes()
        renamed = tmp_path / f"renamed-{ext}.m3u8"  # the name says playlist; the bytes do not
        renamed.write_bytes(data)
        assert sniff(renamed) == kind
    hostile = {
        "evil.m3u8": hls_playlist(videos / "a.mp4"),
        "list.mp4": concat_script(videos / "a.mp4"),
        "sound.mp4": b"RIFF\x24\x00\x00\x00WAVEfmt ",
        "clip.avi": b"RIFF\x24\x00\x00\x00AVI LIST",
        "empty.mp4": b"",
        "text.webm": b"hello world, this is not a video",
    }
    for name, data in hostile.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(MediaError, match="not a supported file"):
            sniff(tmp_path / name, name)


def test_untrusted_decode_reads_the_sniffed_container_only(videos):
    budget = MediaBudget()
    for ext, kind in [("mp4", "mp4"), ("mkv", "mkv"), ("webm", "mkv")]:
        path = videos / f"a.{ext}"
        info = probe_video(path, kind, budget, path.name)
        assert (info.width, info.height, round(info.fps)) == (64, 48, 25)
        frames = [f for _, f in iter_frames(path, 25, untrusted=Untrusted(kind, budget, "a"))]
        assert len(frames) == 5 and np.abs(frames[2].astype(int) - PICTURE).mean() < 4
    with pytest.raises(MediaError, match="not a readable mkv"):  # an mp4 forced through mkv
        probe_video(videos / "a.mp4", "mkv", budget, "a.mp4")


def test_frame_size_budget_is_checked_from_headers(videos, tmp_path):
    small = MediaBudget(max_pixels=40 * 40)
    with pytest.raises(MediaError, match="64x48 frames are over the limit"):
        probe_video(videos / "a.mkv", "mkv", small, "a.mkv")
    with pytest.raises(MediaError, match="over the limit"):
        read_image(videos / "a.png", "png", small, "a.png")
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_bomb(8000, 8000))  # 192 MB of RGB in a few KB
    assert bomb.stat().st_size < 20_000
    with pytest.raises(MediaError, match="8000x8000 frames are over the limit of 8.3 megapixels"):
        read_image(bomb, "png", MediaBudget(), "bomb.png")
    huge = tmp_path / "huge.png"
    huge.write_bytes(png_bomb(30_000, 30_000))  # 2.7 GB of RGB: refused, never decoded
    with pytest.raises(MediaError):
        read_image(huge, "png", MediaBudget(), "huge.png")


def test_frames_far_apart_are_refused_before_conforming(tmp_path):
    """A 2-frame mkv with frames 100,000 s apart once made the server allocate 57 GiB."""
    pair = np.repeat(PICTURE[None], 2, 0)
    far = timed_mkv(tmp_path / "far.mkv", pair, [0.0, 100_000.0])
    assert far.stat().st_size < 10_000
    budget = MediaBudget(max_seconds=120)
    untrusted = Untrusted("mkv", budget, "far.mkv")
    pairs = iter_frames(far, 25, untrusted=untrusted)
    with pytest.raises(MediaError, match="far.mkv: longer than 120 s"):
        for count, _ in enumerate(pairs):
            assert count < 2  # refused at the second decoded frame, before any hold-frames
    gap = timed_mkv(tmp_path / "gap.mkv", pair, [0.0, 110.0])  # held 110 s more at the end
    with pytest.raises(MediaError, match="longer than 120 s"):
        for _ in iter_frames(gap, 25, untrusted=Untrusted("mkv", budget, "gap.mkv")):
            pass


def test_a_video_of_exactly_the_limit_is_accepted(tmp_path):
    """600 s (60 frames, 10 s apart) fits a 600 s budget; 599 s does not."""
    frames = np.repeat(PICTURE[None], 60, 0)
    clip = timed_mkv(tmp_path / "ten-minutes.mkv", frames, [10.0 * k for k in range(60)])
    untrusted = Untrusted("mkv", MediaBudget(max_seconds=600), "ten-minutes.mkv")
    probe_video(clip, "mkv", untrusted.budget, clip.name)
    out = [i for i, _ in iter_frames(clip, 25, untrusted=untrusted)]
    assert len(out) == 600 * 25 and out[-1] == 59
    shorter = Untrusted("mkv", MediaBudget(max_seconds=599), "ten-minutes.mkv")
    with pytest.raises(MediaError, match="longer than 599 s"):
        for _ in iter_frames(clip, 25, untrusted=shorter):
            pass
