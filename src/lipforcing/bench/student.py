"""The student's timed stream: the product chunk runtime on a synthetic source.

What is timed is :class:`~lipforcing.streaming.engine.ChunkEngine` itself, the code ``sync``,
``serve``, ``demo`` and the integrations run, with the run's execution options applied by
:class:`~lipforcing.streaming.pipeline.Pipeline` exactly as they are for a user. The engine's
tracer (a :class:`~lipforcing.bench.timing.Stages`) records every stage; one run streams
``chunks`` chunks from a fresh stream (the reference-frame encode included) and ends after the
last chunk's KV write.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lipforcing.bench.harness import Setup, check_finite
from lipforcing.bench.timing import Stages
from lipforcing.streaming.engine import ChunkEngine
from lipforcing.streaming.pipeline import Pipeline
from lipforcing.streaming.source import Source

EXCLUDED = ("features", "paste")  # host stages outside the paper's protocol
SOURCE_FRAMES = 16  # frames of the synthetic source (it plays ping-pong)


class RandomFeatures:
    """Stand-in audio features of the right size for presets with wav2vec2 audio (the speed of
    the DiT does not depend on their values; the wav2vec2 forward itself is not timed)."""

    def __init__(self, dim: int, seed: int) -> None:
        self.dim, self.rng = dim, np.random.default_rng(seed)

    def __call__(self, wav: np.ndarray, num_frames: int) -> np.ndarray:
        return self.rng.standard_normal((num_frames, self.dim), dtype=np.float32)


def bench_source(crop_size: int, fps: float, seed: int) -> Source:
    """Random frames twice the crop's side, the face crop at their centre (no detector)."""
    rng = np.random.default_rng(seed)
    side, half = 2 * crop_size, crop_size // 2
    frames = rng.integers(0, 256, (SOURCE_FRAMES, side, side, 3), dtype=np.uint8)
    crops = np.ascontiguousarray(frames[:, half : half + crop_size, half : half + crop_size])
    transform = np.array([[1.0, 0.0, -half], [0.0, 1.0, -half]])  # frame -> crop
    transforms = np.repeat(transform[None], SOURCE_FRAMES, axis=0)
    return Source(frames, crops, transforms, fps, name="bench (random frames)")


@dataclass
class StudentBench:
    """The product engine of a bench run, built once per phase."""

    setup: Setup
    pipeline: Pipeline
    engine: ChunkEngine
    stages: Stages
    source: Source
    audio: np.ndarray  # random audio, longer than any run
    context: torch.Tensor | None
    features: str  # how audio features are made

    @classmethod
    def build(cls, s: Setup, max_chunks: int) -> StudentBench:
        p, opts = s.preset, s.opts
        pipe = Pipeline.build(
            s.model, s.codec, p, device=s.device, dtype=s.dtype, options=opts.execution
        )
        features = f"{p.audio.kind} features computed per chunk (timed as 'features')"
        if p.audio.kind == "wav2vec2":
            pipe.wav2vec2 = RandomFeatures(p.audio.feature_dim, opts.seed)
            features = "random stand-in features (no wav2vec2 weights; its forward is not timed)"
        stages = Stages(s.clock)
        engine = ChunkEngine(pipe, tracer=stages)
        g = torch.Generator().manual_seed(opts.seed)
        samples = (max_chunks + 2) * engine.layout.chunk_frames * engine.spf
        rng = np.random.default_rng(opts.seed)
        audio = (0.1 * rng.standard_normal(samples)).astype(np.float32)
        source = bench_source(p.media.crop_size, p.media.fps, opts.seed)
        return cls(s, pipe, engine, stages, source, audio, s.context(g), features)

    def sizes(self, chunks: int) -> list[int]:
        lay = self.engine.layout
        return [lay.first_frames if i == 0 else lay.chunk_frames for i in range(chunks)]

    def run(self, chunks: int) -> dict:
        """One stream of ``chunks`` chunks from a fresh stream state (see the module docstring)."""
        clock, engine = self.setup.clock, self.engine
        self.stages.intervals.clear()
        start = clock.stamp()
        stream = engine.open(self.source, seed=self.setup.opts.seed, context=self.context)
        pos, first = 0, None
        for i in range(chunks):
            need = stream.next_samples()
            look = self.audio[pos + need : pos + need + stream.lookahead_samples]
            engine.step(stream, self.audio[pos : pos + need], look)
            pos += need
            if i == 0:
                first = clock.stamp()
        engine.flush([stream])
        end = clock.stamp()
        clock.sync()
        check_finite(stream.cache.k, "student")
        return self._figures(chunks, start, first, end)

    def _figures(self, chunks: int, start, first, end) -> dict:
        """Engine figures, and the paper's protocol: excluded stages subtracted."""
        clock, intervals = self.setup.clock, self.stages.intervals
        first_decode = next(iv for iv in intervals if iv.name == "decode")
        before_first = intervals[: intervals.index(first_decode)]
        excluded = [iv for iv in intervals if iv.name in EXCLUDED]
        excluded_s = sum(clock.seconds(iv.start, iv.end) for iv in excluded)
        excluded_first = sum(
            clock.seconds(iv.start, iv.end) for iv in before_first if iv.name in EXCLUDED
        )
        total = clock.seconds(start, end)
        return {
            "frames": sum(self.sizes(chunks)),
            "total_s": total - excluded_s,
            "ttff_s": clock.seconds(start, first_decode.end) - excluded_first,
            "engine_total_s": total,
            "engine_ttff_s": clock.seconds(start, first),
            "stages": self.stages.per_call_ms(),
        }
