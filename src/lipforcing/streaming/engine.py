"""The per-chunk work of live lip sync: audio in, full frames out, one causal chunk at a time.

:class:`ChunkEngine` is deterministic and knows nothing of clocks or threads: it is handed
exactly the audio each chunk plays (plus whatever audio follows it, for the features' right
context) and returns the chunk's frames. :mod:`lipforcing.streaming.session` decides what audio
goes into which chunk and when; the offline ``lipforcing sync`` runs the same engine, so
streaming and offline results are the same computation.

Per chunk (spec sections 2 and 6):
1. Source frames for the chunk's output indices (ping-pong over the source), their aligned
   crops; the mouth-masked crops and the reference-sequence crops go through the codec's
   stream encoders (causal, so chunk-by-chunk encoding equals whole-clip encoding).
2. Audio features of the chunk's frames, computed on a window of the played-audio timeline
   with ``audio_margin`` frames of context on each side, so that they do not depend on how the
   audio was cut into pushes.
3. ``assemble_cond`` and the shared causal core ``generate_chunk`` (two denoising calls reading
   the KV cache, one call at t = 0 writing it).
4. The codec's stream decoder; the generated crops are pasted back into the full frames.

Chunk layout: the first chunk covers ``1 + stride * (chunk - 1)`` video frames (9 at Wan's
stride 4 and 3-latent chunks), later chunks ``stride * chunk`` (12). Choices (ours): the
reference frame is the first source crop; the reference sequence is the source crops half a
ping-pong period away from the frames being generated, so the mouth being replaced never
leaks into it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

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
        compute_s: wall time spent generating it, seconds.
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


class ChunkEngine:
    """Deterministic chunk-by-chunk generator for one stream (owns cache and codec state)."""

    def __init__(
        self, pipeline: Pipeline, source: Source, *, seed: int = 0, audio_margin: int | None = None
    ) -> None:
        from lipforcing.media.mask import mouth_mask

        p = pipeline.preset
        self.pipeline, self.source, self.seed = pipeline, source, seed
        self.fps = p.media.fps
        self.sample_rate = p.audio.sample_rate
        self.spf = samples_per_frame(self.sample_rate, self.fps)
        stride, chunk = p.codec.temporal_stride, p.causal.chunk_frames
        self.first_frames = p.codec.video_frames(chunk)  # 9
        self.chunk_frames = stride * chunk  # 12
        self.audio_margin = audio_margin if audio_margin is not None else _default_margin(p)
        self.mask = torch.as_tensor(mouth_mask(p.media), dtype=torch.float32)  # (S, S)
        self.reset()

    # ------------------------------------------------------------------ state

    def reset(self) -> None:
        """Start a new stream: empty KV cache, fresh codec state, re-seeded noise."""
        from lipforcing.models.kv_cache import KVCache

        p, dev = self.pipeline.preset, self.pipeline.device
        self.cache = KVCache.allocate(
            p.model, 1, p.latent_hw, p.causal, device=dev, dtype=self.pipeline.dtype
        )
        codec = self.pipeline.codec
        self.masked_encoder = codec.stream_encoder()
        self.ref_encoder = codec.stream_encoder()
        self.decoder = codec.stream_decoder()
        self.generator = torch.Generator().manual_seed(self.seed)
        self.history = np.zeros(self.audio_margin * self.spf, np.float32)  # played audio tail
        self.frames_done = 0
        self.ref_frame = self._encode_ref_frame()

    def next_size(self) -> int:
        """Video frames of the next chunk."""
        return self.first_frames if self.frames_done == 0 else self.chunk_frames

    def next_samples(self) -> int:
        return self.next_size() * self.spf

    @property
    def lookahead_samples(self) -> int:
        """Audio after a chunk its features read (right context)."""
        return self.audio_margin * self.spf

    # ------------------------------------------------------------------ one chunk

    @torch.inference_mode()
    def step(
        self,
        audio: np.ndarray,
        lookahead: np.ndarray | None = None,
        speech: np.ndarray | None = None,
    ) -> Chunk:
        """Generate the next chunk.

        Args:
            audio: exactly ``next_samples()`` float32 samples, played with this chunk.
            lookahead: up to ``lookahead_samples`` samples that will play after it (missing
                samples count as silence).
            speech: (t,) bool, which frames carry user audio (reported only).
        """
        import time

        t0 = time.perf_counter()
        n = self.next_size()
        audio = np.asarray(audio, np.float32)
        if audio.shape != (n * self.spf,):
            raise ValueError(f"chunk needs {n * self.spf} samples, got {audio.shape}")
        idx = self.source.indices(self.frames_done, n)
        features = self._features(audio, lookahead, n)  # (1, n, A)
        cond = self._cond(idx, features)
        x0 = self._generate(cond)
        video = self.decoder.push(x0)  # (1, 3, n, S, S)
        crops = _to_uint8(video[0])  # (n, S, S, 3)
        frames = self._paste(idx, crops)
        keep = len(self.history)
        self.history = np.concatenate([self.history, audio])[len(audio) :] if keep else self.history
        chunk = Chunk(
            start=self.frames_done,
            frames=frames,
            crops=crops,
            audio=audio,
            speech=np.ones(n, bool) if speech is None else np.asarray(speech, bool),
            source_index=idx,
            compute_s=time.perf_counter() - t0,
        )
        self.frames_done += n
        return chunk

    def _features(self, audio: np.ndarray, lookahead: np.ndarray | None, n: int) -> Tensor:
        from lipforcing.media.audio import audio_features

        m = self.audio_margin
        right = np.zeros(m * self.spf, np.float32)
        if lookahead is not None and len(lookahead):
            k = min(len(lookahead), len(right))
            right[:k] = lookahead[:k]
        window = np.concatenate([self.history, audio, right])
        cfg = self.pipeline.preset.audio
        feats = audio_features(window, cfg, n + 2 * m, wav2vec2=self.pipeline.wav2vec2)
        feats = np.asarray(feats, np.float32)[m : m + n]
        return torch.from_numpy(feats)[None].to(self.pipeline.device, self.pipeline.dtype)

    def _cond(self, idx: np.ndarray, features: Tensor):
        from lipforcing.data.conditions import assemble_cond, mask_pixels

        p = self.pipeline.preset
        crops = self._video(self.source.crops[idx])  # (1, 3, n, S, S)
        masked = self.masked_encoder.push(mask_pixels(crops, self.mask))  # (1, C, F, h, w)
        ref_idx = self.source.indices(self.frames_done + len(self.source) - 1, len(idx))
        ref_seq = self.ref_encoder.push(self._video(self.source.crops[ref_idx]))
        first = self.frames_done == 0
        return assemble_cond(
            masked=masked.to(self.pipeline.dtype),
            ref_frame=self.ref_frame,
            ref_seq=ref_seq.to(self.pipeline.dtype),
            mask=self.mask,
            audio=features,
            pack=p.model.audio_pack_frames,
            audio_packed=not first,
        )

    def _generate(self, cond) -> Tensor:
        from lipforcing.diffusion.causal import generate_chunk
        from lipforcing.diffusion.samplers import cpu_noise

        p = self.pipeline.preset
        shape = (1, p.model.latent_channels, p.causal.chunk_frames, *p.latent_hw)
        noise = cpu_noise(shape, self.generator, cond.masked)
        return generate_chunk(
            self.pipeline.model,
            self.cache,
            noise,
            cond,
            p.causal.student_steps,
            p.schedule.num_steps,
            p.schedule.shift,
            generator=self.generator,
        )

    def _paste(self, idx: np.ndarray, crops: np.ndarray) -> np.ndarray:
        from lipforcing.media.composite import paste_back

        media = self.pipeline.preset.media
        out = [
            paste_back(self.source.frames[i], crop, self.source.transforms[i], media)
            for i, crop in zip(idx, crops)
        ]
        return np.stack(out)

    def _encode_ref_frame(self) -> Tensor:
        with torch.inference_mode():
            z = self.pipeline.codec.encode(self._video(self.source.crops[:1]))
        return z.to(self.pipeline.dtype)  # (1, C, 1, h, w)

    def _video(self, crops: np.ndarray) -> Tensor:
        """(t, S, S, 3) uint8 -> (1, 3, t, S, S) float in [-1, 1] on the pipeline's device."""
        x = torch.from_numpy(np.ascontiguousarray(crops)).to(self.pipeline.device)
        return (x.permute(3, 0, 1, 2)[None].float() / 127.5 - 1.0).contiguous()


def warmup(pipeline: Pipeline, source: Source) -> float:
    """Run one silent chunk so one-off start-up costs (librosa's mel filters and JIT, first
    kernel launches) do not land in a live stream's first frame. Returns its wall time, s."""
    engine = ChunkEngine(pipeline, source)
    return engine.step(np.zeros(engine.next_samples(), np.float32)).compute_s


def _to_uint8(video: Tensor) -> np.ndarray:
    """(3, t, S, S) in [-1, 1] -> (t, S, S, 3) uint8."""
    x = ((video.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(1, 2, 3, 0).cpu().numpy()


def _default_margin(preset) -> int:
    """Frames of audio context on each side of a chunk for its features."""
    if preset.audio.kind == "mel":
        return preset.audio.context_frames + 2  # + STFT half-window, rounded up to frames
    return 25  # wav2vec2 sees the whole window: give it one second each side
