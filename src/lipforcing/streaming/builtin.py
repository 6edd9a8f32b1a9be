"""The built-in sample: a SynthTalk face and new SynthTalk speech that no training clip used.

The face comes from one SynthTalk seed and the speech from a different one, both far outside
the seed range of the training set, so the demo shows a face and an utterance the model never
saw together (or at all). SynthTalk gives exact 5-point landmarks, so no face detector runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lipforcing.config import PresetConfig
from lipforcing.streaming.source import Source

DEMO_IDENTITY_SEED = 910_001  # face of the built-in sample (training uses small seeds)
DEMO_SPEECH_SEED = 920_002  # speech of the built-in sample


@dataclass
class BuiltinSample:
    source: Source  # the face video (its own mouth speaks ``source_audio``)
    audio: np.ndarray  # the new speech, 16 kHz float32
    source_audio: np.ndarray  # the face video's own speech, 16 kHz float32
    identity_seed: int
    speech_seed: int


def builtin_sample(
    preset: PresetConfig,
    *,
    identity_seed: int = DEMO_IDENTITY_SEED,
    speech_seed: int = DEMO_SPEECH_SEED,
    seconds: float = 6.0,
    size: int = 256,
) -> BuiltinSample:
    """Render the sample's face clip and new speech with SynthTalk."""
    from lipforcing.media.synthtalk import render_clip

    fps, rate = preset.media.fps, preset.audio.sample_rate
    face = render_clip(identity_seed, seconds, size=size, fps=fps)
    speech = render_clip(speech_seed, seconds, size=size, fps=fps)
    source = Source.from_frames(
        np.asarray(face.frames),
        preset.media,
        # SynthTalk knows 5 points; the release's 3-point alignment tracks the face with dlib
        landmarks=np.asarray(face.landmarks5) if preset.media.align == "arcface5" else None,
        name=f"synthtalk-{identity_seed}",
    )
    return BuiltinSample(
        source=source,
        audio=_at_rate(speech.audio, speech.sample_rate, rate),
        source_audio=_at_rate(face.audio, face.sample_rate, rate),
        identity_seed=identity_seed,
        speech_seed=speech_seed,
    )


def _at_rate(audio: np.ndarray, rate: int, target: int) -> np.ndarray:
    audio = np.asarray(audio, np.float32)
    if rate == target:
        return audio
    import soxr

    return soxr.resample(audio, rate, target).astype(np.float32)
