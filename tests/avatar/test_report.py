"""avatar.report: frame-weighted summaries, the issue's targets with their margins, and the
time plan's arithmetic."""

from __future__ import annotations

import pytest

from lipforcing.avatar.config import avatar_config
from lipforcing.avatar.estimate import plan
from lipforcing.avatar.report import markdown, summarise, targets


def clip(frames, other_frames, psnr, sync_c, offset=0, lip=0.4):
    img = {"mouth_psnr": psnr, "mouth_ssim": 0.9, "mouth_lpips": 0.1}
    return {
        "frames": frames,
        "other_frames": other_frames,
        "real": {"sync_c": 2 * sync_c, "sync_d": 1.0, "offset": 0, "lip_r": 2 * lip, "lip_lag": 0},
        "codec": {**img, "mouth_psnr": psnr + 2},
        "own": {
            **img,
            "sync_c": sync_c,
            "sync_d": 1.2,
            "offset": offset,
            "lip_r": lip,
            "lip_lag": 1,
            "engine_fps": 40.0,
        },
        "other": {
            **img,
            "sync_c": sync_c,
            "sync_d": 1.2,
            "offset": 0,
            "lip_r": lip,
            "lip_lag": 0,
            "engine_fps": 40.0,
        },
        "source_other": {
            "sync_c": sync_c / 4,
            "sync_d": 1.5,
            "offset": 3,
            "lip_r": 0.0,
            "lip_lag": -2,
        },
    }


def test_summary_weights_clips_by_frames():
    s = summarise([clip(100, 50, 30.0, 0.2), clip(300, 150, 26.0, 0.4, offset=2)])
    assert s["own"]["mouth_psnr"] == pytest.approx((100 * 30 + 300 * 26) / 400)
    assert s["other"]["sync_c"] == pytest.approx((50 * 0.2 + 150 * 0.4) / 200)
    assert s["own"]["offset"] == [0, 2]
    assert s["codec"]["mouth_psnr"] == pytest.approx((100 * 32 + 300 * 28) / 400)


def test_summary_without_an_other_utterance():
    """The seen-footage diagnostic scores no other utterance: no ``other_frames`` needed."""
    clips = []
    for frames, psnr in ((100, 30.0), (300, 26.0)):
        c = clip(frames, 0, psnr, 0.3)
        for key in ("other_frames", "other", "source_other"):
            del c[key]
        clips.append(c)
    s = summarise(clips)
    assert set(s) == {"real", "codec", "own"}
    assert s["codec"]["mouth_psnr"] == pytest.approx((100 * 32 + 300 * 28) / 400)


def test_targets_report_value_threshold_and_margin():
    t = targets(summarise([clip(100, 100, 28.0, 0.3, offset=2, lip=0.2)]))
    assert t["mouth_psnr_gap_db"] == {"value": 2.0, "target": 3.0, "met": True, "margin": 1.0}
    assert t["sync_c_share_of_real"]["value"] == pytest.approx(0.5)
    assert not t["sync_c_share_of_real"]["met"]
    assert t["sync_c_share_of_real"]["margin"] == pytest.approx(-0.1)
    assert not t["best_offset_frames"]["met"] and t["best_offset_frames"]["value"] == 2
    assert t["lip_r_share_of_real"]["met"] and t["other_sync_c_over_source"]["value"] == 4.0
    assert t["engine_fps"]["met"]
    text = markdown({"summary": summarise([clip(10, 10, 28.0, 0.3)]), "targets": t})
    assert "| sync_c_share_of_real | 0.500 | 0.6 | NO | -0.100 |" in text


def test_plan_is_steps_times_measured_step_time():
    cfg = avatar_config()
    rates = dict.fromkeys(
        ("codec", "syncnet", "teacher", "stage1", "critic", "student", "encode", "forward"), 0.5
    )
    stages = {s.name: s for s in plan(cfg, rates, train_windows=100, heldout_frames=210)}
    assert stages["codec"].seconds == cfg.codec.steps * 0.5
    assert stages["teacher"].seconds == cfg.recipe.teacher.optim.steps * 0.5
    s2 = cfg.recipe.stage2
    assert stages["stage2"].seconds == s2.optim.steps * (s2.critic_steps + 1) * 0.5
    assert stages["latents"].seconds == (100 + 10) * 4 * 0.5  # 10 held-out windows of 21
