"""A live lip-sync stream: audio pushes in, paced frames (with the audio they play) out.

:class:`StreamSession` feeds one stream of a :class:`~lipforcing.streaming.engine.ChunkEngine`:
an audio queue, a :class:`~lipforcing.streaming.scheduler.Scheduler` that generates its chunks
(its own, or one shared by many sessions that it batches) and a paced consumer:

- ``push_audio(pcm, sample_rate=16000)`` appends PCM of any size (see :mod:`.pcm`);
  ``end_segment()`` marks the end of an utterance, whose last partial chunk is then padded
  with silence and generated; ``clear()`` drops pending audio and unplayed speech frames (an
  interruption); ``close()`` ends the stream after what is pending has been generated.
- ``frames()`` / ``aframes()`` iterate :class:`Frame` objects: the full frame, its timestamp on
  the output clock and the ``samples_per_frame`` audio samples played with it, so a player keeps
  audio and video in sync by construction.

Two modes:
- ``realtime=False`` (offline, benchmarks): a chunk is generated only when its audio and the
  features' right context are pending, or at a segment end. What is generated depends only on
  the audio and the segment marks, never on how the audio was cut into pushes or on timing.
- ``realtime=True`` (live): frames leave at the media frame rate. The producer keeps a small
  lead of generated frames (sized from the measured chunk time); when the lead runs out it
  generates from whatever is pending: a full chunk, a partial one padded with silence (on the
  left when speech is starting, so the utterance stays contiguous), or an idle chunk of silent
  audio, which gives a closed mouth while the source keeps playing (ping-pong).

Stats (:class:`StreamStats`): TTFF = first audio sample pushed -> first speech frame out;
steady output FPS; generation FPS; glass-to-glass latency = a speech frame's emission minus the
push of the last audio sample it plays (p50 / p95 / mean / max over the last 2000 frames);
late frames (paced more than one frame late); dropped frames (generated, never shown).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from lipforcing.errors import UserError
from lipforcing.streaming.engine import Chunk, ChunkRequest
from lipforcing.streaming.pcm import Resampler, to_float32
from lipforcing.streaming.pipeline import Pipeline
from lipforcing.streaming.scheduler import Scheduler
from lipforcing.streaming.source import Source

LATENCY_WINDOW = 2000  # speech frames the latency percentiles are taken over (the last ones)
CHUNK_TIME_EMA = 0.3  # weight of the newest chunk's compute time in its running mean
LEAD_CHUNKS = 1.5  # realtime lead: frames worth this many chunk compute times (+1) stay queued
FIRST_CHUNK_GUESS_S = 0.5  # chunk compute time assumed until one has been measured
RECLOCK_S = 0.25  # paced output this far behind its clock restarts the clock (no rushing)
WAIT_S = 0.5  # frames(): longest wait on an empty output queue (notifications come earlier)
ASYNC_POLL_S = 0.004  # aframes(): sleep between looks at an empty output queue


@dataclass(frozen=True)
class Frame:
    """One output frame and the audio that plays with it."""

    image: np.ndarray  # (H, W, 3) uint8 full frame
    timestamp: float  # seconds on the output clock (emitted frames / fps)
    audio: np.ndarray  # (samples_per_frame,) float32 at 16 kHz
    index: int  # generation index (gaps where cleared frames were dropped)
    speech: bool  # carries user audio (False: idle or padding)
    crop: np.ndarray  # (S, S, 3) generated aligned crop
    source_index: int  # source frame under it
    arrival: float = math.nan  # perf_counter time its last user audio sample was pushed
    segment_end: bool = False  # the last frame of an utterance closed by end_segment()
    span: tuple[int, int] = (0, 0)  # pushed 16 kHz samples [start, stop) it plays (idle: empty)


@dataclass
class StreamStats:
    """A session's measurements; the session reports events through the ``record_*`` methods."""

    ttff_s: float | None = None  # first audio in -> first speech frame out, seconds
    first_chunk_compute_s: float | None = None  # encode -> decode of the first chunk
    frames_out: int = 0
    speech_frames_out: int = 0
    chunks: int = 0
    fps: float | None = None  # emitted frames per second of wall time (steady state)
    gen_fps: float | None = None  # frames generated per second of generation compute
    latency_p50_s: float | None = None  # glass-to-glass: audio sample pushed -> its frame out
    latency_p95_s: float | None = None
    queue_delay_mean_s: float | None = None  # the same latency's mean and maximum
    queue_delay_max_s: float | None = None
    late_frames: int = 0
    dropped_frames: int = 0
    audio_pending_s: float = 0.0
    _delays: list[float] = field(default_factory=list, repr=False)
    _compute_s: float = field(default=0.0, repr=False)
    _generated: int = field(default=0, repr=False)
    _first_push: float | None = field(default=None, repr=False)
    _first_emit: float | None = field(default=None, repr=False)
    _last_emit: float | None = field(default=None, repr=False)

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}

    def record_push(self, now: float) -> None:
        """Audio was pushed at ``now`` (perf_counter seconds); the first push starts the TTFF."""
        if self._first_push is None:
            self._first_push = now

    def record_chunk(self, compute_s: float, frames: int) -> None:
        """A chunk of ``frames`` frames was generated in ``compute_s`` seconds."""
        self.chunks += 1
        self._compute_s += compute_s
        self._generated += frames
        self.gen_fps = self._generated / max(self._compute_s, 1e-9)
        if self.first_chunk_compute_s is None:
            self.first_chunk_compute_s = compute_s

    def record_dropped(self, frames: int) -> None:
        """Frames generated that will never be shown (cleared or preempted)."""
        self.dropped_frames += frames

    def record_late(self) -> None:
        """A paced frame left more than one frame period after it was due."""
        self.late_frames += 1

    def record_emit(self, now: float, speech: bool, arrival: float, pending_s: float) -> None:
        """A frame left the session at ``now``; ``arrival``: the push time of the last user
        audio sample it plays (NaN: none); ``pending_s``: audio still queued, seconds."""
        self.frames_out += 1
        if self._first_emit is None:
            self._first_emit = now
        self._last_emit = now
        if self.frames_out > 1:
            self.fps = (self.frames_out - 1) / max(now - self._first_emit, 1e-9)
        if speech:
            self.speech_frames_out += 1
            if self.ttff_s is None and self._first_push is not None:
                self.ttff_s = now - self._first_push
            if not math.isnan(arrival):
                self._record_latency(now - arrival)
        self.audio_pending_s = pending_s

    def _record_latency(self, delay: float) -> None:
        self._delays.append(delay)
        del self._delays[:-LATENCY_WINDOW]
        p50, p95 = np.percentile(self._delays, [50, 95])
        self.latency_p50_s, self.latency_p95_s = float(p50), float(p95)
        self.queue_delay_mean_s = float(np.mean(self._delays))
        self.queue_delay_max_s = max(self.queue_delay_max_s or 0.0, delay)


class _AudioQueue:
    """Pending samples with absolute positions, arrival times and segment marks."""

    def __init__(self) -> None:
        self.parts: deque[np.ndarray] = deque()
        self.pushed = 0  # samples ever pushed
        self.consumed = 0  # samples ever taken or dropped
        self.arrivals: deque[tuple[int, float]] = deque()  # (end position, time)
        self.marks: deque[int] = deque()  # positions where a segment ends

    def __len__(self) -> int:
        return self.pushed - self.consumed

    def push(self, x: np.ndarray, now: float) -> None:
        if len(x):
            self.parts.append(x)
            self.pushed += len(x)
            self.arrivals.append((self.pushed, now))

    def mark(self) -> None:
        if len(self) and (not self.marks or self.marks[-1] < self.pushed):
            self.marks.append(self.pushed)

    def available(self) -> tuple[int, bool]:
        """Samples before the next segment end (or all), and whether a segment end bounds it."""
        while self.marks and self.marks[0] <= self.consumed:
            self.marks.popleft()
        if self.marks:
            return self.marks[0] - self.consumed, True
        return len(self), False

    def peek(self, offset: int, count: int) -> np.ndarray:
        out, skip = [], offset
        for part in self.parts:
            if skip >= len(part):
                skip -= len(part)
                continue
            piece = part[skip : skip + count - sum(map(len, out))]
            out.append(piece)
            skip = 0
            if sum(map(len, out)) >= count:
                break
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def take(self, count: int) -> tuple[np.ndarray, list[tuple[int, float]]]:
        """Remove ``count`` samples; also return the (end position, time) of their pushes."""
        data = self.peek(0, count)
        start, stop = self.consumed, self.consumed + count
        pushes = []
        for end, t in self.arrivals:
            if end > start:
                pushes.append((end, t))
            if end >= stop:
                break
        self.drop(count)
        return data, pushes

    def drop(self, count: int) -> None:
        while count > 0 and self.parts:
            head = self.parts[0]
            if len(head) <= count:
                self.parts.popleft()
                count -= len(head)
                self.consumed += len(head)
            else:
                self.parts[0] = head[count:]
                self.consumed += count
                count = 0
        while self.arrivals and self.arrivals[0][0] <= self.consumed:
            self.arrivals.popleft()

    def clear(self) -> None:
        self.drop(len(self))
        self.marks.clear()


@dataclass(frozen=True)
class _Plan:
    take: int  # user samples consumed
    left_pad: int  # silence before them
    lookahead: np.ndarray  # samples after them, for the features' right context
    ends_segment: bool


class StreamSession:
    """One live stream of a source animated by pushed audio (see the module docstring)."""

    def __init__(
        self,
        pipeline: Pipeline,
        source: Source,
        *,
        seed: int = 0,
        realtime: bool = False,
        max_pending_s: float | None = None,
        audio_margin: int | None = None,
        min_lead_frames: int = 3,
        preempt_idle: bool = True,
        scheduler: Scheduler | None = None,
        context=None,
        silence_gate=None,
    ) -> None:
        self._own_scheduler = scheduler is None
        self.scheduler = scheduler if scheduler is not None else Scheduler(pipeline, private=True)
        self.engine = self.scheduler.engine
        self.scheduler.warmup(source)  # once per scheduler; one-off costs stay out of streams
        self.stream = self.scheduler.open(
            source,
            seed=seed,
            audio_margin=audio_margin,
            context=context,
            silence_gate=silence_gate,  # media.vad.SilenceGateConfig; None: the default (on)
        )
        self.realtime = realtime
        self.fps = self.engine.fps
        self.sample_rate = self.engine.sample_rate
        self.max_pending = None if max_pending_s is None else int(max_pending_s * self.sample_rate)
        self.min_lead_frames = min_lead_frames
        self.preempt_idle = preempt_idle
        self.stats = StreamStats()
        self._queue = _AudioQueue()
        self._resampler = Resampler(self.sample_rate)
        self._out: deque[Frame] = deque()
        self._cv = threading.Condition()
        self._closed = False
        self._finished = False
        self._error: BaseException | None = None
        self._epoch = 0  # bumped by clear(); chunks planned before it drop their speech
        self._idle_epoch = 0  # bumped when speech preempts queued idle frames
        self._speaking = False  # the last generated chunk ended inside an utterance
        # Segment ends that come after the queue ran dry (see _late_segment_end):
        self._ended_at = 0  # pushed position of the last segment end (or clear)
        self._taken_stop = 0  # span stop of the last speech frame taken from _out
        self._late_end: int | None = None  # end position awaiting its frame's delivery
        self._end_next = False  # the utterance's last frame was taken: mark the next one
        self._chunk_ema: float | None = None
        self._started = False
        self._clock: tuple[float, int] | None = None  # (t0, emitted count at t0)

    # ------------------------------------------------------------------ input

    def push_audio(self, pcm, sample_rate: int = 16_000) -> None:
        """Append PCM (int16 bytes, int16 or float arrays; resampled to 16 kHz if needed)."""
        samples = self._resampler(to_float32(pcm), int(sample_rate))
        now = time.perf_counter()
        with self._cv:
            if self._closed:
                raise UserError("the stream is closed")
            if self.max_pending is not None and len(self._queue) + len(samples) > self.max_pending:
                raise UserError(
                    f"more than {self.max_pending / self.sample_rate:.0f} s of audio pending"
                )
            if len(samples):
                self.stats.record_push(now)
            if self.realtime and self.preempt_idle and not self._speaking and len(samples):
                self._preempt_idle()
            self._queue.push(samples, now)
            self._cv.notify_all()
        self.scheduler.wake()

    def _preempt_idle(self) -> None:
        """Speech is starting: drop idle frames queued beyond the minimum lead (and the idle
        chunk being generated), so the speech is not delayed behind them. The cost is a jump
        of at most one chunk in the source video at speech onset."""
        keep = list(self._out)
        cut = len(keep)
        while cut > self.min_lead_frames and not keep[cut - 1].speech:
            cut -= 1
        self.stats.record_dropped(len(keep) - cut)
        self._out = deque(keep[:cut])
        self._idle_epoch += 1

    def end_segment(self) -> None:
        """The utterance is complete: generate its last partial chunk (padded with silence).

        Its last speech frame carries ``segment_end``, also when its audio was all taken before
        this call (see :meth:`_late_segment_end`); a call with nothing new pushed ends nothing.
        """
        tail = self._resampler.flush()
        with self._cv:
            self._queue.push(tail, time.perf_counter())
            if len(self._queue):
                self._queue.mark()
            elif self._queue.pushed > self._ended_at:
                self._late_segment_end(self._queue.pushed)
            self._ended_at = self._queue.pushed
            self._cv.notify_all()
        self.scheduler.wake()

    def _late_segment_end(self, end: int) -> None:
        """The utterance ending at pushed position ``end`` has had all its audio taken by
        chunks already (realtime mode ran the queue dry before ``end_segment``). Its last
        speech frame, the one whose span stops at ``end``, carries the segment end: marked
        where it waits in the output queue, on delivery if its chunk is being generated, or,
        when it has been taken already, on the next frame taken."""
        self._speaking = False
        for k in range(len(self._out) - 1, -1, -1):
            if self._out[k].speech and self._out[k].span[1] == end:
                self._out[k] = replace(self._out[k], segment_end=True)
                return
        if self._taken_stop >= end:
            self._end_next = True
        else:
            self._late_end = end

    def clear(self) -> None:
        """Interruption: drop pending audio and speech frames generated but not yet shown."""
        self._resampler.flush()
        with self._cv:
            self._queue.clear()
            self._epoch += 1
            self._speaking = False
            self._ended_at = self._queue.pushed  # an interrupted utterance has no end
            self._late_end, self._end_next = None, False
            kept = deque(f for f in self._out if not f.speech)
            self.stats.record_dropped(len(self._out) - len(kept))
            self._out = kept
            self._cv.notify_all()
        self.scheduler.wake()

    def close(self) -> None:
        """No more audio: finish after the pending audio has been generated."""
        self.end_segment()
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self.scheduler.wake()

    def stop(self) -> None:
        """Stop now, dropping whatever is pending (the session leaves its scheduler)."""
        with self._cv:
            self._closed = True
            self._queue.clear()
            self._finished = True
            self._cv.notify_all()
        self.scheduler.detach(self)
        if self._own_scheduler:
            self.scheduler.close()

    @property
    def pending_seconds(self) -> float:
        return len(self._queue) / self.sample_rate

    # ------------------------------------------------------------------ producer

    def start(self) -> None:
        """Join the scheduler, which generates from now on (the iterators call this)."""
        with self._cv:
            if self._started:
                return
            self._started = True
        self.scheduler.attach(self)

    # Called by the scheduler's thread, never under the scheduler's lock.

    def _next_request(self) -> tuple[ChunkRequest, tuple] | None:
        """The next chunk to generate and what delivering it needs, or None (not yet)."""
        with self._cv:
            if self._finished or (self._closed and not len(self._queue)):
                self._finish_locked()
                return None
            plan = self._plan()
            if plan is None:
                return None
            audio, speech, arrival, seg_end, epoch, spans = self._materialise(plan)
            request = ChunkRequest(self.stream, audio, plan.lookahead, speech)
            return request, (arrival, seg_end, epoch, spans, self._idle_epoch)

    def _complete(self, chunk: Chunk, meta: tuple) -> None:
        arrival, seg_end, epoch, spans, idle_epoch = meta
        with self._cv:
            if not chunk.speech.any() and idle_epoch != self._idle_epoch:
                self.stats.record_dropped(len(chunk))  # preempted by speech
            else:
                self._deliver(chunk, arrival, seg_end, epoch, spans)

    def _fail(self, error: BaseException) -> None:
        with self._cv:
            self._error = error
            self._finish_locked()

    def _finish_locked(self) -> None:
        if not self._finished:
            self._finished = True
            self._cv.notify_all()
        self.scheduler.detach(self)  # lock order: a session's lock, then the scheduler's

    def _plan(self) -> _Plan | None:
        need, look = self.stream.next_samples(), self.stream.lookahead_samples
        avail, bounded = self._queue.available()
        flush = bounded or self._closed
        if self.realtime and len(self._out) > self._lead_frames():
            return None
        if avail >= need + look or (flush and avail):
            take = min(avail, need)
            ahead = self._queue.peek(take, min(look, avail - take))
            return _Plan(take, 0, ahead, flush and take == avail)
        if not self.realtime:
            return None
        if avail >= need:  # the right context has not arrived yet: read silence there
            return _Plan(need, 0, self._queue.peek(need, avail - need), False)
        left = 0 if self._speaking else need - avail  # speech starting: keep it contiguous
        return _Plan(avail, left, np.zeros(0, np.float32), False)

    def _lead_frames(self) -> int:
        """Generated frames to keep queued so the next chunk is ready before they run out."""
        chunk_s = self._chunk_ema if self._chunk_ema is not None else FIRST_CHUNK_GUESS_S
        return max(self.min_lead_frames, math.ceil(LEAD_CHUNKS * chunk_s * self.fps) + 1)

    def _materialise(self, plan: _Plan):
        need, spf = self.stream.next_samples(), self.engine.spf
        data, arrivals = self._queue.take(plan.take)
        audio = np.zeros(need, np.float32)
        audio[plan.left_pad : plan.left_pad + plan.take] = data
        n = need // spf
        speech = np.zeros(n, bool)
        arrival = np.full(n, math.nan)
        seg_end = -1
        spans = np.zeros((n, 2), np.int64)
        if plan.take:
            first = plan.left_pad // spf
            last = (plan.left_pad + plan.take - 1) // spf
            speech[first : last + 1] = True
            base = self._queue.consumed - plan.take - plan.left_pad  # position of audio[0]
            for i in range(first, last + 1):
                end_pos = base + min((i + 1) * spf, plan.left_pad + plan.take)
                arrival[i] = next((t for e, t in arrivals if e >= end_pos), math.nan)
                spans[i] = base + max(i * spf, plan.left_pad), end_pos
            seg_end = last if plan.ends_segment else -1
        self._speaking = bool(plan.take) and not plan.ends_segment
        return audio, speech, arrival, seg_end, self._epoch, spans

    def _deliver(self, chunk: Chunk, arrival, seg_end: int, epoch: int, spans) -> None:
        self.stats.record_chunk(chunk.compute_s, len(chunk))
        self._chunk_ema = (
            chunk.compute_s
            if self._chunk_ema is None
            else (1 - CHUNK_TIME_EMA) * self._chunk_ema + CHUNK_TIME_EMA * chunk.compute_s
        )
        spf = self.engine.spf
        for i in range(len(chunk)):
            speech = bool(chunk.speech[i])
            if speech and epoch != self._epoch:  # cleared while it was being generated
                self.stats.record_dropped(1)
                continue
            stop = int(spans[i, 1])
            late_end = speech and stop == self._late_end
            if late_end:
                self._late_end = None
            self._out.append(
                Frame(
                    image=chunk.frames[i],
                    timestamp=0.0,
                    audio=chunk.audio[i * spf : (i + 1) * spf],
                    index=chunk.start + i,
                    speech=speech,
                    crop=chunk.crops[i],
                    source_index=int(chunk.source_index[i]),
                    arrival=float(arrival[i]),
                    segment_end=i == seg_end or late_end,
                    span=(int(spans[i, 0]), stop),
                )
            )
        self._cv.notify_all()

    # ------------------------------------------------------------------ output

    def _pop(self, block: bool) -> Frame | None:
        with self._cv:
            while not self._out:
                if self._error is not None:
                    raise self._error
                if self._finished or not block:
                    return None
                self._cv.wait(timeout=WAIT_S)
            frame = self._out.popleft()
            if frame.speech:
                self._taken_stop = frame.span[1]
            if self._end_next:
                frame, self._end_next = replace(frame, segment_end=True), False
            self._cv.notify_all()
        self.scheduler.wake()  # the lead shrank
        return frame

    def _due_in(self) -> float:
        """Seconds until the next frame is due on the paced clock (re-based when far behind)."""
        now = time.perf_counter()
        if self._clock is None:
            self._clock = (now, self.stats.frames_out)
        t0, k0 = self._clock
        due = t0 + (self.stats.frames_out - k0) / self.fps
        late = now - due
        if late > 1.0 / self.fps:
            self.stats.record_late()
        if late > RECLOCK_S:  # far behind: start a new clock rather than rushing frames out
            self._clock = (now, self.stats.frames_out)
            return 0.0
        return max(0.0, -late)

    def _emit(self, frame: Frame) -> Frame:
        now = time.perf_counter()
        frame = replace(frame, timestamp=self.stats.frames_out / self.fps)
        self.stats.record_emit(now, frame.speech, frame.arrival, self.pending_seconds)
        return frame

    def frames(self) -> Iterator[Frame]:
        """Frames until the stream is closed and drained (paced in realtime mode)."""
        self.start()
        while True:
            frame = self._pop(block=True)
            if frame is None:
                return
            if self.realtime:
                time.sleep(self._due_in())
            yield self._emit(frame)

    async def aframes(self) -> AsyncIterator[Frame]:
        """The async twin of :meth:`frames` (never blocks the event loop)."""
        self.start()
        while True:
            frame = self._pop(block=False)
            if frame is None:
                if self._finished and not self._out:
                    if self._error is not None:
                        raise self._error
                    return
                await asyncio.sleep(ASYNC_POLL_S)
                continue
            if self.realtime:
                await asyncio.sleep(self._due_in())
            yield self._emit(frame)

    def __iter__(self) -> Iterator[Frame]:
        return self.frames()

    def __aiter__(self) -> AsyncIterator[Frame]:
        return self.aframes()

    def __enter__(self) -> StreamSession:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
