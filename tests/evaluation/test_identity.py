"""CSIM (dlib ResNet, ArcFace iresnet100), LMD and the shared-crop protocol on real clips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lipforcing.errors import CheckpointError, UserError
from lipforcing.evaluation import protocol
from lipforcing.evaluation.csim import ArcFaceNet, DlibFaceNet, cosine, iresnet100, load_arcface
from lipforcing.evaluation.lmd import mouth_distance
from lipforcing.media.io import read_video

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def clip(shared_data, name: str, n: int = 12) -> np.ndarray:
    return read_video(shared_data / "clips-256" / f"{name}.mp4", 25.0, max_frames=n).frames


@pytest.fixture(scope="module")
def obama():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent (research media is not shipped with the repo)")
    frames = clip(SHARED_DATA, "Obama_clip1")
    return frames, protocol.track_ground_truth(frames)


def test_dlib_csim_identity_and_other_person(shared_data, obama):
    frames, faces = obama
    net = DlibFaceNet()
    chips = protocol.identity_chips(frames, faces, "dlib", step=3)
    e = net.embed(chips)
    assert cosine(e, e) == pytest.approx(np.ones(len(e)))
    # our chip + descriptor equals dlib's own one-call path on the same landmarks
    import dlib

    from lipforcing.evaluation.csim import _dlib_recognizer

    i = faces.frames_with_face[0]
    rect = dlib.rectangle(*(int(round(v)) for v in faces.boxes[i]))
    parts = [dlib.point(int(round(x)), int(round(y))) for x, y in faces.points[i]]
    shape = dlib.full_object_detection(rect, parts)
    ref = np.array(_dlib_recognizer().compute_face_descriptor(frames[i], shape, 0, 0.25))
    np.testing.assert_allclose(e[0], ref, atol=1e-6)
    # another clip of the same man vs another person, each cut with its own track
    other = {}
    for name in ("Obama_clip2", "KristiNoem"):
        f = clip(shared_data, name)
        other[name] = net.embed(
            protocol.identity_chips(f, protocol.track_ground_truth(f), "dlib", 3)
        )
    n = min(len(e), *(len(v) for v in other.values()))
    same = cosine(e[:n], other["Obama_clip2"][:n]).mean()
    diff = cosine(e[:n], other["KristiNoem"][:n]).mean()
    assert diff < same - 0.08, (same, diff)  # measured 0.956 vs 0.826


def test_lmd_zero_for_identical_and_grows_with_shift(obama):
    frames, faces = obama
    gt = faces.points[:, 48:68]
    assert (
        mouth_distance(protocol.mouth_points(frames, faces), gt, faces.transforms, 256).max() == 0
    )
    lmd = []
    for k in (1, 3):
        shifted = np.concatenate([frames[k:], frames[-1:].repeat(k, 0)])
        pts = protocol.mouth_points(shifted, faces)
        lmd.append(np.nanmean(mouth_distance(pts, gt, faces.transforms, 256)))
    assert 0 < lmd[0] < lmd[1], lmd
    with pytest.raises(UserError):
        mouth_distance(gt[:, :10], gt[:, :10], faces.transforms, 256)


def test_same_crops_for_both_videos(obama):
    frames, faces = obama
    crops = protocol.face_crops(frames, faces)
    assert crops.shape == (len(frames), 256, 256, 3)
    # a prediction differing only in one pixel block gets the crop from the GT transforms
    pred = frames.copy()
    pred[:, :8, :8] = 0
    np.testing.assert_array_equal(
        protocol.face_crops(pred, faces)[:, 100:150, 100:150], crops[:, 100:150, 100:150]
    )
    a, b, note = protocol.match_frames(frames, frames[:-2], "x", trim=True)
    assert len(a) == len(b) == len(frames) - 2 and "trimmed" in note
    with pytest.raises(UserError, match="frames"):
        protocol.match_frames(frames, frames[:-2], "x")


@pytest.mark.parametrize("preset", ["tiny", "wan-1.3b"])
def test_ground_truth_crops_follow_the_presets_alignment(obama, preset):
    """The protocol hands the tracker the 68 points, so a preset's alignment gets what it fits
    (the Wan presets' latentsync3 needs eyebrows + nose, not the 5 ArcFace points): its crops
    are the ones the media tracker cuts for that preset at the evaluation size."""
    from dataclasses import replace

    from lipforcing.config import get_preset
    from lipforcing.media.faces import track_faces

    frames, _ = obama
    media = replace(get_preset(preset).media, crop_size=protocol.EVAL_CROP)
    faces = protocol.track_ground_truth(frames, protocol.EVAL_CROP, align=media.align)
    np.testing.assert_allclose(faces.transforms, track_faces(frames, media).transforms)
    assert faces.points.shape == (len(frames), 68, 2)
    other = protocol.track_ground_truth(frames, align="arcface5")
    differs = not np.allclose(faces.transforms, other.transforms)
    assert differs == (media.align != "arcface5")


def test_no_face_in_ground_truth_is_a_media_error():
    from lipforcing.errors import MediaError

    with pytest.raises(MediaError):
        protocol.track_ground_truth(np.zeros((3, 64, 64, 3), np.uint8))


def expected_iresnet_keys(layers=(3, 13, 30, 3)) -> set[str]:
    """InsightFace arcface_torch iresnet state-dict names, spelled out independently."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = {"conv1.weight", "prelu.weight", "fc.weight", "fc.bias"}
    keys |= {f"{m}.{p}" for m in ("bn1", "bn2", "features") for p in bn}
    for li, n in enumerate(layers, 1):
        for b in range(n):
            pre = f"layer{li}.{b}"
            keys |= {f"{pre}.conv1.weight", f"{pre}.conv2.weight", f"{pre}.prelu.weight"}
            keys |= {f"{pre}.{m}.{p}" for m in ("bn1", "bn2", "bn3") for p in bn}
            if b == 0:
                keys |= {f"{pre}.downsample.0.weight"}
                keys |= {f"{pre}.downsample.1.{p}" for p in bn}
    return keys


def test_arcface_iresnet100_layout_and_loading(tmp_path):
    torch.manual_seed(0)
    model = iresnet100().eval()
    assert set(model.state_dict()) == expected_iresnet_keys()
    n = sum(p.numel() for p in model.parameters())
    assert 65.0e6 < n < 65.3e6  # ArcFace r100: 65.2 M parameters
    path = tmp_path / "backbone.pth"
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, path)  # DDP prefix
    net = ArcFaceNet.load(path)
    chips = np.random.default_rng(0).integers(0, 256, (2, 112, 112, 3), dtype=np.uint8)
    e = net.embed(chips)
    assert e.shape == (2, 512) and np.allclose(np.linalg.norm(e, axis=1), 1)
    with torch.no_grad():
        x = torch.from_numpy(chips).permute(0, 3, 1, 2).float() / 127.5 - 1
        ref = torch.nn.functional.normalize(model(x), dim=1).double().numpy()
    np.testing.assert_allclose(e, ref, atol=1e-5)
    torch.save({"conv1.weight": torch.zeros(64, 3, 3, 3)}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError):
        load_arcface(tmp_path / "bad.pth")
    with pytest.raises(UserError):
        net.model(torch.zeros(1, 3, 128, 128))
