"""Issue 19's face probes on real footage (clips-256): a face that leaves the frame comes out as
the source frames bit for bit, a hard cut to another person restarts the track, and an upload
(Source.from_upload, the server's path) gets the same flags, cuts and track as the file path.

The student is the random tiny one of conftest.py; the oracles are the source frames and the
tracks of each shot on its own.
"""

from __future__ import annotations

import numpy as np
import pytest
from streaming_inputs import speech_like

from lipforcing.config import tiny
from lipforcing.media.faces import track_faces
from lipforcing.media.io import read_video, write_video
from lipforcing.media.probe import MediaBudget
from lipforcing.streaming.offline import lipsync_offline
from lipforcing.streaming.source import Source

MEDIA = tiny().media
SLIDE_START, SLIDE_PX = 12, 12  # the face starts leaving at this frame, px per frame

pytestmark = pytest.mark.shared_data


@pytest.fixture
def real(shared_data):
    def clip(name: str, frames: int) -> np.ndarray:
        path = shared_data / "clips-256" / f"{name}.mp4"
        return np.asarray(read_video(path, fps=MEDIA.fps, max_frames=frames).frames)

    return clip


def sliding_out(frames: np.ndarray) -> np.ndarray:
    """The clip pushed out of the right edge from SLIDE_START on; black once it is gone."""
    out = np.zeros_like(frames)
    width = frames.shape[2]
    for i, frame in enumerate(frames):
        dx = max(0, i - SLIDE_START) * SLIDE_PX
        if dx < width:
            out[i, :, dx:] = frame[:, : width - dx]
    return out


def test_real_face_leaving_is_passed_through_untouched(pipeline, real):
    frames = sliding_out(real("Obama_clip1", 60))
    source = Source.from_frames(frames, MEDIA, name="leaving")
    gone = SLIDE_START + frames.shape[2] // SLIDE_PX + 1  # all black from here
    assert source.found[:SLIDE_START].all() and not source.found[gone:].any()
    result = lipsync_offline(pipeline, source, speech_like(2.0, seed=3))
    weights = source.paste_weights[result.source_index]
    untouched = np.flatnonzero(weights == 0)
    assert len(untouched) >= 10
    for k in untouched:
        assert np.array_equal(result.frames[k], source.frames[result.source_index[k]]), k
    pasted = np.flatnonzero(weights == 1)
    assert all(not np.array_equal(result.frames[k], frames[k]) for k in pasted)  # can fail
    assert f"found in {source.frames_with_face} of {len(source)} frames" in source.face_report()


def test_real_hard_cut_restarts_the_track_on_the_file_and_upload_paths(real, tmp_path):
    a, b = real("Obama_clip1", 30), real("KristiNoem", 30)
    joined = np.concatenate([a, b])
    source = Source.from_frames(joined, MEDIA)
    assert source.cuts.tolist() == [len(a)]
    np.testing.assert_allclose(source.transforms[len(a) :], track_faces(b, MEDIA).transforms)
    np.testing.assert_allclose(source.transforms[: len(a)], track_faces(a, MEDIA).transforms)
    path = tmp_path / "cut.mp4"
    write_video(path, joined, MEDIA.fps)
    raw = Source.from_file(path, MEDIA)
    upload = Source.from_upload(path, MEDIA, budget=MediaBudget(), name="cut.mp4")
    assert upload.cuts.tolist() == raw.cuts.tolist() == [len(a)]
    np.testing.assert_array_equal(upload.found, raw.found)
    np.testing.assert_array_equal(upload.paste_weights, raw.paste_weights)
    np.testing.assert_array_equal(upload.transforms, raw.transforms)
    assert upload.face_report() == raw.face_report()
