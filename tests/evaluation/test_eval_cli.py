"""`lipforcing eval` end to end on a real clip: identical file gives the ideal scores, growing
blur/noise/shift degrades every metric monotonically; frame-count mismatch is an error."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from lipforcing.cli.main import main
from lipforcing.media.io import read_video, write_video


def degrade(frames: np.ndarray, level: int, rng) -> np.ndarray:
    """Blur + noise + spatial shift, all growing with level (0 = identity)."""
    x = gaussian_filter(frames.astype(float), (0, level, level, 0))
    x = np.roll(x + rng.normal(0, 6 * level, x.shape), 2 * level, axis=2)
    return np.clip(x, 0, 255).astype(np.uint8)


@pytest.mark.slow  # ~4-8 min on 2 loaded cores: 4 CLI runs (face track, Inception, I3D, dlib)
@pytest.mark.timeout(1200)
def test_eval_identity_and_monotone_degradation(shared_data, tmp_path):
    clip = read_video(shared_data / "clips-256" / "Obama_clip1.mp4", 25.0, max_frames=45)
    levels = (0, 1, 2, 3)
    for d in ["gt"] + [f"l{k}" for k in levels]:
        (tmp_path / d).mkdir()
    write_video(tmp_path / "gt" / "a.mp4", clip.frames[:34], 25.0)  # 2 FVD clips of 16
    shutil.copy(tmp_path / "gt" / "a.mp4", tmp_path / "l0" / "a.mp4")  # identical file
    gt = read_video(tmp_path / "gt" / "a.mp4").frames
    rng = np.random.default_rng(0)
    for k in levels[1:]:
        write_video(tmp_path / f"l{k}" / "a.mp4", degrade(gt, k, rng), 25.0, crf=0)
    keys = ("fvd", "fid", "ssim", "lpips", "csim", "lmd", "psnr")
    table = []
    for k in levels:
        argv = ["eval", "--pred", str(tmp_path / f"l{k}"), "--gt", str(tmp_path / "gt")]
        assert main(argv + ["--out", str(tmp_path / f"out{k}"), "--csim-step", "2"]) == 0
        summary = json.loads((tmp_path / f"out{k}" / "metrics.json").read_text())["summary"]
        table.append([summary[m] for m in keys])
    t = np.array(table)  # (levels, metrics)
    fvd, fid, ssim, lpips, csim, lmd, psnr = t.T
    assert abs(fvd[0]) < 1e-2 and abs(fid[0]) < 1e-2 and ssim[0] == 1 and lpips[0] == 0
    assert csim[0] == pytest.approx(1, abs=1e-9) and lmd[0] == 0 and psnr[0] == 100
    for name, col, sign in zip(keys, t.T, (1, 1, -1, 1, -1, 1, -1)):
        assert (sign * np.diff(col) > 0).all(), (name, col)
    md = (tmp_path / "out3" / "metrics.md").read_text()
    assert md.startswith("| method | FVD | FID | SSIM | LPIPS | CSIM | Sync-C | Sync-D")
    assert "| a.mp4 | 34 |" in md and "dlib face-recognition" in md


def test_eval_frame_mismatch_is_an_error(shared_data, tmp_path, capsys):
    frames = np.zeros((6, 32, 32, 3), np.uint8)
    write_video(tmp_path / "a.mp4", frames, 25.0)
    write_video(tmp_path / "b.mp4", frames[:5], 25.0)
    argv = ["eval", "--pred", str(tmp_path / "a.mp4"), "--gt", str(tmp_path / "b.mp4")]
    assert main(argv + ["--out", str(tmp_path / "o")]) != 0
    assert "frames" in capsys.readouterr().err


pytestmark = pytest.mark.timeout(300)
