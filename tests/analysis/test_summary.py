"""Statistics over clips and the recommendation rule, on rows with a planted answer."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from lipforcing.analysis.summary import Results, joint_scores, mean_se, recommend

S = 4.5
CLIPS = [f"c{i}" for i in range(5)]


def test_mean_and_standard_error_match_numpy_and_scipy():
    v = np.random.default_rng(0).standard_normal(7)
    mean, se = mean_se(v)
    assert mean == pytest.approx(np.mean(v))
    assert se == pytest.approx(np.std(v, ddof=1) / np.sqrt(len(v)))
    assert se == pytest.approx(stats.sem(v))
    assert np.isnan(mean_se([1.0])[1]) and mean_se([1.0])[0] == 1.0


def planted_rows(flat_sync_d: bool = False, no_gap: bool = False) -> list[dict]:
    """Factorial rows: the mixed (1, s) schedule peaks in sync at j_1 = 30 at near-(1, 1)
    fidelity; per-clip offsets are large (pairing must remove them), per-point noise small."""
    rng = np.random.default_rng(1)
    rows = []
    for c in CLIPS:
        off = rng.normal(0, 0.5)  # clip-level offset, much larger than the effects' noise
        for j in range(1, 50):
            bump = np.exp(-((j - 30) ** 2) / 20)
            sync = {
                (1.0, 1.0): 1.0,
                (1.0, S): 1.0 + 2.2 * bump,
                (S, 1.0): 1.5,
                (S, S): 1.0 if no_gap else 3.0,
            }
            lp = {(1.0, 1.0): 0.20, (1.0, S): 0.21, (S, 1.0): 0.25, (S, S): 0.30}
            for (s0, s1), sc in sync.items():
                drop = "none" if s0 == s1 == 1.0 else "all"
                vals = {
                    "lpips": lp[(s0, s1)] + 0.1 * off + rng.normal(0, 1e-3),
                    "ssim": 0.8 - lp[(s0, s1)] + 0.1 * off + rng.normal(0, 1e-3),
                    "sync_c": sc + off + rng.normal(0, 1e-2),
                    "sync_d": (9.0 if flat_sync_d else 10.0 - sc) + rng.normal(0, 1e-2),
                }
                for m, v in vals.items():
                    rows.append(
                        dict(
                            clip=c,
                            panel="factorial",
                            s0=s0,
                            s1=s1,
                            drop_mode=drop,
                            j=j,
                            t=0.5,
                            metric=m,
                            value=v,
                        )
                    )
            # one trajectory row so the CFG scale is known
            rows.append(
                dict(
                    clip=c,
                    panel="trajectory",
                    s0=S,
                    s1=S,
                    drop_mode="all",
                    j=j,
                    t=0.5,
                    metric="lpips",
                    value=0.3,
                )
            )
    return rows


def test_curves_are_per_step_means_and_standard_errors():
    rows = planted_rows()
    res = Results(rows)
    c = res.curve("factorial", 1.0, S, "all", "sync_c")
    at30 = [
        r["value"]
        for r in rows
        if r["j"] == 30 and r["s0"] == 1.0 and r["s1"] == S and r["metric"] == "sync_c"
    ]
    assert c.at(30) == pytest.approx((np.mean(at30), stats.sem(at30)))
    assert res.cfg_scale == S and res.drop_modes == ["all"] and res.clips == CLIPS


def test_recommendation_finds_the_planted_optimum_and_window():
    r = recommend(Results(planted_rows()), "all")
    assert r.optimum == (1.0, S, 30) and r.landing == 30
    lo, hi = r.plateau
    assert lo <= 30 <= hi and hi - lo < 20  # paired: clip offsets do not widen it
    assert (
        r.window is not None and r.window[0] < 30 < r.window[1] and r.window[1] - r.window[0] < 15
    )
    assert r.gap_closed[30] == pytest.approx(1.1, abs=0.05)  # 2.2 of a 2.0 gap
    assert r.flat == () and set(r.metrics) == {"lpips", "ssim", "sync_c", "sync_d"}


def test_a_metric_without_signal_is_left_out_of_the_score():
    sc = joint_scores(Results(planted_rows(flat_sync_d=True)), "all")
    assert sc.flat == ("sync_d",) and "sync_d" not in sc.metrics


def test_gap_closed_is_undefined_when_the_gap_is_noise():
    """(s, s) syncs no better than (1, 1): a ratio of two noisy differences means nothing."""
    r = recommend(Results(planted_rows(no_gap=True)), "all")
    assert np.isnan(r.gap_closed[30])
