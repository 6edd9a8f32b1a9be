"""The one chunk runtime: audio in, full frames out, one causal chunk at a time, many streams.

:class:`ChunkEngine` is what ``sync``, ``serve``, ``demo``, the integrations, ``bench`` and
``stream-smoke`` run; no other per-chunk loop exists outside training rollouts, which share the
causal core (:mod:`lipforcing.diffusion.causal`). It is built on a loaded
:class:`~lipforcing.streaming.pipeline.Pipeline` whose execution options
(:class:`~lipforcing.streaming.options.ExecutionOptions`) were chosen when it loaded. It is
deterministic and knows nothing of clocks or threads: it is handed exactly the audio each chunk
plays (plus whatever audio follows it, for the features' right context) and returns the
chunk's frames. :mod:`lipforcing.streaming.session` decides what audio goes into which chunk
and when.

Per-stream state lives in an :class:`EngineStream` (``engine.open(source, seed=, context=)``):
the source, the KV cache, the codec's stream encoder/decoder states, the noise generator, the
played-audio tail and the cross-attention context. :meth:`ChunkEngine.step_many` steps the
chunks of several streams together: the DiT runs once per group of streams whose caches are in
the same state (a :class:`~lipforcing.models.kv_cache.CacheBatch` over their own caches, each
row's noise from its own generator); everything else runs per stream. The model is
batch-invariant, so a stream's frames are the same alone and batched (tested bitwise). With
the ``stream_threads`` option N > 1 (CPU), a step's streams are dealt into N parts stepped at
once on the engine's N threads, torch at one intra-op thread (:mod:`.options`).

Per chunk (spec sections 2 and 6):
1. Source frames for the chunk's output indices (ping-pong over the source) and their aligned
   crops; the mouth-masked crops and the reference-sequence crops go through the codec's stream
   encoders (causal, so chunk-by-chunk encoding equals whole-clip encoding).
2. Audio features of the chunk's frames, computed on a window of the played-audio timeline
   with ``audio_margin`` frames of context on each side, so that they do not depend on how the
   audio was cut into pushes. The stream's silence gate (:mod:`lipforcing.media.vad`) blends
   the features of silent frames towards those of digital silence, so the mouth rests in
   pauses; it reads levels within the same margin, so it is chunking-invariant too.
3. Conditions (:meth:`ChunkEngine._cond`, the one place they are assembled) and the causal
   core's denoising calls reading the KV cache.
4. The codec's stream decoder; the generated crops are pasted back into the full frames with
   the source's per-frame ``paste_weights``: frames without a usable face come out as the
   source frame, bit for bit, and the patch fades in and out at their edges.
5. The t = 0 KV write. With ``kv_after_decode`` it is left pending and runs at
   :meth:`ChunkEngine.flush` or before the stream's next chunk, so the frames are out first.

Chunk layout: the first chunk covers ``1 + stride * (chunk - 1)`` video frames (9 at Wan's
stride 4 and 3-latent chunks), later chunks ``stride * chunk`` (12). Choices (ours): the
reference frame is the first source crop; the reference sequence is the source crops half a
ping-pong period away from the frames being generated, so the mouth being replaced never
leaks into it.

A ``tracer`` (anything with a ``stage(name)`` context manager, e.g. the benchmark's
``Stages``) sees every stage: ``features``, ``encode``, ``denoise_k``, ``kv_write``,
``decode``, ``paste``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from lipforcing.diffusion.causal import denoise_chunk, write_chunk
from lipforcing.diffusion.samplers import cpu_noise
from lipforcing.diffusion.schedules import ShiftedGrid
from lipforcing.errors import UserError
from lipforcing.media.vad import SilenceGateConfig
from lipforcing.models.conditioning import LipSyncCond
from lipforcing.models.kv_cache import CacheBatch, KVCache
from lipforcing.streaming import accel
from lipforcing.streaming.pipeline import Pipeline
from lipforcing.streaming.source import Source


@dataclass(frozen=True)
class Chunk:
    """One generated chunk.

    Attributes:
        start: output index of its first frame.
        frames: full output frames, (t, H, W, 3) uint8.
        crops: generated aligned crops, (t, S, S, 3) uint8.
        audio: the audio played with these frames, (t * samples_per_frame,) float32.
        speech: per frame, whether any of its audio came from the user (False = idle/padding).
        source_index: source frame shown under each output frame, (t,).
        compute_s: wall time of the step that generated it (all its streams), seconds.
    """

    start: int
    frames: np.ndarray
    crops: np.ndarray
    audio: np.ndarray
    speech: np.ndarray
    source_index: np.ndarray
    compute_s: float

    def __len__(self) -> int:
        return len(self.frames)


def samples_per_frame(sample_rate: int, fps: float) -> int:
    spf = sample_rate / fps
    if abs(spf - round(spf)) > 1e-9:
        raise ValueError(f"{sample_rate} Hz does not divide into {fps} fps frames")
    return round(spf)


class Tracer(Protocol):
    def stage(self, name: str) -> contextlib.AbstractContextManager: ...


class _NoTrace:
    def stage(self, name: str) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()


@dataclass(frozen=True)
class ChunkLayout:
    """Video frames per chunk and audio samples per frame."""

    first_frames: int  # video frames of a stream's first chunk (9)
    chunk_frames: int  # video frames of every later chunk (12)
    spf: int  # audio samples per video frame


@dataclass
class EngineStream:
    """One stream's state in a :class:`ChunkEngine` (made by :meth:`ChunkEngine.open`).

    A caller with more per-stream state (a text context, per-frame face flags) keeps it here:
    ``context`` reaches the conditions in :meth:`ChunkEngine._cond`, ``source`` the paste.
    """

    source: Source
    layout: ChunkLayout
    audio_margin: int  # frames of audio context read on each side of a chunk
    cache: KVCache
    encoders: tuple  # codec stream encoders: one (paired, batch 2) or two
    decoder: object  # codec stream decoder
    generator: torch.Generator  # initial and re-noising noise
    ref_frame: Tensor | None = None  # (1, C, 1, h, w) reference latent (first step encodes it)
    context: Tensor | None = None  # (1, L, text_dim) cross-attention context, or None
    silence_gate: SilenceGateConfig = dataclasses.field(default_factory=SilenceGateConfig)
    # every block's cross-attention (k, v) of ``context``, computed once by the first step
    context_kv: tuple | None = None
    # (T, A) per-frame audio features of the whole clip from the stream's start (offline
    # "whole" features, see media.audio.whole_clip_features); None: computed per chunk
    features: np.ndarray | None = None
    history: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.float32))
    frames_done: int = 0  # video frames generated so far
    pending: tuple[Tensor, LipSyncCond] | None = None  # (x0, cond) awaiting the KV write

    def next_size(self) -> int:
        """Video frames of the next chunk."""
        return self.layout.first_frames if self.frames_done == 0 else self.layout.chunk_frames

    def next_samples(self) -> int:
        return self.next_size() * self.layout.spf

    @property
    def lookahead_samples(self) -> int:
        """Audio after a chunk its features read (right context)."""
        return self.audio_margin * self.layout.spf


@dataclass(frozen=True)
class ChunkRequest:
    """One stream's next chunk: the audio it plays, the audio after it, which frames speak."""

    stream: EngineStream
    audio: np.ndarray  # exactly stream.next_samples() float32 samples
    lookahead: np.ndarray | None = None  # up to stream.lookahead_samples following samples
    speech: np.ndarray | None = None  # (t,) bool, frames carrying user audio (reported only)


@dataclass
class _Work:
    """A request on its way through a step."""

    request: ChunkRequest
    n: int  # video frames
    idx: np.ndarray  # source frame of each output frame
    features: Tensor  # (1, n, A) on the device
    latents: tuple[Tensor, Tensor]  # masked, reference sequence: (1, C, F, h, w)
    encoded: object  # the codec lane's event after the encode
    x0: Tensor | None = None
    cond: LipSyncCond | None = None
    denoised: object = None  # the DiT lane's event after the denoise

    @property
    def stream(self) -> EngineStream:
        return self.request.stream


class ChunkEngine:
    """Steps the chunks of one or more streams on one pipeline (see the module docstring)."""

    def __init__(self, pipeline: Pipeline, *, tracer: Tracer | None = None) -> None:
        from lipforcing.media.mask import mouth_mask

        p = pipeline.preset
        self.pipeline = pipeline
        self.fps = p.media.fps
        self.sample_rate = p.audio.sample_rate
        self.spf = samples_per_frame(self.sample_rate, self.fps)
        stride, chunk = p.codec.temporal_stride, p.causal.chunk_frames
        self.layout = ChunkLayout(p.codec.video_frames(chunk), stride * chunk, self.spf)
        self.grid = ShiftedGrid.from_config(p.schedule)
        self.steps = p.causal.student_steps
        self.mask = torch.as_tensor(mouth_mask(p.media), dtype=torch.float32).to(pipeline.device)
        self.tracer: Tracer = tracer if tracer is not None else _NoTrace()
        self._silent: dict[tuple[int, int], np.ndarray] = {}  # features of digital silence
        opts = pipeline.options
        self.lanes = accel.Lanes(pipeline.device if opts.two_streams else None)
        self.net = accel.CudaGraphRunner(pipeline.model) if opts.cuda_graphs else pipeline.model
        if tracer is not None:
            self.net = _TracedModel(self.net, self.tracer)
        self.warm = False  # warmup() ran on this engine
        self._pool: ThreadPoolExecutor | None = None  # stream_threads' threads, made on first use

    @property
    def options(self):
        return self.pipeline.options

    # ------------------------------------------------------------------ streams

    def open(
        self,
        source: Source,
        *,
        seed: int = 0,
        audio_margin: int | None = None,
        context: Tensor | None = None,
        silence_gate: SilenceGateConfig | None = None,
    ) -> EngineStream:
        """A new stream of ``source``: empty KV cache, fresh codec state, seeded noise.

        Opening only allocates: the reference frame is encoded by the stream's first step, so
        a stream can be opened while another thread steps other streams.

        ``silence_gate``: voice-activity gating of the audio features (default: on, with the
        defaults of :class:`~lipforcing.media.vad.SilenceGateConfig`).
        """
        p, dev, dtype = self.pipeline.preset, self.pipeline.device, self.pipeline.dtype
        if context is None and self.pipeline.context is not None:  # --context of the pipeline
            context = self.pipeline.context.context
        if p.model.use_text_context and context is None:
            raise UserError(f"the {p.name} student needs a text context (--context)")
        codec = self.pipeline.codec
        pairs = 1 if self.options.paired_encode else 2
        margin = audio_margin if audio_margin is not None else _default_margin(p)
        gate = silence_gate if silence_gate is not None else SilenceGateConfig()
        if gate.enabled and gate.reach > margin:
            raise UserError(
                f"the silence gate reads {gate.reach} frames on each side, more than the "
                f"{margin}-frame audio margin; shorten its hold or raise the margin"
            )
        return EngineStream(
            source=source,
            layout=self.layout,
            audio_margin=margin,
            cache=KVCache.allocate(p.model, 1, p.latent_hw, p.causal, device=dev, dtype=dtype),
            encoders=tuple(codec.stream_encoder() for _ in range(pairs)),
            decoder=codec.stream_decoder(),
            generator=torch.Generator().manual_seed(seed),
            context=None if context is None else context.to(dev, dtype),
            silence_gate=gate,
            history=np.zeros(margin * self.spf, np.float32),
        )

    def _context_kv(self, context: Tensor | None) -> tuple | None:
        """The context's cross-attention keys/values, once per stream by its first step (like
        the reference frame: opening only allocates); identical outputs."""
        model = self.pipeline.model
        if context is None or not hasattr(model, "context_kv"):
            return None
        p = self.pipeline
        with torch.inference_mode():
            return model.context_kv(context.to(p.device, p.dtype))

    # ------------------------------------------------------------------ stepping

    def step(
        self,
        stream: EngineStream,
        audio: np.ndarray,
        lookahead: np.ndarray | None = None,
        speech: np.ndarray | None = None,
    ) -> Chunk:
        """Generate ``stream``'s next chunk (see :class:`ChunkRequest` for the arguments)."""
        return self.step_many([ChunkRequest(stream, audio, lookahead, speech)])[0]

    def step_many(self, requests: Sequence[ChunkRequest]) -> list[Chunk]:
        """Generate the next chunk of several streams (each at most once), in one step."""
        t0 = time.perf_counter()
        if len({id(r.stream) for r in requests}) != len(requests):
            raise ValueError("a stream can take only one chunk per step")
        for r in requests:
            _check_audio(r)
        finished = self._in_parts(self._step_part, list(requests))
        compute_s = time.perf_counter() - t0
        return [dataclasses.replace(c, compute_s=compute_s) for c in finished]

    def flush(self, streams: Sequence[EngineStream]) -> None:
        """Run the pending KV writes of ``streams`` (a no-op for streams with none)."""
        self._in_parts(self._flush_part, list(streams))

    def _step_part(self, requests: list[ChunkRequest]) -> list[Chunk]:
        """One step of some streams: their DiT calls batched per cache state."""
        with torch.inference_mode(), accel.sdpa_backend(self.options.sdpa):
            self.lanes.start()
            self._flush([r.stream for r in requests])
            work = [self._prepare(r) for r in requests]
            for group in _groups(work):
                self._denoise(group)
                if not self.options.kv_after_decode:
                    self._write(group)
            finished = [self._finish(w) for w in work]
            self.lanes.join()
        return finished

    def _flush_part(self, streams: list[EngineStream]) -> list[None]:
        with torch.inference_mode(), accel.sdpa_backend(self.options.sdpa):
            self.lanes.start()
            self._flush(streams)
            self.lanes.join()
        return [None] * len(streams)

    def _in_parts(self, fn, items: list) -> list:
        """``fn(items)``, one result per item. With ``stream_threads`` N > 1 the items are
        dealt into N parts that run at once on the engine's threads (the streams of a part
        are independent of the other parts': each stream has its own state)."""
        k = min(self.options.stream_threads, len(items))
        if k <= 1:
            return fn(items)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.options.stream_threads, "lipsync-part")
        futures = [self._pool.submit(fn, items[i::k]) for i in range(k)]
        wait(futures)  # every part ends before an error is raised
        out: list = [None] * len(items)
        for i, future in enumerate(futures):
            out[i::k] = future.result()
        return out

    def warmup(self, source: Source, *, chunks: int | None = None) -> float:
        """Run silent chunks on a throw-away stream so one-off costs (first kernel launches,
        compilation, CUDA-graph capture) do not land in a live stream. A ``compile`` that fails
        here is taken back (``pipeline.notes`` says so). Once per engine, and not at all when
        another engine warmed the pipeline and nothing engine-local (CUDA graphs) is left;
        ``chunks`` forces a run of that many. Returns the wall time, seconds (0: nothing ran)."""
        engine_local = self.options.cuda_graphs
        if chunks is None and (self.warm or (self.pipeline.warm and not engine_local)):
            self.warm = True
            return 0.0
        t0 = time.perf_counter()
        try:
            self._silent_chunks(source, chunks)
        except Exception as e:  # noqa: BLE001 - any compile failure: eager instead
            if not self.options.compile:
                raise
            self.pipeline.compile_failed(e)
            self._silent_chunks(source, chunks)
        self.warm = self.pipeline.warm = True
        return time.perf_counter() - t0

    def _silent_chunks(self, source: Source, chunks: int | None) -> None:
        context = _warmup_context(self.pipeline)
        stream = self.open(source, context=context)
        # compiled / graphed shapes: empty cache, one chunk held, steady state, its write
        count = chunks or (4 if self.options.compile or self.options.cuda_graphs else 1)
        for _ in range(count):
            self.step(stream, np.zeros(stream.next_samples(), np.float32))
        self.flush([stream])

    # ------------------------------------------------------------------ stages

    def _prepare(self, r: ChunkRequest) -> _Work:
        s, n = r.stream, r.stream.next_size()
        idx = s.source.indices(s.frames_done, n)
        with self.tracer.stage("features"):
            features = self._features(s, np.asarray(r.audio, np.float32), r.lookahead, n)
        with self.lanes.on("codec"), self.tracer.stage("encode"):
            latents = self._encode(s, idx)
            encoded = self.lanes.signal("codec")
        return _Work(r, n, idx, features, latents, encoded)

    def _features(
        self, stream: EngineStream, audio: np.ndarray, lookahead: np.ndarray | None, n: int
    ) -> Tensor:
        """(1, n, A) features of the chunk's frames from its audio and the audio around it."""
        from lipforcing.media.audio import audio_features

        if stream.features is not None:  # the whole clip's features, computed up front
            part = np.zeros((n, stream.features.shape[1]), np.float32)
            have = stream.features[stream.frames_done : stream.frames_done + n]
            part[: len(have)] = have
            return torch.from_numpy(part)[None].to(self.pipeline.device, self.pipeline.dtype)
        m = stream.audio_margin
        right = np.zeros(m * self.spf, np.float32)
        if lookahead is not None and len(lookahead):
            k = min(len(lookahead), len(right))
            right[:k] = lookahead[:k]
        window = np.concatenate([stream.history, audio, right])
        cfg = self.pipeline.preset.audio
        feats = audio_features(window, cfg, n + 2 * m, wav2vec2=self.pipeline.wav2vec2)
        feats = np.asarray(feats, np.float32)
        if stream.silence_gate.enabled:
            feats = self._gate(stream.silence_gate, window, feats, m)
        feats = np.ascontiguousarray(feats[m : m + n])
        return torch.from_numpy(feats)[None].to(self.pipeline.device, self.pipeline.dtype)

    def _gate(
        self, gate: SilenceGateConfig, window: np.ndarray, feats: np.ndarray, m: int
    ) -> np.ndarray:
        """Features of the window's frames with silent frames blended towards silence."""
        from lipforcing.media.vad import frame_levels, gate_features, speech_gate

        levels = frame_levels(window, self.spf, self.sample_rate, gate.band)  # (n + 2m,)
        return gate_features(feats, speech_gate(levels, gate), self._silent_features(len(feats), m))

    def _silent_features(self, frames: int, m: int) -> np.ndarray:
        """(A,) features of a frame of digital silence (cached per window length)."""
        from lipforcing.media.audio import audio_features

        key = (frames, m)
        if key not in self._silent:
            zeros = np.zeros(frames * self.spf, np.float32)
            cfg, w2v = self.pipeline.preset.audio, self.pipeline.wav2vec2
            self._silent[key] = np.asarray(audio_features(zeros, cfg, frames, wav2vec2=w2v))[m]
        return self._silent[key].astype(np.float32)

    def _encode(self, s: EngineStream, idx: np.ndarray) -> tuple[Tensor, Tensor]:
        """Latents of the mouth-masked crops and of the reference-sequence crops."""
        from lipforcing.data.conditions import mask_pixels

        if s.ref_frame is None:  # the stream's first step
            s.ref_frame = self.pipeline.codec.encode(self._video(s.source.crops[:1]))
            s.ref_frame = s.ref_frame.to(self.pipeline.dtype)  # (1, C, 1, h, w)
        crops = self._video(s.source.crops[idx])  # (1, 3, n, S, S)
        if self.pipeline.preset.media.reference == "same_frames":  # the release's
            ref_idx = idx
        else:  # ours: half a ping-pong period away, so the replaced mouth cannot leak
            ref_idx = s.source.indices(s.frames_done + len(s.source) - 1, len(idx))
        masked, ref_seq = mask_pixels(crops, self.mask), self._video(s.source.crops[ref_idx])
        dtype = self.pipeline.dtype
        if len(s.encoders) == 1:  # paired: one batch-2 encode
            both = s.encoders[0].push(torch.cat([masked, ref_seq])).to(dtype)
            return both[:1], both[1:]
        return s.encoders[0].push(masked).to(dtype), s.encoders[1].push(ref_seq).to(dtype)

    def _cond(self, w: _Work) -> LipSyncCond:
        """The conditions of one stream's chunk: the one place they are assembled."""
        from lipforcing.data.conditions import assemble_cond

        s, p = w.stream, self.pipeline.preset
        cond = assemble_cond(
            masked=w.latents[0],
            ref_frame=s.ref_frame,
            ref_seq=w.latents[1],
            mask=self.mask,
            audio=w.features,
            pack=p.model.audio_pack_frames,
            context=s.context,
            audio_packed=s.frames_done > 0,
            mask_style=p.media.mask_style,
        )
        if s.context is not None and s.context_kv is None:  # the stream's first step
            s.context_kv = self._context_kv(s.context)
        return dataclasses.replace(cond, context_kv=s.context_kv)

    def _denoise(self, group: list[_Work]) -> None:
        """The denoising calls of a group of streams whose caches hold the same frames."""
        if isinstance(self.net, _TracedModel):
            self.net.calls = 0
        with self.lanes.on("dit"):
            for w in group:
                self.lanes.wait("dit", w.encoded)
                self.lanes.hand_over([*w.latents, w.stream.ref_frame], "dit")
                w.cond = self._cond(w)
            cond = _concat([w.cond for w in group])
            generators = [w.stream.generator for w in group]
            like = cond.masked
            noise = cpu_noise(like.shape, generators, like)
            cache = _cache_of([w.stream for w in group])
            x0 = denoise_chunk(self.net, cache, noise, cond, self.steps, self.grid, generators)
            done = self.lanes.signal("dit")
        for w, row in zip(group, x0.split(1)):
            w.x0, w.denoised = row, done
            if self.options.kv_after_decode:
                w.stream.pending = (row, w.cond)

    def _write(self, group: list[_Work]) -> None:
        self._write_rows([w.stream for w in group], [(w.x0, w.cond) for w in group])

    def _flush(self, streams: Sequence[EngineStream]) -> None:
        waiting = [s for s in streams if s.pending is not None]
        by_frames: dict[int, list[EngineStream]] = {}
        for s in waiting:
            by_frames.setdefault(s.cache.frames, []).append(s)
        for group in by_frames.values():
            self._write_rows(group, [s.pending for s in group])
            for s in group:
                s.pending = None

    def _write_rows(self, streams: list[EngineStream], rows: list[tuple[Tensor, LipSyncCond]]):
        """The t = 0 KV write of several streams' chunks in one call."""
        with self.lanes.on("dit"):
            x0 = torch.cat([x for x, _ in rows])
            cond = _concat([c for _, c in rows])
            kv_only = self.options.kv_shortcut
            write_chunk(self.net, _cache_of(streams), x0, cond, kv_only=kv_only)

    def _finish(self, w: _Work) -> Chunk:
        """Decode, paste back and advance the stream."""
        s, r = w.stream, w.request
        with self.lanes.on("codec"):
            self.lanes.wait("codec", w.denoised)
            self.lanes.hand_over([w.x0], "codec")
            with self.tracer.stage("decode"):
                video = s.decoder.push(w.x0)  # (1, 3, n, S, S)
            crops = _to_uint8(video[0])  # (n, S, S, 3), waits for the codec lane only
        with self.tracer.stage("paste"):
            frames = self._paste(s.source, w.idx, crops)
        audio = np.asarray(r.audio, np.float32)
        if len(s.history):
            s.history = np.concatenate([s.history, audio])[len(audio) :]
        chunk = Chunk(
            start=s.frames_done,
            frames=frames,
            crops=crops,
            audio=audio,
            speech=np.ones(w.n, bool) if r.speech is None else np.asarray(r.speech, bool),
            source_index=w.idx,
            compute_s=0.0,
        )
        s.frames_done += w.n
        return chunk

    def _paste(self, source: Source, idx: np.ndarray, crops: np.ndarray) -> np.ndarray:
        """Crops into full frames at the source's paste strength (0: the source frame)."""
        from lipforcing.media.composite import paste_back

        media = self.pipeline.preset.media
        out = [
            paste_back(
                source.frames[i], crop, source.transforms[i], media, float(source.paste_weights[i])
            )
            for i, crop in zip(idx, crops)
        ]
        return np.stack(out)

    def _video(self, crops: np.ndarray) -> Tensor:
        """(t, S, S, 3) uint8 -> (1, 3, t, S, S) float in [-1, 1] on the pipeline's device."""
        x = torch.from_numpy(np.ascontiguousarray(crops)).to(self.pipeline.device)
        return (x.permute(3, 0, 1, 2)[None].float() / 127.5 - 1.0).contiguous()


class _TracedModel:
    """The student as the engine calls it, each call a traced stage (``denoise_k``,
    ``kv_write``); ``k`` counts the calls since the last write."""

    def __init__(self, net, tracer: Tracer) -> None:
        self.net, self.tracer = net, tracer
        self._local = threading.local()  # the count is per thread (stream_threads' parts)

    @property
    def calls(self) -> int:
        return getattr(self._local, "calls", 0)

    @calls.setter
    def calls(self, value: int) -> None:
        self._local.calls = value

    def __call__(self, x_t, t, cond, kv_cache=None, *, update_cache: bool = False):
        name = "kv_write" if update_cache else f"denoise_{self.calls}"
        self.calls = 0 if update_cache else self.calls + 1
        with self.tracer.stage(name):
            return self.net(x_t, t, cond, kv_cache, update_cache=update_cache)

    def write_kv(self, x, t, cond, kv_cache) -> None:
        self.calls = 0
        with self.tracer.stage("kv_write"):
            self.net.write_kv(x, t, cond, kv_cache)


def warmup(pipeline: Pipeline, source: Source) -> float:
    """:meth:`ChunkEngine.warmup` on a fresh engine of ``pipeline``; wall time, seconds."""
    return ChunkEngine(pipeline).warmup(source)


def _check_audio(r: ChunkRequest) -> None:
    need = r.stream.next_samples()
    if np.shape(r.audio) != (need,):
        raise ValueError(f"chunk needs {need} samples, got {np.shape(r.audio)}")


def _groups(work: list[_Work]) -> list[list[_Work]]:
    """Requests whose caches hold the same number of frames: one DiT batch each."""
    by_frames: dict[int, list[_Work]] = {}
    for w in work:
        by_frames.setdefault(w.stream.cache.frames, []).append(w)
    return list(by_frames.values())


def _cache_of(streams: list[EngineStream]):
    return streams[0].cache if len(streams) == 1 else CacheBatch([s.cache for s in streams])


def _concat(conds: list[LipSyncCond]) -> LipSyncCond:
    """Stack conditions of batch 1 along the batch axis."""
    if len(conds) == 1:
        return conds[0]
    fields = {}
    for f in dataclasses.fields(LipSyncCond):
        parts = [getattr(c, f.name) for c in conds]
        if any(p is None for p in parts):
            fields[f.name] = None
        elif isinstance(parts[0], tuple):  # per-block (k, v) pairs
            fields[f.name] = tuple(
                (torch.cat([pp[i][0] for pp in parts]), torch.cat([pp[i][1] for pp in parts]))
                for i in range(len(parts[0]))
            )
        else:
            fields[f.name] = torch.cat(parts)
    return LipSyncCond(**fields)


def _warmup_context(pipeline: Pipeline) -> Tensor | None:
    m = pipeline.preset.model
    if not m.use_text_context:
        return None
    return torch.zeros(1, m.text_len, m.text_dim)


def _to_uint8(video: Tensor) -> np.ndarray:
    """(3, t, S, S) in [-1, 1] -> (t, S, S, 3) uint8."""
    x = ((video.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(1, 2, 3, 0).cpu().numpy()


def _default_margin(preset) -> int:
    """Frames of audio context on each side of a chunk for its features."""
    if preset.audio.kind == "mel":
        return preset.audio.context_frames + 2  # + STFT half-window, rounded up to frames
    return preset.audio.stream_margin  # wav2vec2 sees the whole window (1 s each side)
