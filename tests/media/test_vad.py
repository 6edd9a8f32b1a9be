"""Silence gate: levels of known tones, the gate's ramps around a voiced stretch, the blend."""

from __future__ import annotations

import numpy as np
import pytest

from lipforcing.media.vad import SilenceGateConfig, frame_levels, gate_features, speech_gate

SR, SPF = 16_000, 640
CFG = SilenceGateConfig()


def tone(freq: float, amp: float, frames: int) -> np.ndarray:
    return amp * np.sin(2 * np.pi * freq * np.arange(frames * SPF) / SR)


@pytest.mark.parametrize(
    "freq, amp, db",
    [(1000, 1.0, 0.0), (1000, 0.01, -40.0), (500, 0.1, -20.0), (2500, 0.3, 20 * np.log10(0.3))],
)
def test_levels_of_in_band_tones(freq, amp, db):
    np.testing.assert_allclose(frame_levels(tone(freq, amp, 6), SPF, SR, CFG.band), db, atol=0.2)


def test_out_of_band_sound_reads_low():
    for freq in (60, 100, 6000):  # hum, rumble, hiss
        assert frame_levels(tone(freq, 0.5, 4), SPF, SR, CFG.band).max() < -40
    assert len(frame_levels(np.zeros(SPF - 1), SPF, SR, CFG.band)) == 0


def test_gate_opens_ahead_of_speech_holds_after_and_ramps():
    levels = np.full(40, -80.0)
    levels[15:25] = -10.0  # a voiced stretch
    g = speech_gate(levels, CFG)
    lead, hang, k = CFG.lead_frames, CFG.hang_frames, CFG.smooth_frames
    assert (g[: 15 - lead - k] == 0).all() and (g[25 + hang + k :] == 0).all()
    assert (g[15 - lead + k : 25 + hang - k] == 1).all()
    ramp_in = g[15 - lead - k : 15 - lead + k + 1]
    assert np.all(np.diff(ramp_in) > 0) and 0 < ramp_in[0] < 1  # blended, not a hard cut
    half = speech_gate(np.full(10, (CFG.low_db + CFG.high_db) / 2), CFG)
    np.testing.assert_allclose(half, 0.5)


def test_gate_of_a_window_equals_the_gate_of_the_whole_signal():
    rng = np.random.default_rng(0)
    levels = rng.uniform(-70, -20, 60)
    whole = speech_gate(levels, CFG)
    r = CFG.reach
    part = speech_gate(levels[20 - r : 32 + r], CFG)[r:-r]
    np.testing.assert_allclose(part, whole[20:32])


def test_blend_keeps_speech_and_replaces_silence():
    rng = np.random.default_rng(1)
    feats = rng.standard_normal((5, 3)).astype(np.float32)
    silent = np.array([-2.0, -2.0, -2.0], np.float32)
    out = gate_features(feats, np.array([1, 0, 0.5, 1, 0]), silent)
    assert np.array_equal(out[[0, 3]], feats[[0, 3]])  # exactly: speech is never touched
    assert np.array_equal(out[[1, 4]], np.stack([silent, silent]))
    np.testing.assert_allclose(out[2], (feats[2] + silent) / 2, rtol=1e-6)


def test_config_is_checked():
    with pytest.raises(ValueError):
        SilenceGateConfig(low_db=-30, high_db=-40)
    assert SilenceGateConfig(lead_frames=3, hang_frames=1, smooth_frames=2).reach == 5
