"""The silence gate with the shipped tiny checkpoint: no mouthing in pauses filled with room
rumble, measured with the landmark lip opening (no trained network), speech left alone.

Measured with scripts/silence_gate.py (8 s, two pauses; docs/eval/silence-gate/): on SynthTalk
speech with -35 dBFS rumble in the pauses the pause opening is 0.140 without the gate (as open
as during speech, 0.138) and 0.072 with it (the face's closed mouth reads about 0.07-0.09).
"""

from __future__ import annotations

import numpy as np
import pytest

from lipforcing.evaluation.lip_envelope import inner_lip_opening, lip_envelope_sync, lip_landmarks
from lipforcing.media.synthtalk.clip import render_clip
from lipforcing.media.vad import SilenceGateConfig
from lipforcing.streaming.builtin import builtin_sample
from lipforcing.streaming.offline import lipsync_offline
from lipforcing.streaming.pipeline import Pipeline, shipped_checkpoint

SR, FPS = 16_000, 25
PAUSE = (1.0, 3.0)  # seconds of the 4 s clip filled with rumble


def rumble(n: int, db: float, rng) -> np.ndarray:
    walk = np.cumsum(rng.standard_normal(n))
    walk -= np.convolve(walk, np.ones(400) / 400, "same")
    return (10 ** (db / 20) * walk / walk.std()).astype(np.float32)


@pytest.fixture(scope="module")
def shipped():
    pipe = Pipeline.load(shipped_checkpoint())
    source = builtin_sample(pipe.preset, seconds=4.0).source
    audio = render_clip(920_003, 4.0).audio.copy()
    a, b = int(PAUSE[0] * SR), int(PAUSE[1] * SR)
    audio[a:b] = rumble(b - a, -35.0, np.random.default_rng(0))
    return pipe, source, audio


def measure(pipe, source, audio, gate):
    frames = lipsync_offline(pipe, source, audio, silence_gate=gate).frames
    points = lip_landmarks(frames)
    opening = inner_lip_opening(points)
    pause = np.arange(int(PAUSE[0] * FPS) + 5, int(PAUSE[1] * FPS) - 5)
    speech = np.r_[3:20, 80:97]
    r = lip_envelope_sync(None, audio, SR, FPS, points68=points).correlation
    return np.nanmean(opening[pause]), np.nanmean(opening[speech]), r


def test_no_mouthing_on_rumble_in_pauses(shipped):
    pipe, source, audio = shipped
    pause_off, speech_off, r_off = measure(pipe, source, audio, SilenceGateConfig(enabled=False))
    pause_on, speech_on, r_on = measure(pipe, source, audio, SilenceGateConfig())
    assert pause_off > pause_on + 0.03  # the mouth moved on rumble, the gate stops it
    assert pause_on < 0.095  # about the face's closed mouth
    assert speech_on > 0.85 * speech_off  # speech still opens the mouth
    assert r_on > r_off
