"""Shot-cut detection: no cuts inside real or SynthTalk clips, exactly the join between two."""

from __future__ import annotations

import numpy as np
import pytest

from lipforcing.media.io import read_video
from lipforcing.media.shots import CutDetector, detect_cuts, shot_ids, shot_slices
from lipforcing.media.synthtalk.clip import render_clip


@pytest.fixture(scope="module")
def synth():
    return [render_clip(seed, 2.0, size=128).frames for seed in (1, 2, 3)]


def test_synthtalk_clips_have_no_cut_and_their_joins_one(synth):
    for frames in synth:
        assert len(detect_cuts(frames)) == 0
    joined = np.concatenate(synth)  # 50 + 50 + 50 frames
    assert detect_cuts(joined).tolist() == [50, 100]


def test_a_flash_and_a_still_video_are_not_cuts(synth):
    frames = synth[0].copy()
    frames[20] = np.clip(frames[20].astype(int) + 90, 0, 255)  # one over-exposed frame
    assert len(detect_cuts(frames)) == 0
    still = np.repeat(synth[0][:1], 30, axis=0)  # identical frames: distances are all zero
    assert len(detect_cuts(still)) == 0


def test_the_one_pass_detector_flags_the_cut_as_it_arrives(synth):
    joined = np.concatenate(synth[:2])
    detector = CutDetector()
    flagged = [i for i, frame in enumerate(joined) if detector.push(frame)]
    assert 50 in flagged  # judged from the past only: restart the face follower here
    assert detector.cuts().tolist() == [50]


def test_shot_ids_and_slices():
    assert shot_ids(np.array([2, 5]), 7).tolist() == [0, 0, 1, 1, 1, 2, 2]
    assert shot_slices(np.array([2, 5]), 7) == [slice(0, 2), slice(2, 5), slice(5, 7)]
    assert shot_slices(np.zeros(0, int), 3) == [slice(0, 3)]


@pytest.mark.shared_data
def test_real_clips_no_false_cuts_and_every_join_found(shared_data):
    """Every pair of clips-256 videos joined end to start: exactly one cut, at the join (the
    same speaker in the same studio included: Obama, andrew, feifeili)."""
    clips = {
        p.stem: read_video(p, fps=25, max_frames=60).frames
        for p in sorted((shared_data / "clips-256").glob("*.mp4"))
    }
    for name, frames in clips.items():
        assert len(detect_cuts(frames)) == 0, name
    for a, fa in clips.items():
        for b, fb in clips.items():
            if a != b:
                got = detect_cuts(np.concatenate([fa[-30:], fb[:30]]))
                assert got.tolist() == [30], (a, b, got)
