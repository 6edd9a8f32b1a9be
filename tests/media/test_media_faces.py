"""media.faces on real clips (shared data) and synthetic edge cases; the contact-sheet command."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from media_testutils import pattern_frames, psnr, write_test_clip

from lipforcing.cli.main import main
from lipforcing.config import MediaConfig
from lipforcing.media.align import canonical_template, invert, map_points, warp_to_crop
from lipforcing.media.composite import paste_back
from lipforcing.media.faces import mouth_landmarks, track_faces
from lipforcing.media.io import read_video

CFG = MediaConfig()


def jitter(transforms: np.ndarray, crop_size: int) -> float:
    """Mean |second difference| (px) of the template points mapped back into the frame."""
    template = canonical_template(crop_size)
    points = np.stack([map_points(template, invert(m)) for m in transforms])  # (T, 5, 2)
    return float(np.linalg.norm(np.diff(points, 2, axis=0), axis=-1).mean())


def check_clip(path, max_frames=None):
    clip = read_video(path, fps=25, max_frames=max_frames)
    track = track_faces(clip.frames, CFG)
    assert track.found_ratio >= 0.99, f"{path.name}: face in {track.found_ratio:.1%}"
    raw, smooth = jitter(track.raw_transforms, 512), jitter(track.transforms, 512)
    assert smooth < 0.6 * raw, f"{path.name}: jitter {smooth:.2f} vs raw {raw:.2f}"
    return clip, track


def test_real_clips_tracked_smoothly_and_round_trip(clip_paths):
    for path in clip_paths:
        clip, track = check_clip(path, max_frames=50)
        crops = warp_to_crop(clip.frames[:10], track.transforms[:10], CFG.crop_size)
        for frame, crop, m in zip(clip.frames[:10], crops, track.transforms[:10]):
            assert psnr(paste_back(frame, crop, m, CFG), frame) >= 40
        # the detected mouth corners land near the template's in the aligned crop
        template = canonical_template(CFG.crop_size)
        mapped = map_points(track.landmarks[0], track.raw_transforms[0])
        assert np.abs(mapped - template).max() < 0.05 * CFG.crop_size


@pytest.mark.slow
def test_all_real_clips(shared_data):
    for path in sorted((shared_data / "clips").glob("*.mp4")):
        check_clip(path)


def test_mouth_landmarks_and_choice_of_face(clip_paths):
    frame = read_video(clip_paths[1], max_frames=1).frames[0]  # one face
    h, w = frame.shape[:2]
    small = cv2.resize(frame, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    canvas = np.zeros((h, w + w // 2, 3), np.uint8)
    canvas[:, :w] = frame
    canvas[h // 4 : h // 4 + h // 2, w:] = small  # a second, smaller face on the right
    frames = canvas[None]
    largest = track_faces(frames, CFG).landmarks[0]
    assert largest[:, 0].max() < w  # the big face on the left
    right = track_faces(frames, CFG, face=1).landmarks[0]
    assert right[:, 0].min() > w
    boxed = track_faces(frames, CFG, face=(w, h / 4, w * 1.5, h * 0.75)).landmarks[0]
    assert np.allclose(boxed, right)
    # the right face is the left one at half size, shifted
    assert np.allclose(right, largest / 2 + [w, h / 4], atol=0.02 * w)
    mouth = mouth_landmarks(frames)
    assert mouth.shape == (1, 20, 2)
    corners = largest[3:5].mean(0)
    assert np.linalg.norm(mouth[0].mean(0) - corners) < 0.05 * w


@pytest.mark.parametrize("side", [1600, 560])  # a big face, and one too small at 400 px
def test_4k_frame_detected(clip_paths, side):
    frame = read_video(clip_paths[1], max_frames=1).frames[0]
    big = np.zeros((2160, 3840, 3), np.uint8)
    big[280 : 280 + side, 1100 : 1100 + side] = cv2.resize(frame, (side, side), cv2.INTER_AREA)
    small, large = track_faces(frame[None], CFG), track_faces(big[None], CFG)
    assert large.found.all()
    expected = small.landmarks[0] * side / frame.shape[0] + [1100, 280]
    assert np.abs(large.landmarks[0] - expected).max() < 0.03 * side


def test_no_face_passes_through(tmp_path):
    frames = pattern_frames(6, 120, 160)
    track = track_faces(frames, CFG)
    assert not track.found.any() and track.found_ratio == 0
    assert np.isfinite(track.transforms).all()  # centre-crop fallback, nothing crashes
    path = write_test_clip(tmp_path / "noface.mp4", frames)
    assert main(["contact-sheet", str(path), "--out", str(tmp_path / "s.png")]) == 2


def test_contact_sheet_command(clip_paths, tmp_path, capsys):
    out = tmp_path / "sheet.png"
    argv = ["contact-sheet", str(clip_paths[0]), "--out", str(out), "--max-frames", "30"]
    assert main(argv + ["--columns", "4"]) == 0
    image = cv2.imread(str(out))
    assert image.shape[0] > 4 * 160 and image.shape[1] > 4 * 160
    assert "face found in 100.0%" in capsys.readouterr().out
    assert main(["contact-sheet", str(tmp_path / "missing.mp4"), "--out", str(out)]) == 2
    assert "error: no such file" in capsys.readouterr().err


def test_face_option_of_the_commands(clip_paths, tmp_path, capsys):
    from lipforcing.data.preprocess import load_shard
    from lipforcing.media.io import write_video

    frame = read_video(clip_paths[1], max_frames=1).frames[0]
    h, w = 256, 256
    left = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
    right = cv2.resize(frame, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    canvas = np.zeros((h, w + w // 2, 3), np.uint8)
    canvas[:, :w], canvas[h // 4 : h // 4 + h // 2, w:] = left, right
    video = tmp_path / "two.mp4"
    write_video(video, np.repeat(canvas[None], 3, 0), 25.0, audio=np.zeros(1920, np.float32))
    out = tmp_path / "shards"
    argv = ["preprocess", str(video), "--out", str(out), "--face", "1"]
    assert main(argv) == 0
    arrays, meta = load_shard(out / "two")
    assert meta["found_ratio"] == 1.0 and (arrays["landmarks"][..., 0] > w).all()
    sheet = tmp_path / "s.png"
    assert main(["contact-sheet", str(video), "--out", str(sheet), "--face", "0"]) == 0
    assert main(["contact-sheet", str(video), "--out", str(sheet), "--face", "a,b"]) == 2
    assert "error: --face must be" in capsys.readouterr().err
