"""The released model's input distribution: LatentSync's mask (drawn or loaded), its latent
reduction, and the 3-point align-and-resize; the tiny preset keeps what it was trained with."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lipforcing.config import MediaConfig, get_preset
from lipforcing.data.conditions import latent_mask
from lipforcing.errors import MediaError
from lipforcing.media.align import (
    alignment_points,
    fit_similarity,
    latentsync_canvas,
    transforms_from_landmarks,
)
from lipforcing.media.mask import blend_mask, latentsync_mask, mouth_box, mouth_mask


def old_rectangle_blend(cfg: MediaConfig) -> np.ndarray:
    """The blend mask as the tiny preset was trained and shipped with (formula kept here)."""
    s = cfg.crop_size
    width = max(1, int(round(cfg.feather * s)))
    top, bottom, left, right = mouth_box(cfg)
    inner = np.zeros((s, s), np.float32)
    inner[top + width : bottom - width, left + width : right - width] = 1.0
    soft = cv2.GaussianBlur(inner, (0, 0), sigmaX=width / 2.0, borderType=cv2.BORDER_CONSTANT)
    return (soft * mouth_mask(cfg)).astype(np.float32)


def test_tiny_preset_keeps_its_mask_and_alignment():
    media = get_preset("tiny").media
    assert media.mask_style == "rectangle" and media.align == "arcface5"
    assert np.array_equal(blend_mask(media), old_rectangle_blend(media))
    wan = get_preset("wan-14b").media
    assert wan.mask_style == "latentsync" and wan.align == "latentsync3"


def test_latentsync_mask_drawn_and_loaded(tmp_path):
    m = latentsync_mask(512)
    assert m[0:180].sum() == 0 and m[200, 60] == 1 and m[200, 10] == 0  # band from 37%
    assert m[200, 256] == 0 and m[270, 256] == 1  # the nose notch is kept, then masked
    assert m[240, 40] == 1 and m[500, 256] == 0 and m[470, 256] == 1  # band sides, chin
    keep = ((1 - latentsync_mask(256)) * 255).astype(np.uint8)  # a LatentSync-style PNG
    cv2.imwrite(str(tmp_path / "mask.png"), np.stack([keep] * 3, -1))
    cfg = MediaConfig(crop_size=512, mask_style="latentsync", mask_image=str(tmp_path / "mask.png"))
    loaded = mouth_mask(cfg)
    assert ((loaded > 0) & (m > 0)).sum() / ((loaded > 0) | (m > 0)).sum() > 0.99
    grey = np.full((64, 64), 127, np.uint8)
    grey[:, 32:] = 129  # the release keeps where grey / 255 > 0.5
    cv2.imwrite(str(tmp_path / "grey.png"), grey)
    g = mouth_mask(MediaConfig(crop_size=64, mask_image=str(tmp_path / "grey.png")))
    assert g[:, :30].all() and not g[:, 34:].any()
    soft = blend_mask(cfg)
    assert abs(soft.max() - 1) < 1e-5 and (soft <= loaded + 1e-5).all()
    assert soft[loaded == 0].max() == 0
    with pytest.raises(MediaError, match="no such file"):
        mouth_mask(MediaConfig(mask_image=str(tmp_path / "absent.png")))


def test_latent_reduction_follows_the_style():
    m = torch.from_numpy(latentsync_mask(512))
    release = 1 - (F.interpolate(1 - m[None, None], (64, 64), mode="bilinear") > 0.5).float()
    got = latent_mask(m, (64, 64), 3, "latentsync")
    assert got.shape == (1, 1, 3, 64, 64) and torch.equal(got[0, :, 0], release[0])
    maxpool = latent_mask(m, (64, 64), 3)
    assert maxpool.sum() > got.sum()  # max-pooling grows the region, the release's does not


def test_three_point_alignment_equals_warp_then_resize():
    """One affine (ours) == the release's canvas warp followed by the resize to S x S."""
    s = 256
    template, stretch = latentsync_canvas(s)
    angle, scale, shift = 0.2, 1.7, np.array([40.0, 25.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    face = (template - template.mean(0)) @ np.linalg.inv(rot).T + template.mean(0) + shift
    points68 = np.zeros((1, 68, 2))
    points68[0, 17:22] = face[0]
    points68[0, 22:27] = face[1]
    points68[0, [30, 31, 33, 35]] = face[2]
    assert np.allclose(alignment_points(points68, "latentsync3")[0], face)
    raw, _ = transforms_from_landmarks(points68, np.array([True]), s, 0.0, "latentsync3")
    mapped = face @ raw[0, :, :2].T + raw[0, :, 2]
    assert np.allclose(mapped, template @ stretch.T, atol=1e-6)  # exact for a similar triangle
    sim = np.linalg.inv(stretch) @ raw[0]
    assert np.allclose(sim, fit_similarity(face, template), atol=1e-6)
    rng = np.random.default_rng(0)
    frame = cv2.GaussianBlur(rng.uniform(0, 255, (400, 400, 3)).astype(np.float32), (0, 0), 6)
    w, h = (int(d * 2.8 / 256 * s) for d in (75, 100))
    canvas = cv2.warpAffine(frame, sim, (w, h), flags=cv2.INTER_LINEAR)
    release = cv2.resize(canvas, (s, s), interpolation=cv2.INTER_LINEAR)
    ours = cv2.warpAffine(frame, raw[0], (s, s), flags=cv2.INTER_LINEAR)
    inner = (slice(8, -8), slice(8, -8))
    assert np.abs(ours[inner] - release[inner]).mean() < 0.5  # same geometry, one resampling


def test_five_points_refused_for_latentsync3():
    from lipforcing.errors import UserError
    from lipforcing.media.faces import track_from_landmarks

    cfg = dataclasses.replace(get_preset("wan-1.3b").media, crop_size=128)
    with pytest.raises(UserError, match="latentsync3 alignment needs 3"):
        track_from_landmarks(np.zeros((2, 5, 2)), np.ones(2, bool), cfg, (200, 200))


def test_whole_clip_wav2vec2_features(tmp_path):
    """The release's offline features: the clip padded to whole frames, encoded once, cut."""
    transformers = pytest.importorskip("transformers")
    from lipforcing.config import AudioConfig
    from lipforcing.media.audio import Wav2Vec2Features, whole_clip_features

    cfg_t = transformers.Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16, 16), conv_kernel=(10, 3), conv_stride=(5, 2), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.Wav2Vec2Model(cfg_t).save_pretrained(tmp_path / "w2v")
    w2v = Wav2Vec2Features(tmp_path / "w2v")
    cfg = AudioConfig(wav2vec2_dim=32, wav2vec2_states=4, offline_features="whole")
    wav = np.random.default_rng(0).standard_normal(640 * 30 + 123).astype(np.float32) * 0.1
    got = whole_clip_features(wav, cfg, 20, wav2vec2=w2v)
    extractor = transformers.Wav2Vec2FeatureExtractor(do_normalize=True)  # the release's
    values = extractor(wav, sampling_rate=16000).input_values[0]  # normalised, then padded
    padded = np.concatenate([values, np.zeros(640 - 123, np.float32)])
    assert got.shape == (20, 128)
    assert np.allclose(got, w2v(padded, 31, normalize=False)[:20], atol=1e-4)
    windowed = w2v(wav[: 640 * 20], 20)  # the clip cut where the frames end: other context
    assert not np.allclose(got, windowed, atol=1e-4)
