"""Held-out metrics against analytic values."""

from __future__ import annotations

import math

import torch

from lipforcing.distill.evaluate import mouth_metrics


def test_mouth_metrics_only_see_the_mask():
    gt = torch.zeros(2, 3, 5, 8, 8)
    video = gt.clone()
    mask = torch.zeros(8, 8)
    mask[4:, 2:6] = 1
    video[..., :4, :] = 1.0  # error outside the mask is ignored
    video[..., 4:, 2:6] += 0.2  # 0.1 in [0, 1] units inside
    m = mouth_metrics(video, gt, mask)
    assert abs(m["mouth_l1"] - 0.1) < 1e-6
    assert abs(m["mouth_psnr"] - 10 * math.log10(1 / 0.01)) < 1e-4
