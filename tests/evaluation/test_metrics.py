"""Frame metrics against independent references: scikit-image SSIM, a direct scipy Fréchet
distance, the LPIPS reference triplet, and identity / monotone degradation on a real frame."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from scipy.ndimage import gaussian_filter
from skimage.metrics import structural_similarity

from lipforcing.evaluation.fid import FIDNet, feature_distance, fid, frechet_distance
from lipforcing.evaluation.image_metrics import psnr, ssim
from lipforcing.evaluation.lpips import LPIPS, lpips_frames


def load_png(path) -> np.ndarray:
    from PIL import Image

    return np.array(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def lpips_alex():
    return LPIPS("alex")


def test_ssim_matches_skimage():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (2, 40, 48, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 40, a.shape), 0, 255).astype(np.uint8)
    ours = ssim(a, b)
    for i in range(2):
        ref = structural_similarity(
            a[i],
            b[i],
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=255,
            channel_axis=-1,
        )
        assert ours[i] == pytest.approx(ref, abs=1e-4)
    assert ssim(a, a) == pytest.approx([1.0, 1.0])
    mse = ((a[0].astype(float) - b[0]) ** 2).mean()
    assert psnr(a[:1], b[:1])[0] == pytest.approx(10 * np.log10(255**2 / mse))


def test_frechet_matches_direct_scipy():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((500, 6))
    y = rng.standard_normal((400, 6)) @ rng.standard_normal((6, 6)) * 0.5 + 1.0
    m1, m2, s1, s2 = x.mean(0), y.mean(0), np.cov(x.T), np.cov(y.T)
    ref = np.sum((m1 - m2) ** 2) + np.trace(s1 + s2 - 2 * np.real(scipy.linalg.sqrtm(s1 @ s2)))
    assert feature_distance(x, y) == pytest.approx(ref, rel=1e-8)
    # analytic: 1-D Gaussians, W2^2 = (m1 - m2)^2 + (sd1 - sd2)^2
    assert frechet_distance(0.0, 4.0, 3.0, 1.0) == pytest.approx(9 + 1)
    assert feature_distance(x, x) == pytest.approx(0, abs=1e-8)


def test_lpips_reference_triplet(shared_data, lpips_alex):
    refs = shared_data / "metric-refs"
    ref = load_png(refs / "lpips_ex_ref.png")[None]
    d0 = lpips_frames(lpips_alex, load_png(refs / "lpips_ex_p0.png")[None], ref)[0]
    d1 = lpips_frames(lpips_alex, load_png(refs / "lpips_ex_p1.png")[None], ref)[0]
    assert d0 == pytest.approx(0.722, abs=0.005)
    assert d1 == pytest.approx(0.138, abs=0.005)
    assert lpips_frames(LPIPS("vgg"), ref, ref)[0] == pytest.approx(0.0, abs=1e-6)


def degrade(frames: np.ndarray, level: int, rng) -> np.ndarray:
    """Blur + noise + shift, all growing with level (0 = identity)."""
    if level == 0:
        return frames.copy()
    x = gaussian_filter(frames.astype(float), sigma=(0, level, level, 0))
    x = x + rng.normal(0, 6 * level, x.shape)
    x = np.roll(x, level, axis=2)
    return np.clip(x, 0, 255).astype(np.uint8)


@pytest.mark.slow  # ~60 s on 2 loaded cores: 2048-d sqrtm per level
def test_identity_and_monotone_degradation(shared_data, lpips_alex):
    from PIL import Image

    gif = Image.open(shared_data / "metric-refs" / "v_CricketShot_g04_c01_rgb.gif")
    frames = []
    for i in range(8):
        gif.seek(i * 4)
        frames.append(np.array(gif.convert("RGB").resize((96, 96))))
    gt = np.stack(frames)
    fidnet = FIDNet()
    gt_feats = fidnet.features(gt)
    rng = np.random.default_rng(0)
    rows = []
    for level in range(4):
        pred = degrade(gt, level, rng)
        rows.append(
            (
                ssim(pred, gt).mean(),
                -lpips_frames(lpips_alex, pred, gt).mean(),
                -fid([fidnet.features(pred)], [gt_feats]),
                psnr(pred, gt).mean(),
            )
        )
    rows = np.array(rows)  # (levels, metrics): higher is better for every column
    assert rows[0, 0] == pytest.approx(1.0) and rows[0, 1] == pytest.approx(0.0, abs=1e-6)
    assert abs(rows[0, 2]) < 1e-3 and np.isinf(rows[0, 3])
    assert (np.diff(rows, axis=0) < 0).all(), rows
    torch.testing.assert_close(torch.tensor(gt_feats), torch.tensor(fidnet.features(gt)))
