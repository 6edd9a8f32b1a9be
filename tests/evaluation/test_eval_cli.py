"""`lipforcing eval` end to end on a real clip against itself and a degraded copy."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from lipforcing.cli.main import main
from lipforcing.media.io import read_video, write_video


@pytest.mark.slow  # ~2 min on 2 loaded cores (2048-d FID sqrtm)
def test_eval_identity_vs_degraded(shared_data, tmp_path):
    clip = read_video(shared_data / "clips" / "hdtf_RD_Radio10_0_clip_0.mp4", 25.0, max_frames=12)
    frames = np.ascontiguousarray(clip.frames[:, ::4, ::4])  # 128x128
    for d in ("gt", "same", "blur"):
        (tmp_path / d).mkdir()
    write_video(tmp_path / "gt" / "a.mp4", frames, 25.0)
    gt = read_video(tmp_path / "gt" / "a.mp4").frames
    write_video(tmp_path / "same" / "a.mp4", gt, 25.0, crf=0)
    blurred = gaussian_filter(gt.astype(float), (0, 2, 2, 0)).astype(np.uint8)
    write_video(tmp_path / "blur" / "a.mp4", blurred, 25.0, crf=0)
    out = {}
    for d in ("same", "blur"):
        argv = ["eval", "--pred", str(tmp_path / d), "--gt", str(tmp_path / "gt")]
        assert main(argv + ["--out", str(tmp_path / f"out_{d}")]) == 0
        out[d] = json.loads((tmp_path / f"out_{d}" / "metrics.json").read_text())["summary"]
    assert out["same"]["ssim"] > 0.99 and out["same"]["lpips"] < 0.01
    assert out["blur"]["ssim"] < out["same"]["ssim"] and out["blur"]["lpips"] > 0.05
    assert out["blur"]["fid"] > out["same"]["fid"]
    assert (tmp_path / "out_blur" / "metrics.md").read_text().startswith("| method | FVD")


def test_eval_frame_mismatch_is_an_error(shared_data, tmp_path, capsys):
    frames = np.zeros((6, 32, 32, 3), np.uint8)
    write_video(tmp_path / "a.mp4", frames, 25.0)
    write_video(tmp_path / "b.mp4", frames[:5], 25.0)
    argv = ["eval", "--pred", str(tmp_path / "a.mp4"), "--gt", str(tmp_path / "b.mp4")]
    assert main(argv + ["--out", str(tmp_path / "o")]) != 0
    assert "frames" in capsys.readouterr().err


pytestmark = pytest.mark.timeout(300)
