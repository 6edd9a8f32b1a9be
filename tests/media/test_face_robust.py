"""Face tracks on the probes of issue 19: a face that leaves the frame, a hard cut to another
person, several faces with each choice; built procedurally from SynthTalk faces."""

from __future__ import annotations

import numpy as np
import pytest

import face_scenes
from lipforcing.config import MediaConfig
from lipforcing.errors import UserError
from lipforcing.media.composite import FADE_FRAMES, paste_back, paste_weights
from lipforcing.media.faces import parse_face, track_faces, track_from_landmarks
from lipforcing.media.synthtalk.clip import render_clip

CFG = MediaConfig(crop_size=128)
SLIDE_START, SLIDE_PX = 20, 6  # the face starts sliding right at this frame, px per frame


def sliding_out(size: int = 160, seconds: float = 2.4) -> np.ndarray:
    """A SynthTalk face that slides out of the right edge; black once it is gone."""
    frames = render_clip(2, seconds, size=size).frames
    out = np.zeros_like(frames)
    for i, frame in enumerate(frames):
        dx = max(0, i - SLIDE_START) * SLIDE_PX
        if dx < size:
            out[i, :, dx:] = frame[:, : size - dx]
    return out


@pytest.fixture(scope="module")
def slide():
    frames = sliding_out()
    return frames, track_faces(frames, CFG)


def test_face_leaving_the_frame_is_flagged_and_gets_no_patch(slide):
    frames, track = slide
    found = track.found
    gone = SLIDE_START + frames.shape[2] // SLIDE_PX  # from here the frame is black
    assert found[:SLIDE_START].all() and not found[gone:].any()
    last = int(np.flatnonzero(found).max())
    assert not found[last + 1 :].any()  # one face run, then none
    weights = paste_weights(found, track.cuts)
    assert (weights[last + 1 :] == 0).all()
    # the patch fades out over the last frames of the run, strictly decreasing
    ramp = weights[last - FADE_FRAMES + 1 : last + 1]
    assert np.all(np.diff(ramp) < 0) and ramp[0] < 1 and weights[: last - FADE_FRAMES].min() == 1


def test_zero_strength_paste_returns_the_frame_bit_for_bit(slide):
    frames, track = slide
    crop = np.full((CFG.crop_size,) * 2 + (3,), 200, np.uint8)
    i = int(np.flatnonzero(~track.found)[0])
    out = paste_back(frames[i], crop, track.transforms[i], CFG, strength=0.0)
    assert np.array_equal(out, frames[i]) and out is not frames[i]
    j = 5  # a frame with the face: full and half strength change it, half by about half
    full = paste_back(frames[j], crop, track.transforms[j], CFG).astype(float) - frames[j]
    half = paste_back(frames[j], crop, track.transforms[j], CFG, strength=0.5).astype(float)
    assert np.abs(full).sum() > 0
    np.testing.assert_allclose((half - frames[j]).sum(), 0.5 * full.sum(), rtol=0.02)
    with pytest.raises(UserError):
        paste_back(frames[j], crop, track.transforms[j], CFG, strength=1.5)


def test_paste_weights_fade_bridge_and_cuts():
    found = np.array([1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1], bool)
    w = paste_weights(found, fade=4, bridge=2)
    assert (w == 1).all()  # misses of 1-2 frames inside a run are bridged
    w = paste_weights(found, fade=4, bridge=0)
    expected = np.array(
        [0.6, 0.4, 0.2, 0, 0, 0.2, 0.4, 0.6, 0.8, 0.8, 0.6, 0.4, 0.2, 0, 0.2, 0.4, 0.6, 0.8]
    )
    np.testing.assert_allclose(w, expected, atol=1e-6)  # k / (fade + 1) from the gap
    w = paste_weights(found, cuts=np.array([14]), fade=4, bridge=2)
    assert w[13] == 0 and w[12] == pytest.approx(0.2)  # no bridging across a shot cut
    assert (paste_weights(np.zeros(4, bool)) == 0).all()


@pytest.fixture(scope="module")
def two_people():
    a = render_clip(1, 2.0, size=192).frames  # 50 frames of one person
    b = render_clip(3, 2.0, size=192).frames  # then a hard cut to another
    return a, b


def test_hard_cut_restarts_the_track_without_blending(two_people):
    a, b = two_people
    joined = track_faces(np.concatenate([a, b]), CFG)
    assert joined.cuts.tolist() == [len(a)]
    alone_a, alone_b = track_faces(a, CFG), track_faces(b, CFG)
    # each shot's track equals the track of that shot on its own: nothing crosses the cut
    np.testing.assert_allclose(joined.transforms[: len(a)], alone_a.transforms, atol=1e-9)
    np.testing.assert_allclose(joined.transforms[len(a) :], alone_b.transforms, atol=1e-9)
    # the oracle can fail: smoothing across the cut (the old behaviour) moves the crop
    across = track_from_landmarks(joined.landmarks, joined.found, CFG, a.shape[1:3], None)
    near = slice(len(a) - 2, len(a) + 2)
    moved = np.abs(across.transforms[near, :, 2] - joined.transforms[near, :, 2]).max()
    assert moved > 1.0  # crop pixels


@pytest.fixture(scope="module")
def three_faces():
    return face_scenes.three_faces(0.2)


@pytest.mark.parametrize(
    "choice, span",
    [("largest", (0, 200)), ("center", (200, 360)), ("0", (0, 200)), ("1", (200, 360)),
     ("2", (400, 560)), ("420,30,540,190", (400, 560))],
)  # fmt: skip
def test_each_face_choice_picks_its_face(three_faces, choice, span):
    track = track_faces(three_faces, CFG, face=parse_face(choice))
    assert track.found.all()
    x = track.landmarks[..., 0]
    assert (x > span[0]).all() and (x < span[1]).all()


def test_parse_face_spellings():
    assert parse_face(None) is None and parse_face("largest") is None
    assert parse_face("center") == "center" and parse_face("Centre") == "center"
    assert parse_face("3") == 3
    with pytest.raises(UserError, match="largest, center"):
        parse_face("middle")
