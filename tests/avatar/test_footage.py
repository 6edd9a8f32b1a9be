"""avatar.footage: per-frame measures, the held-out split and every footage rule, on made-up
scans (each test breaks one rule and expects its message)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lipforcing.avatar.config import FootageLimits
from lipforcing.avatar.footage import (
    FootageError,
    FootageReport,
    Segment,
    VideoScan,
    check_footage,
    frame_loudness,
    mouth_in_frame,
    speech_frames,
    split,
)
from lipforcing.avatar.identity import IdentitySamples, medoid, sample_frames

FPS = 25.0
LIM = FootageLimits()


def person(seed: int, n: int, spread: float = 0.05) -> np.ndarray:
    """``n`` identity descriptors of one made-up person: a unit direction plus small noise."""
    rng = np.random.default_rng(seed)
    centre = rng.normal(size=128)
    centre *= 0.5 / np.linalg.norm(centre)
    return centre + spread * rng.normal(size=(n, 128)) / np.sqrt(128)


def scan(name="a", seconds=30.0, ident=None, **over) -> VideoScan:
    t = int(seconds * FPS)
    index = sample_frames(np.ones(t, bool), FPS, 1.0)
    emb = person(0, len(index)) if ident is None else ident(index)
    fields = {
        "found": np.ones(t, bool),
        "usable": np.ones(t, bool),
        "speech": np.arange(t) % 4 != 0,  # 75% speech
        "pose": np.zeros((t, 3)),
        "sharpness": np.full(t, 300.0),
        "identity": IdentitySamples(index, emb, np.ones(len(index), int)),
    }
    fields |= over
    return VideoScan(name, f"/footage/{name}.mp4", FPS, (256, 256), folder=Path("."), **fields)


def check(*scans, holdout=0.15, limits=LIM):
    check_footage(FootageReport(list(scans), split(list(scans), holdout), limits))


def test_good_footage_passes():
    check(scan("a", 20), scan("b", 15))


def test_split_holds_out_the_last_share_in_input_order():
    a, b = scan("a", 20), scan("b", 10)  # 500 + 250 frames; last 15% = 112 frames (rounded)
    assert split([a, b], 0.15) == [
        Segment("a", 0, 500, "train"),
        Segment("b", 0, 138, "train"),
        Segment("b", 138, 250, "heldout"),
    ]
    short_last = split([scan("a", 20), scan("b", 2)], 0.15)  # held-out spans both videos
    assert short_last == [
        Segment("a", 0, 468, "train"),
        Segment("a", 468, 500, "heldout"),
        Segment("b", 0, 50, "heldout"),
    ]


def test_mouth_in_frame_needs_half_an_eye_distance_of_room():
    marks = np.array([[[40, 40], [80, 40], [60, 60], [45, 80], [75, 80]]], float)  # iod 40
    hw = (128, 128)
    assert mouth_in_frame(marks, hw).all()
    assert not mouth_in_frame(marks + [0, 30], hw).all()  # corners at y = 110: 18 px < 20
    assert not mouth_in_frame(marks + [-30, 0], hw).all()
    assert not mouth_in_frame(np.full((1, 5, 2), np.nan), hw).any()


def test_speech_frames_follow_loudness():
    sr, spf = 16_000, 640
    rng = np.random.default_rng(0)
    audio = rng.normal(0, 1e-3, 100 * spf)  # hiss
    audio[40 * spf : 70 * spf] += 0.2 * np.sin(np.arange(30 * spf) * 0.05)  # frames 40-69
    loud = frame_loudness(audio, sr, FPS, 100)
    np.testing.assert_allclose(loud[50], 20 * np.log10(0.2 / np.sqrt(2)), atol=0.3)
    speech = speech_frames(loud, LIM)
    assert speech[40:70].all() and not speech[:40].any() and not speech[70:].any()
    assert not speech_frames(frame_loudness(audio[: 30 * spf] * 0, sr, FPS, 30), LIM).any()


def test_no_face_is_refused():
    none = np.zeros(750, bool)
    with pytest.raises(FootageError, match="out of view or leaves the frame in 100%"):
        check(scan("a", found=none, usable=none))


def test_a_face_leaving_the_frame_is_refused_with_where():
    usable = np.ones(750, bool)
    usable[500:] = False
    with pytest.raises(FootageError, match=r"a.mp4: .* leaves the frame in 33%.*20\.0-30\.0 s"):
        check(scan("a", usable=usable))


def test_silence_only_footage_is_refused():
    with pytest.raises(FootageError, match="speech in only 0%"):
        check(scan("a", speech=np.zeros(750, bool)))


def test_short_footage_is_refused():
    with pytest.raises(
        FootageError, match="only 15.0 s of footage with a usable face; at least 20"
    ):
        check(scan("a", 10), scan("b", 5))


def test_a_face_turned_away_and_blur_are_refused():
    with pytest.raises(FootageError, match="turned away"):
        check(scan("a", pose=np.tile([60.0, 0, 0], (750, 1))))
    with pytest.raises(FootageError, match="blurred"):
        check(scan("a", sharpness=np.full(750, 5.0)))


def test_a_second_face_in_view_is_refused():
    s = scan("a")
    s.identity.faces[:] = 2
    with pytest.raises(FootageError, match="second face"):
        check(s)


def test_several_people_taking_turns_are_refused():
    def turns(index):  # person 0 and person 1 alternate every 5 s
        a, b = person(0, len(index)), person(1, len(index))
        return np.where(((index // 125) % 2 == 0)[:, None], a, b)

    with pytest.raises(FootageError, match="someone else than the main person"):
        check(scan("a", 60, ident=turns))


def test_a_different_person_in_the_held_out_end_is_refused():
    def swap(index):  # the last 6 s (all of the held-out 15%) show person 1
        return np.where((index >= 600)[:, None], person(1, len(index)), person(0, len(index)))

    with pytest.raises(FootageError, match=r"held-out end of the footage \(a.mp4 from 25.5 s\)"):
        check(scan("a", 30, ident=swap))


def test_medoid_is_a_sample_of_the_majority():
    emb = np.concatenate([person(0, 9), person(1, 1)])
    assert any(np.array_equal(medoid(emb), row) for row in emb[:9])
