"""The student's timed stream: encode, two denoising calls, decode and KV write per chunk.

Two schedules of the same per-chunk work (same outputs, checked on the CPU):

- :func:`student_run`, in order: encode k, denoise k, decode k (frames out), write k's KV
  entries (``kv_after_decode``; the write is only needed by chunk k + 1's first call).
- :func:`student_run_overlapped`: the codec on one CUDA stream and the DiT on another, so
  encode k + 1 runs during denoise k and decode k during write k. UNTESTED ON A GPU (none was
  available); on the CPU the two lanes run inline and the schedule is only a reordering, which
  is what the tests check.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor

from lipforcing.bench.harness import Setup, TimedModel, check_finite
from lipforcing.bench.timing import Stages
from lipforcing.data.conditions import assemble_cond, mask_pixels
from lipforcing.diffusion.causal import denoise_chunk, write_chunk
from lipforcing.diffusion.samplers import cpu_noise
from lipforcing.models.kv_cache import KVCache


def student_net(s: Setup):
    """The student as the runs call it: the KV-write shortcut and CUDA graphs as configured."""
    from lipforcing.bench import optimize

    net = s.net
    if s.opts.kv_shortcut:
        net = optimize.KVWriteShortcut(net)
    if s.opts.cuda_graphs:
        net = optimize.CudaGraphStudent(net)
    return net


class StudentStream:
    """Random crops and audio features for a stream, and the student's KV cache."""

    def __init__(self, s: Setup) -> None:
        p = s.preset
        g = torch.Generator().manual_seed(s.opts.seed)
        self.first = p.codec.video_frames(p.causal.chunk_frames)  # 9 video frames
        self.later = p.codec.temporal_stride * p.causal.chunk_frames  # 12
        size = p.media.crop_size
        self.video = s.rand(1, 3, self.later, size, size, generator=g)  # reused every chunk
        self.masked = mask_pixels(self.video, s.mask)
        self.audio = torch.randn(1, self.later, p.model.audio_feature_dim, generator=g)
        self.audio = self.audio.to(s.device, s.dtype)
        self.context = s.context(g)
        n = p.causal.chunk_frames
        self.latents = [s.random_latents(n, g) for _ in range(3)]  # masked, ref_seq, ref
        self.cache = KVCache.allocate(
            p.model, 1, p.latent_hw, p.causal, device=s.device, dtype=s.dtype
        )

    def sizes(self, chunks: int) -> list[int]:
        return [self.first if i == 0 else self.later for i in range(chunks)]


class _Chunks:
    """The per-chunk operations of one run (fresh cache, codec stream state and noise)."""

    def __init__(self, s: Setup, stream: StudentStream, stages: Stages) -> None:
        self.s, self.stream, self.stages = s, stream, stages
        p = s.preset
        self.steps = s.opts.student_steps or p.causal.student_steps
        self.g = torch.Generator().manual_seed(s.opts.seed)
        self.model = TimedModel(s.net, stages)
        stream.cache.reset()
        codec = s.codec
        if codec is not None:
            self.encoders = (codec.stream_encoder(), codec.stream_encoder())
            self.decoder = codec.stream_decoder()
            if s.opts.paired_encode:  # both crop streams pushed as one batch
                self.pair = torch.cat([stream.masked, stream.video])  # (2, 3, 12, S, S)

    def reference(self) -> Tensor:
        if self.s.codec is None:
            return self.stream.latents[2][:, :, :1]
        with self.stages.stage("encode"):
            return self.s.encode(self.stream.video[:, :, :1])

    def encode(self, n: int) -> tuple[Tensor, Tensor]:
        """Latents of the mouth-masked crops and of the reference-sequence crops."""
        if self.s.codec is None:
            return self.stream.latents[0], self.stream.latents[1]
        with self.stages.stage("encode"):
            if self.s.opts.paired_encode:
                both = self.encoders[0].push(self.pair[:, :, :n]).to(self.s.dtype)
                return both[:1], both[1:]
            masked = self.encoders[0].push(self.stream.masked[:, :, :n]).to(self.s.dtype)
            ref_seq = self.encoders[1].push(self.stream.video[:, :, :n]).to(self.s.dtype)
        return masked, ref_seq

    def cond(self, i: int, n: int, ref: Tensor, latents: tuple[Tensor, Tensor]):
        p = self.s.preset
        return assemble_cond(
            masked=latents[0],
            ref_frame=ref,
            ref_seq=latents[1],
            mask=self.s.mask,
            audio=self.stream.audio[:, :n],
            pack=p.model.audio_pack_frames,
            context=self.stream.context,
            audio_packed=i > 0,
        )

    def denoise(self, cond) -> Tensor:
        p = self.s.preset
        self.model.new_chunk()
        noise = cpu_noise(cond.masked.shape, self.g, cond.masked)
        return denoise_chunk(
            self.model,
            self.stream.cache,
            noise,
            cond,
            self.steps,
            p.schedule.num_steps,
            p.schedule.shift,
            self.g,
        )

    def decode(self, x0: Tensor) -> Tensor:
        if self.s.codec is None:
            return x0
        with self.stages.stage("decode"):
            return self.decoder.push(x0)

    def write(self, x0: Tensor, cond) -> None:
        write_chunk(self.model, self.stream.cache, x0, cond)


def _result(s: Setup, stream, chunks, start, first, end, out, stages) -> dict:
    s.clock.sync()
    check_finite(out, "student")
    return {
        "frames": sum(stream.sizes(chunks)),
        "total_s": s.clock.seconds(start, end),
        "ttff_s": s.clock.seconds(start, first),
        "stages": stages.per_call_ms(),
    }


def student_run(
    s: Setup, stream: StudentStream, chunks: int, collect: list[Tensor] | None = None
) -> dict:
    """One stream of ``chunks`` chunks from a fresh cache; TTFF at the first chunk's decode.

    ``collect`` receives every chunk's x0 prediction (the equivalence tests read it).
    """
    stages = Stages(s.clock)
    start = s.clock.stamp()
    ops = _Chunks(s, stream, stages)
    ref = ops.reference()
    first = out = None
    for i, n in enumerate(stream.sizes(chunks)):
        cond = ops.cond(i, n, ref, ops.encode(n))
        x0 = ops.denoise(cond)
        if not s.opts.kv_after_decode:
            ops.write(x0, cond)
        if collect is not None:
            collect.append(x0.clone())
        out = ops.decode(x0)
        if i == 0:
            first = s.clock.stamp()
        if s.opts.kv_after_decode:
            ops.write(x0, cond)
    return _result(s, stream, chunks, start, first, s.clock.stamp(), out, stages)


class Lanes:
    """A codec lane and a DiT lane: two CUDA streams on CUDA, inline on other devices."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        if self.cuda:
            self.streams = {"codec": torch.cuda.Stream(device), "dit": torch.cuda.Stream(device)}

    def on(self, lane: str):
        return torch.cuda.stream(self.streams[lane]) if self.cuda else contextlib.nullcontext()

    def signal(self, lane: str):
        if not self.cuda:
            return None
        event = torch.cuda.Event()
        event.record(self.streams[lane])
        return event

    def wait(self, lane: str, event) -> None:
        if self.cuda and event is not None:
            self.streams[lane].wait_event(event)

    def hand_over(self, tensors, lane: str) -> None:
        """Tensors made on one lane and read on ``lane``: keep their memory until it is done."""
        if self.cuda:
            for t in tensors:
                t.record_stream(self.streams[lane])

    def join(self) -> None:
        """The current stream waits for both lanes."""
        if self.cuda:
            for stream in self.streams.values():
                torch.cuda.current_stream().wait_stream(stream)


def student_run_overlapped(
    s: Setup, stream: StudentStream, chunks: int, collect: list[Tensor] | None = None
) -> dict:
    """:func:`student_run` with the codec and the DiT on two lanes (see the module docstring).

    Codec lane: enc 0, enc 1, dec 0, enc 2, dec 1, ...; DiT lane: denoise 0, write 0,
    denoise 1, write 1, ... Each denoise waits for its encode, each decode for its denoise.
    """
    lanes = Lanes(s.device)
    stages = Stages(s.clock)
    sizes = stream.sizes(chunks)
    start = s.clock.stamp()
    if lanes.cuda:  # both lanes start after the work queued before the start stamp
        for lane in lanes.streams.values():
            lane.wait_stream(torch.cuda.current_stream())
    ops = _Chunks(s, stream, stages)

    def encode(i: int):
        with lanes.on("codec"):
            lat = ops.encode(sizes[i])
            return lat, lanes.signal("codec")

    with lanes.on("codec"):
        ref = ops.reference()
    pending = encode(0)
    first = out = None
    for i, n in enumerate(sizes):
        latents, ready = pending
        if i + 1 < chunks:
            pending = encode(i + 1)  # queued before decode i: runs while the DiT denoises
        with lanes.on("dit"):
            lanes.wait("dit", ready)
            lanes.hand_over([ref, *latents], "dit")
            cond = ops.cond(i, n, ref, latents)
            x0 = ops.denoise(cond)
            x0_ready = lanes.signal("dit")
        if collect is not None:
            with lanes.on("dit"):
                collect.append(x0.clone())
        with lanes.on("codec"):
            lanes.wait("codec", x0_ready)
            lanes.hand_over([x0], "codec")
            out = ops.decode(x0)
            if i == 0:
                first = s.clock.stamp()
        with lanes.on("dit"):
            ops.write(x0, cond)
    lanes.join()
    return _result(s, stream, chunks, start, first, s.clock.stamp(), out, stages)
