"""Concurrent sessions on one device: per-session FPS and glass-to-glass latency.

For each session count N, N :class:`~lipforcing.streaming.session.StreamSession` s share one
:class:`~lipforcing.streaming.scheduler.Scheduler` (what ``serve --max-sessions N`` runs), each
with its own synthetic source, seed and audio. Two measurements per N:

- **throughput** (unpaced): every session gets ``seconds`` of audio at once and is drained as
  fast as frames come; per-session FPS = its frames / the wall time until its last frame.
  At or above the media frame rate, N live streams keep up.
- **live** (paced): a feeder pushes each session's audio in ``push_ms`` pieces at the rate it
  would arrive from a microphone, consumers take frames on the paced clock; per session:
  glass-to-glass latency p50 / p95 (a speech frame's emission minus the push of the last
  audio sample it plays), emitted FPS, late and dropped frames.

The chunk layout sets a floor under the live latency: a chunk starts only once its last
frame's audio and the features' right context have arrived (``latency_floor``,
``docs/latency.md``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from lipforcing.bench.student import RandomFeatures, bench_source
from lipforcing.bench.timing import summarize
from lipforcing.streaming.pipeline import Pipeline
from lipforcing.streaming.scheduler import Scheduler
from lipforcing.streaming.session import StreamSession

PUSH_MS = 40  # live audio arrives in pieces of this many milliseconds


@dataclass(frozen=True, kw_only=True)
class SessionsOptions:
    counts: tuple[int, ...] = (1, 2, 4, 8)  # concurrent sessions per measurement
    seconds: float = 8.0  # audio per session
    push_ms: int = PUSH_MS  # live push size
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.counts or min(self.counts) < 1:
            raise ValueError("session counts must be >= 1")
        if self.seconds <= 0 or self.push_ms < 1:
            raise ValueError("need seconds > 0 and push_ms >= 1")


def latency_floor(pipeline: Pipeline, audio_margin: int | None = None) -> dict:
    """The latency the chunk layout imposes on a live stream with exact features.

    A steady chunk of ``c`` frames needs the audio of its last frame and ``m`` frames of right
    context; with frames emitted on a fixed clock, every frame then waits ``(c + m - 1)`` frame
    durations after its own audio, plus the time to generate the chunk. A realtime session goes
    below it only by generating before the right context has arrived (it reads silence there
    when its lead of frames runs out), which changes the features (``docs/latency.md``).
    """
    from lipforcing.streaming.engine import ChunkEngine, _default_margin

    engine = ChunkEngine(pipeline)
    m = _default_margin(pipeline.preset) if audio_margin is None else audio_margin
    frame_s = 1.0 / engine.fps
    chunk = engine.layout.chunk_frames
    return {
        "chunk_frames": chunk,
        "right_context_frames": m,
        "frame_s": frame_s,
        "floor_s": (chunk + m - 1) * frame_s,
        "formula": "(chunk_frames + right_context_frames - 1) / fps, plus one chunk's compute",
    }


def _audio(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16_000)) / 16_000
    envelope = np.clip(np.sin(2 * np.pi * 3 * t + rng.uniform(0, 6)), 0, None)
    x = 0.2 * envelope * np.sin(2 * np.pi * 140 * t) + 0.01 * rng.standard_normal(len(t))
    return x.astype(np.float32)


def _context(pipeline: Pipeline, seed: int):
    """A random cross-attention context for presets that read one (stand-in for umT5's)."""
    import torch

    m = pipeline.preset.model
    if not m.use_text_context:
        return None
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, m.text_len, m.text_dim, generator=g)


def _sessions(pipeline: Pipeline, scheduler: Scheduler, n: int, opts, realtime: bool):
    p = pipeline.preset
    out = []
    for i in range(n):
        source = bench_source(p.media.crop_size, p.media.fps, opts.seed + i)
        session = StreamSession(
            pipeline,
            source,
            seed=opts.seed + i,
            realtime=realtime,
            scheduler=scheduler,
            context=_context(pipeline, opts.seed + i),
        )
        out.append((session, _audio(opts.seconds, opts.seed + i)))
    return out


def _drain(session: StreamSession, done: dict, key: int) -> None:
    count = 0
    for _ in session.frames():
        count += 1
    done[key] = (count, time.perf_counter())


def throughput(pipeline: Pipeline, n: int, opts: SessionsOptions) -> dict:
    """N unpaced sessions at once: per-session FPS (see the module docstring)."""
    scheduler = Scheduler(pipeline)
    try:
        pairs = _sessions(pipeline, scheduler, n, opts, realtime=False)
        done: dict[int, tuple[int, float]] = {}
        start = time.perf_counter()
        for session, audio in pairs:
            session.push_audio(audio)
            session.close()
        threads = [
            threading.Thread(target=_drain, args=(s, done, i)) for i, (s, _) in enumerate(pairs)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        fps = [count / (end - start) for count, end in done.values()]
        for s, _ in pairs:
            s.stop()
        sizes = scheduler.batch_sizes
        return {
            "fps_per_session": fps,
            "fps_per_session_min": min(fps),
            "fps_total": sum(c for c, _ in done.values())
            / (max(e for _, e in done.values()) - start),
            "mean_batch": float(np.mean(sizes)) if sizes else 0.0,
        }
    finally:
        scheduler.close()


def _feed(session: StreamSession, audio: np.ndarray, push: int, start: float, rate: int) -> None:
    for k, pos in enumerate(range(0, len(audio), push)):
        due = start + k * push / rate
        time.sleep(max(0.0, due - time.perf_counter()))
        session.push_audio(audio[pos : pos + push])
    session.close()


def live(pipeline: Pipeline, n: int, opts: SessionsOptions) -> dict:
    """N paced sessions fed at the audio's own rate: latency and emitted FPS per session."""
    scheduler = Scheduler(pipeline)
    try:
        pairs = _sessions(pipeline, scheduler, n, opts, realtime=True)
        rate = pipeline.preset.audio.sample_rate
        push = rate * opts.push_ms // 1000
        done: dict[int, tuple[int, float]] = {}
        start = time.perf_counter() + 0.05
        threads = []
        for i, (session, audio) in enumerate(pairs):
            threads.append(threading.Thread(target=_feed, args=(session, audio, push, start, rate)))
            threads.append(threading.Thread(target=_drain, args=(session, done, i)))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stats = [s.stats for s, _ in pairs]
        for s, _ in pairs:
            s.stop()
        p50 = [st.latency_p50_s for st in stats if st.latency_p50_s is not None]
        p95 = [st.latency_p95_s for st in stats if st.latency_p95_s is not None]
        return {
            "latency_p50_s": summarize(p50)["median"] if p50 else None,
            "latency_p95_s": max(p95) if p95 else None,
            "latency_p50_per_session": p50,
            "latency_p95_per_session": p95,
            "emitted_fps_per_session": [st.fps for st in stats],
            "ttff_s_per_session": [st.ttff_s for st in stats],
            "late_frames": sum(st.late_frames for st in stats),
            "dropped_frames": sum(st.dropped_frames for st in stats),
        }
    finally:
        scheduler.close()


def measure_sessions(pipeline: Pipeline, opts: SessionsOptions, *, progress: bool = False) -> dict:
    """Throughput and live figures for every session count of ``opts``, in one run, with the
    peak memory of each count's two measurements."""
    from lipforcing.bench.timing import MemoryMeter
    from lipforcing.streaming.engine import ChunkEngine

    p = pipeline.preset
    if p.audio.kind == "wav2vec2" and pipeline.wav2vec2 is None:
        pipeline.wav2vec2 = RandomFeatures(p.audio.feature_dim, opts.seed)
    source = bench_source(p.media.crop_size, p.media.fps, opts.seed)
    out = {
        "warmup_s": ChunkEngine(pipeline).warmup(source),
        "floor": latency_floor(pipeline),
        "seconds_per_session": opts.seconds,
        "push_ms": opts.push_ms,
        "counts": {},
    }
    meter = MemoryMeter(pipeline.device)
    for n in opts.counts:
        if progress:
            print(f"sessions: {n}", flush=True)
        meter.start()
        entry = {"throughput": throughput(pipeline, n, opts), "live": live(pipeline, n, opts)}
        entry["peak_memory_mb"] = meter.peak_mb()
        entry["memory_method"] = meter.method
        out["counts"][str(n)] = entry
    return out
