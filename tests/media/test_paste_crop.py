"""Whole-crop paste-back (``MediaConfig.paste = "crop"``, the release's --composite_full_face):
the generated crop replaces the frame inside its footprint, behind LatentSync AlignRestore's
soft edge measured in frame pixels; the default mouth paste is unchanged."""

from __future__ import annotations

import numpy as np
import pytest
from media_testutils import pattern_frames

from lipforcing.config import MediaConfig
from lipforcing.media.composite import ALIGN_RESTORE_EDGE_DIVISOR, paste_back

S = 128  # crop side
GREY = 200  # the generated crop: flat, so the blend weight reads off the output


def centred(scale: float, frame_hw=(400, 500), at=(250.0, 200.0)) -> np.ndarray:
    """frame -> crop transform of a crop (side S) whose footprint is S / scale frame pixels,
    centred on ``at`` (x, y)."""
    m = np.array([[scale, 0.0, 0.0], [0.0, scale, 0.0]])
    m[:, 2] = S / 2 - scale * np.asarray(at)
    return m


def weight_along_row(scale: float, strength: float = 1.0):
    """(blend weight along the footprint's middle row (frame x -> weight), output, frame)."""
    frame = pattern_frames(1, 400, 500, seed=2)[0]
    crop = np.full((S, S, 3), GREY, np.uint8)
    cfg = MediaConfig(crop_size=S, paste="crop")
    out = paste_back(frame, crop, centred(scale), cfg, strength)
    row = 200
    f, o = frame[row].astype(float), out[row].astype(float)
    c = np.argmax(np.abs(GREY - f), axis=1)[:, None]  # the channel the weight reads best on
    f, o = np.take_along_axis(f, c, 1)[:, 0], np.take_along_axis(o, c, 1)[:, 0]
    readable = np.abs(GREY - f) > 20
    return np.where(readable, (o - f) / np.where(readable, GREY - f, 1), np.nan), out, frame


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_the_whole_crop_replaces_the_footprint_behind_a_soft_edge(scale):
    side = S / scale  # footprint side in frame pixels
    edge = int(side - 1) // ALIGN_RESTORE_EDGE_DIVISOR  # AlignRestore's w, eroded side - 1
    x0, x1 = 250 - side / 2, 250 + side / 2
    w, out, frame = weight_along_row(scale)
    inner = slice(int(x0 + 2 * edge + 2), int(x1 - 2 * edge - 2))
    assert (out[200, inner] == GREY).all()  # deep inside: the generated crop exactly
    outside = np.r_[: int(x0) - 1, int(x1) + 2 : 500]
    assert np.array_equal(out[:, outside], frame[:, outside])  # the frame, bit for bit
    assert np.array_equal(out[: int(200 - side / 2) - 1], frame[: int(200 - side / 2) - 1])
    # the edge: rises from 0 to 1 over about 2w frame pixels (w from the frame-pixel area)
    ramp = w[int(x0) - 1 : int(x0) + 3 * edge]
    ok = ~np.isnan(ramp)
    assert np.all(np.diff(ramp[ok]) >= -0.05)
    band = np.flatnonzero((w > 0.05) & (w < 0.95))
    band = band[band < 250]
    assert 0.8 * edge <= len(band) <= 2.6 * edge, (len(band), edge)


def test_the_edge_is_measured_in_frame_pixels():
    """Twice the footprint (the same crop pasted at half the scale) doubles the soft edge, as
    AlignRestore measures it on the frame, not on the crop."""
    widths = []
    for scale in (1.0, 0.5):
        w, _, _ = weight_along_row(scale)
        widths.append(np.count_nonzero((w[:250] > 0.05) & (w[:250] < 0.95)))
    assert 1.6 <= widths[1] / widths[0] <= 2.4, widths


def test_strength_scales_the_whole_crop_and_mouth_paste_keeps_the_upper_face():
    w, _, _ = weight_along_row(1.0, strength=0.5)
    assert np.nanmax(w) == pytest.approx(0.5, abs=0.02)
    frame = pattern_frames(1, 400, 500, seed=2)[0]
    crop = np.full((S, S, 3), GREY, np.uint8)
    m = centred(1.0)
    upper = (slice(160, 190), slice(220, 280))  # footprint rows 24-54 of 128: above the mouth
    mouth = paste_back(frame, crop, m, MediaConfig(crop_size=S))
    whole = paste_back(frame, crop, m, MediaConfig(crop_size=S, paste="crop"))
    assert np.array_equal(mouth[upper], frame[upper])
    assert (whole[upper] == GREY).all()
    none = paste_back(frame, crop, m, MediaConfig(crop_size=S, paste="crop"), 0.0)
    assert np.array_equal(none, frame)


def test_align_restore_edge_matches_an_independent_recomputation():
    """The edge recomputed with scipy (minimum filters anchored as OpenCV anchors even kernels, then
    a normalised Gaussian of 2w + 1 taps with OpenCV's default sigma for that size)."""
    from scipy import ndimage

    from lipforcing.media.composite import align_restore_edge

    side, pad = 100, 12
    footprint = np.pad(np.ones((side, side), np.float32), pad)  # zeros around the crop
    eroded, soft = align_restore_edge(footprint)
    w = (side - 1) // ALIGN_RESTORE_EDGE_DIVISOR
    first = ndimage.minimum_filter(footprint, size=2)
    assert np.array_equal(eroded, first)
    centre = ndimage.minimum_filter(first, size=2 * w)
    sigma = 0.3 * ((2 * w + 1 - 1) * 0.5 - 1) + 0.8
    taps = np.exp(-0.5 * (np.arange(-w, w + 1) / sigma) ** 2)
    taps /= taps.sum()
    for axis in (0, 1):
        centre = ndimage.correlate1d(centre, taps, axis=axis, mode="mirror")
    np.testing.assert_allclose(soft, centre, atol=1e-5)
    assert soft.max() == pytest.approx(1) and soft[:pad].max() == 0
