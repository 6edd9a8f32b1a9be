"""media.align, mask, composite: exact similarity fits, smoothing, masks, paste-back."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from media_testutils import pattern_frames, psnr

from lipforcing.config import MediaConfig
from lipforcing.errors import UserError
from lipforcing.media.align import (
    canonical_template,
    fill_gaps,
    fit_similarity,
    map_points,
    smooth_params,
    warp_to_crop,
)
from lipforcing.media.composite import paste_back
from lipforcing.media.faces import track_faces
from lipforcing.media.mask import blend_mask, mouth_box, mouth_mask


def similarity(scale: float, angle: float, tx: float, ty: float) -> np.ndarray:
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    return np.array([[c, -s, tx], [s, c, ty]])


def test_fit_similarity_recovers_known_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 500, (5, 2))
    m = similarity(0.7, 0.3, 12.0, -40.0)
    assert np.allclose(fit_similarity(src, map_points(src, m)), m, atol=1e-9)
    # least squares agrees with OpenCV's estimator on noisy points
    noisy = map_points(src, m) + rng.normal(0, 1.0, (5, 2))
    cv_m, _ = cv2.estimateAffinePartial2D(src, noisy, method=cv2.LMEDS)
    assert np.allclose(fit_similarity(src, noisy), cv_m, atol=0.05 * np.abs(m).max())


def test_template_in_crop_and_symmetric():
    t = canonical_template(512)
    assert (t > 0).all() and (t < 512).all()
    assert t[0, 1] < t[2, 1] < t[3, 1]  # eyes above nose above mouth
    cfg = MediaConfig()
    assert t[2, 1] < cfg.mouth_top * 512 < t[3, 1]  # mask starts between nose tip and mouth
    assert abs((t[0, 0] + t[1, 0]) / 2 - 256) < 2  # centred


def test_gaps_and_smoothing():
    t = np.arange(20, dtype=float)
    params = np.stack([t, 2 * t], 1)
    valid = np.ones(20, bool)
    valid[[0, 5, 6, 7]] = False
    filled = fill_gaps(np.where(valid[:, None], params, 0.0), valid)
    assert np.allclose(filled[5:8], params[5:8]) and np.allclose(filled[0], params[1])
    rng = np.random.default_rng(0)
    noisy = params + rng.normal(0, 1, params.shape)
    smooth = smooth_params(noisy, 0.6)
    assert (
        np.abs(np.diff(smooth, 2, axis=0)).mean() < 0.3 * np.abs(np.diff(noisy, 2, axis=0)).mean()
    )
    assert np.allclose(smooth_params(noisy, 0.0), noisy)


def test_given_landmarks_align_to_template():
    cfg = MediaConfig(crop_size=128, smoothing=0.0)
    frames = pattern_frames(4, 200, 240)
    template = canonical_template(128)
    truth = np.stack([similarity(1.3 + 0.1 * i, 0.1 * i, 20.0 + i, 5.0) for i in range(4)])
    # landmarks in frame pixels = template pulled back through each frame's transform
    points = np.stack([map_points(template, cv2.invertAffineTransform(m)) for m in truth])
    points[2] = np.nan  # a frame without a face: interpolated, counted
    track = track_faces(frames, cfg, landmarks=points)
    assert track.found.tolist() == [True, True, False, True]
    assert np.allclose(track.transforms[[0, 1, 3]], truth[[0, 1, 3]], atol=1e-6)
    assert np.allclose(track.transforms[2], (truth[1] + truth[3]) / 2, atol=1e-6)
    crops = warp_to_crop(frames, track, 128)
    oracle = cv2.warpAffine(frames[0], truth[0], (128, 128), borderMode=cv2.BORDER_REFLECT)
    assert np.array_equal(crops[0], oracle)
    with pytest.raises(UserError):
        track_faces(frames, cfg, landmarks=points[:2])


def test_masks():
    cfg = MediaConfig(crop_size=256)
    hard, soft = mouth_mask(cfg), blend_mask(cfg)
    assert set(np.unique(hard)) == {0.0, 1.0} and hard.dtype == np.float32
    top, bottom, left, right = mouth_box(cfg)
    assert hard[top:, left:right].all() and not hard[:top].any() and not hard[:, :left].any()
    assert (soft <= hard).all() and soft.min() >= 0
    assert soft[(top + bottom) // 2 + 10, 128] > 0.99  # deep inside
    assert 0.05 < soft[top + int(cfg.feather * 256), 128] < 0.95  # feathered edge


@pytest.mark.parametrize("angle,scale", [(0.0, 1.0), (0.25, 0.6), (-0.4, 1.7)])
def test_paste_back_round_trip(angle, scale):
    cfg = MediaConfig(crop_size=128)
    frame = pattern_frames(1, 300, 400, seed=3)[0]
    m = similarity(scale, angle, 0, 0)
    centre = map_points(np.array([200.0, 150.0]), m)
    m[:, 2] = 64 - centre  # the crop is centred on (200, 150)
    crop = warp_to_crop(frame[None], m[None], 128)[0]
    out = paste_back(frame, crop, m, cfg)
    assert psnr(out, frame) >= 40
    # outside the warped mouth region the frame is untouched, bit for bit
    alpha = cv2.warpAffine(blend_mask(cfg), m, (400, 300), flags=cv2.WARP_INVERSE_MAP)
    assert np.array_equal(out[alpha == 0], frame[alpha == 0])
    # a changed crop does change the mouth region
    changed = paste_back(frame, 255 - crop, m, cfg)
    assert np.abs(changed.astype(int) - frame).max() > 100


def test_color_match_moves_statistics():
    cfg = MediaConfig(crop_size=128, color_match=True)
    frame = pattern_frames(1, 200, 200, seed=1)[0]
    m = similarity(1.0, 0.0, -36.0, -36.0)
    crop = warp_to_crop(frame[None], m[None], 128)[0]
    tinted = np.clip(crop.astype(int) + 40, 0, 255).astype(np.uint8)
    plain = paste_back(frame, tinted, m, MediaConfig(crop_size=128))
    matched = paste_back(frame, tinted, m, cfg)
    assert psnr(matched, frame) > psnr(plain, frame) + 3
    with pytest.raises(UserError):
        paste_back(frame, crop[:64], m, cfg)


def test_strong_downscale_does_not_alias():
    # one-pixel stripes shrunk 4x: a plain bilinear warp aliases them into bands, the
    # low-passed warp gives their mean grey
    stripes = np.zeros((1, 512, 512, 3), np.uint8)
    stripes[:, :, ::2] = 255
    m = similarity(0.25, 0.0, 0.0, 0.0)[None]
    crop = warp_to_crop(stripes, m, 128)[0, 8:-8, 8:-8].astype(float)
    assert np.abs(crop - 127.5).max() < 10
    naive = cv2.warpAffine(stripes[0], m[0], (128, 128))[8:-8, 8:-8].astype(float)
    assert np.abs(naive - 127.5).max() > 60
