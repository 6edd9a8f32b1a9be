"""I3D and FVD: the converted Kinetics-400 network classifies DeepMind's sample video, the TF1
resize matches its sampling formula, SAME padding matches TF's rule, identical videos give
FVD ~ 0, and FVD grows with degradation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from lipforcing.errors import CheckpointError
from lipforcing.evaluation.fvd import FVDNet, clips, fvd, tf_resize_bilinear
from lipforcing.evaluation.i3d import load_i3d, same_pad


def gif_frames(refs, n: int, size: int | None = None) -> np.ndarray:
    from PIL import Image

    gif = Image.open(refs / "v_CricketShot_g04_c01_rgb.gif")
    out = []
    for i in range(n):
        gif.seek(i)
        im = gif.convert("RGB")
        out.append(np.array(im.resize((size, size)) if size else im))
    return np.stack(out)


@pytest.fixture(scope="module")
def fvdnet():
    return FVDNet()


def test_i3d_classifies_the_deepmind_sample(shared_data, fvdnet):
    refs = shared_data / "metric-refs"
    labels = (refs / "kinetics400_label_map.txt").read_text().splitlines()
    x = torch.from_numpy(gif_frames(refs, 16)).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
    with torch.no_grad():
        probs = fvdnet.net(x).softmax(-1)[0]
    assert labels[int(probs.argmax())] == "playing cricket"
    assert probs.max() > 0.9  # measured 0.956 on frames 0-15 (0.989 on all 79)


def test_tf_resize_and_same_padding():
    x = torch.arange(8.0).repeat(8, 1)[None]  # (1, 8, 8), a ramp along W
    # TF1 legacy sampling: source = dest * in / out
    torch.testing.assert_close(tf_resize_bilinear(x, 4)[0, 0], torch.tensor([0.0, 2, 4, 6]))
    up = tf_resize_bilinear(x[..., :2, :2], 4)[0, 0]  # 2 -> 4: 0, 0.5, 1, 1 (edge held)
    torch.testing.assert_close(up, torch.tensor([0.0, 0.5, 1.0, 1.0]))
    # TF SAME: out = ceil(in / s), total pad = (out - 1) s + k - in, the extra one at the end
    y = same_pad(torch.zeros(1, 1, 16, 224, 223), (7, 7, 7), (2, 2, 2), 1.0)
    assert y.shape[2:] == (16 + 5, 224 + 5, 223 + 6)
    assert y[0, 0, :2].eq(1).all() and y[0, 0, 2:-3, 2:-3, 3:-3].eq(0).all()


def test_clips_and_identity(shared_data, fvdnet):
    frames = gif_frames(shared_data / "metric-refs", 34, 112)
    assert clips(frames).shape == (2, 16, 112, 112, 3)  # remainder of 2 dropped
    feats = fvdnet.features(frames)
    assert feats.shape == (2, 400) and feats.dtype == np.float64
    assert abs(fvd([feats], [feats])) < 1e-3


def test_bad_checkpoint_is_a_checkpoint_error(tmp_path):
    bad = tmp_path / "i3d.pt"
    torch.save({"logits.conv3d.bias": torch.zeros(400)}, bad)
    with pytest.raises(CheckpointError):
        load_i3d(bad)


@pytest.mark.slow  # ~40 s: 4 I3D clips per level
def test_fvd_grows_with_degradation(shared_data, fvdnet):
    gt = gif_frames(shared_data / "metric-refs", 64, 128)
    gt_feats = fvdnet.features(gt)
    rng = np.random.default_rng(0)
    scores = [fvd([gt_feats], [gt_feats])]
    for level in (1, 2, 3):
        x = gaussian_filter(gt.astype(float), (0, level, level, 0))
        x = np.roll(x + rng.normal(0, 6 * level, x.shape), level, axis=2)
        scores.append(fvd([fvdnet.features(np.clip(x, 0, 255).astype(np.uint8))], [gt_feats]))
    assert abs(scores[0]) < 1e-2 and (np.diff(scores) > 0).all(), scores
