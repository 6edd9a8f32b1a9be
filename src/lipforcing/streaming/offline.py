"""Offline lip sync through the streaming engine: one push, one segment, frames as fast as possible.

``lipforcing sync`` and ``lipforcing demo`` use :func:`lipsync_offline`; because it is the same
:class:`~lipforcing.streaming.session.StreamSession` a live stream runs, the offline result is
the reference a live stream is tested against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lipforcing.errors import MediaError
from lipforcing.streaming.pipeline import Pipeline
from lipforcing.streaming.session import StreamSession, StreamStats
from lipforcing.streaming.source import Source


@dataclass
class OfflineResult:
    """Frames of the lip-synced video and the audio they play.

    Attributes:
        frames: (N, H, W, 3) uint8 at ``fps``, N = ceil(audio seconds * fps).
        crops: (N, S, S, 3) uint8 generated aligned crops.
        audio: (N * samples_per_frame,) float32, the input audio padded to whole frames.
        source_index: (N,) the source frame under each output frame.
        fps: frame rate of ``frames``.
        stats: the session's statistics.
        wall_s: wall time of the whole run, seconds.
    """

    frames: np.ndarray
    crops: np.ndarray
    audio: np.ndarray
    source_index: np.ndarray
    fps: float
    stats: StreamStats
    wall_s: float


def lipsync_offline(
    pipeline: Pipeline,
    source: Source,
    audio: np.ndarray,
    *,
    seed: int = 0,
    progress: bool = False,
    silence_gate=None,
) -> OfflineResult:
    """Lip-sync ``source`` to ``audio`` (16 kHz float32 mono) with the streaming engine.

    ``silence_gate``: a :class:`~lipforcing.media.vad.SilenceGateConfig` (None: the default).
    """
    import time

    from tqdm import tqdm

    audio = np.asarray(audio, np.float32)
    if audio.ndim != 1 or len(audio) == 0:
        raise MediaError("the audio is empty")
    t0 = time.perf_counter()
    session = StreamSession(pipeline, source, seed=seed, realtime=False, silence_gate=silence_gate)
    spf = session.engine.spf
    n = math.ceil(len(audio) / spf)
    cfg = pipeline.preset.audio
    if cfg.kind == "wav2vec2" and cfg.offline_features == "whole":  # the release's features
        from lipforcing.media.audio import whole_clip_features

        feats = whole_clip_features(audio, cfg, n, wav2vec2=pipeline.wav2vec2)
        session.stream.features = _gate_whole(session, audio, feats)
    session.push_audio(audio, session.sample_rate)
    session.close()
    frames, crops, played, index = [], [], [], []
    with tqdm(total=n, unit="frame", disable=not progress, desc="lip sync") as bar:
        for frame in session.frames():
            if len(frames) < n:
                frames.append(frame.image)
                crops.append(frame.crop)
                played.append(frame.audio)
                index.append(frame.source_index)
                bar.update(1)
    session.stop()
    return OfflineResult(
        frames=np.stack(frames),
        crops=np.stack(crops),
        audio=np.concatenate(played),
        source_index=np.asarray(index),
        fps=session.fps,
        stats=session.stats,
        wall_s=time.perf_counter() - t0,
    )


def _gate_whole(session: StreamSession, audio: np.ndarray, feats: np.ndarray) -> np.ndarray:
    """The stream's silence gate on whole-clip features: silent frames blend towards the
    features of a whole clip of digital silence (the windowed path's rule, over the clip)."""
    from lipforcing.media.audio import whole_clip_features
    from lipforcing.media.vad import frame_levels, gate_features, speech_gate

    gate, engine = session.stream.silence_gate, session.engine
    if not gate.enabled:
        return feats
    cfg, w2v = engine.pipeline.preset.audio, engine.pipeline.wav2vec2
    padded = np.zeros(len(feats) * engine.spf, np.float32)
    padded[: min(len(audio), len(padded))] = audio[: len(padded)]
    levels = frame_levels(padded, engine.spf, engine.sample_rate, gate.band)  # (T,)
    silent = whole_clip_features(np.zeros_like(audio), cfg, len(feats), wav2vec2=w2v)
    return gate_features(feats, speech_gate(levels, gate), silent)


def conform_fps(frames: np.ndarray, from_fps: float, to_fps: float) -> np.ndarray:
    """Resample a frame sequence in time by nearest frame (keeps the duration)."""
    if abs(from_fps - to_fps) < 1e-6:
        return frames
    count = max(1, round(len(frames) * to_fps / from_fps))
    idx = np.minimum(
        np.floor(np.arange(count) * from_fps / to_fps + 1e-6).astype(int), len(frames) - 1
    )
    return frames[idx]
