"""The WebRTC transport (aiortc): ``POST /offer`` -> answer, one peer connection per session.

Signalling as voice-agent stacks do it: the client posts ``{"sdp", "type": "offer"}`` plus the
session options (:class:`SessionOptions`: ``source``, ``seed``, ``realtime``) in the same JSON
body and gets ``{"sdp", "type": "answer"}`` back (ICE candidates gathered before answering, no
trickle). On the one peer connection:

- up: the client's audio track (microphone or a file played into a track; Opus at 48 kHz),
  decoded by aiortc, averaged to mono and pushed into the session, whose soxr stream resampler
  converts it to 16 kHz;
- down: the lip-synced video track and an audio track with the audio each frame plays (the
  input, delayed by the generation). One paced loop takes the session's frames and feeds both
  tracks from one :class:`MediaClock`: video is stamped (90 kHz) with the media time of the
  audio that plays with it, and a stall in generation is bridged with silence rather than
  letting the media time fall behind the wall clock, so the receiver's lip sync (RTCP sender
  reports map each stream's RTP time to the wall clock) keeps them within a frame;
- a data channel (any label) carrying the WebSocket protocol's control messages
  (``end_segment``, ``clear``, ``close``, ``ping``) up and ``stats`` (with the ``face`` driven
  and ``silence_gate``) / ``done`` / ``error`` messages down.

A session ends when the peer connection fails or closes, the client sends ``close`` and the
stream drains, no audio arrives for ``idle_timeout_s``, ``max_session_s`` passes, or the peer
never connects (:data:`CONNECT_TIMEOUT_S`); its slot is freed at once and the session taken
off the scheduler in the background. Refused offers (malformed SDP, no common codec, no audio to
send, the wrong ``type``) get 400 with one message.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import time

import av
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc import sdp as sdp_parser
from aiortc.exceptions import InvalidAccessError, InvalidStateError, OperationError
from aiortc.mediastreams import MediaStreamError

from lipforcing.errors import UserError
from lipforcing.streaming.server.live import apply_control, open_session
from lipforcing.streaming.server.protocol import (
    ProtocolError,
    SessionOptions,
    message,
    parse_message,
    pcm16,
    stats_fields,
)

log = logging.getLogger(__name__)
VIDEO_CLOCK = 90_000  # RTP clock of video, Hz
AUDIO_PACKET_S = 0.02  # audio frames handed to the Opus encoder (one 20 ms packet each)
CONNECT_TIMEOUT_S = 20.0  # the peer must connect within this, seconds
QUEUE_S = 2.0  # outgoing media buffered per track before the oldest is dropped, seconds
STATS_PERIOD_S = 0.5  # stats message interval on the data channel, seconds
WATCHDOG_PERIOD_S = 0.25  # how often limits are checked, seconds
CODECS_TEXT = "audio: Opus, G.722, PCMU or PCMA; video: VP8 or H.264"


class OfferRefused(UserError):
    """An offer the server cannot answer (HTTP 400)."""


def parse_offer(body: object, max_bytes: int) -> tuple[str, SessionOptions]:
    """The SDP and session options of an offer body."""
    if not isinstance(body, dict):
        raise OfferRefused("the offer must be a JSON object {sdp, type, ...options}")
    sdp, kind = body.get("sdp"), body.get("type")
    if kind != "offer":
        raise OfferRefused('the offer needs "type": "offer"')
    if not isinstance(sdp, str) or not sdp.strip():
        raise OfferRefused('the offer needs its SDP as a string in "sdp"')
    if len(sdp) > max_bytes:
        raise OfferRefused(f"the SDP is over {max_bytes // 1000} kB")
    try:
        options = SessionOptions.parse(body, ignore=("sdp", "type"))
    except ProtocolError as e:
        raise OfferRefused(str(e)) from None
    _check_media(sdp)
    return sdp, options


def _check_media(sdp: str) -> None:
    """The offer must be an SDP that sends audio and receives video."""
    if not sdp.lstrip().startswith("v=0"):
        raise OfferRefused("malformed offer: an SDP starts with v=0")
    try:
        media = sdp_parser.SessionDescription.parse(sdp).media
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
        raise OfferRefused(f"malformed offer: {str(e)[:200] or type(e).__name__}") from None
    directions = {m.kind: m.direction for m in media}
    if directions.get("audio") not in ("sendrecv", "sendonly"):
        raise OfferRefused("the offer must send an audio track (microphone or file)")
    if directions.get("video") not in ("sendrecv", "recvonly"):
        raise OfferRefused("the offer must receive video (a recvonly video transceiver)")


class MediaClock:
    """The outgoing media timeline: audio samples sent, kept within a frame of the wall clock.

    Audio and video RTP timestamps both come from ``samples`` (the Opus encoder counts samples,
    so the audio timeline IS its sample count). When frames come late (generation stalled),
    :meth:`behind` says how much silence to send first, so that both timelines keep the wall
    clock's pace and the receiver's RTCP-based lip sync sees the same mapping on both streams.
    """

    def __init__(self, rate: int, frame_samples: int) -> None:
        self.rate, self.frame_samples = rate, frame_samples
        self.samples, self.t0 = 0, None

    @property
    def seconds(self) -> float:
        return self.samples / self.rate

    def behind(self, now: float) -> int:
        """Samples of silence to insert before a frame emitted at ``now``: whole frames, so
        video timestamps stay on the frame grid (0 when less than a frame late)."""
        if self.t0 is None:
            self.t0 = now
        late = round((now - self.t0) * self.rate) - self.samples
        return max(0, late // self.frame_samples) * self.frame_samples


class OutputTrack(MediaStreamTrack):
    """A track fed by the paced loop; past ``QUEUE_S`` of backlog the oldest item is dropped
    (the peer is not taking media: memory stays bounded)."""

    def __init__(self, kind: str, items_per_s: float) -> None:
        super().__init__()
        self.kind = kind
        self.limit = max(1, round(QUEUE_S * items_per_s))
        self.queue: asyncio.Queue = asyncio.Queue()
        self.dropped = 0  # items dropped because the peer was not taking them

    def put(self, item) -> None:
        if self.queue.qsize() >= self.limit:
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(item)

    async def recv(self):
        return await self.queue.get()


def video_frame(image: np.ndarray, timestamp: float):
    """An RGB frame as an ``av.VideoFrame`` stamped on the 90 kHz clock."""
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    frame.pts = round(timestamp * VIDEO_CLOCK)
    frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
    return frame


def audio_frames(audio: np.ndarray, rate: int, first_sample: int) -> list:
    """float32 mono samples as 20 ms ``av.AudioFrame`` s (s16), stamped by sample count."""
    step = round(AUDIO_PACKET_S * rate)
    out = []
    for start in range(0, len(audio), step):
        pcm = np.frombuffer(pcm16(audio[start : start + step]), "<i2")[None]
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = rate
        frame.pts = first_sample + start
        frame.time_base = fractions.Fraction(1, rate)
        out.append(frame)
    return out


def mono_samples(frame) -> np.ndarray:
    """A decoded ``av.AudioFrame`` (any layout, int16 or float) -> float32 mono in [-1, 1]."""
    a = frame.to_ndarray()
    channels = len(frame.layout.channels)
    a = a.reshape(channels, -1) if frame.format.is_planar else a.reshape(-1, channels).T
    scale = 32768.0 if a.dtype == np.int16 else (2.0**31 if a.dtype == np.int32 else 1.0)
    return (a.astype(np.float32) / scale).mean(axis=0)


class RtcPeer:
    """One WebRTC session: peer connection, session, pumps and limits."""

    def __init__(self, state, options: SessionOptions) -> None:
        self.state, self.options, self.limits = state, options, state.limits
        # host candidates only: no STUN server is contacted (loopback and LAN)
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        fps = state.pipeline.preset.media.fps
        self.video = OutputTrack("video", fps)
        self.audio = OutputTrack("audio", 1 / AUDIO_PACKET_S)
        self.session = None
        self.channel = None
        self.tasks: set[asyncio.Task] = set()
        self.ended = asyncio.Event()
        self.last_audio = time.monotonic()
        self.release = None
        self.stall_frames = 0  # frames of silence the media clock inserted (generation stalls)

    # ------------------------------------------------------------------ setup

    async def answer(self, sdp: str, release) -> dict:
        """Negotiate; on success the peer runs on in the background until it ends."""
        self.release = release
        try:
            self.session = await open_session(self.state, self.options)
            self._wire()
            try:
                await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            except OperationError as e:
                raise OfferRefused(
                    f"no common codec ({e}); this server takes {CODECS_TEXT}"
                ) from None
            except (ValueError, KeyError, IndexError, InvalidStateError, InvalidAccessError) as e:
                raise OfferRefused(f"malformed offer: {str(e)[:200] or type(e).__name__}") from None
            self.pc.addTrack(self.video)
            self.pc.addTrack(self.audio)
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except BaseException:
            await self.end("refused")
            raise
        self._spawn(self._run(), "rtc-run")
        local = self.pc.localDescription
        return {"sdp": local.sdp, "type": local.type}

    def _wire(self) -> None:
        pc = self.pc

        @pc.on("track")
        def on_track(track) -> None:
            if track.kind == "audio":
                self._spawn(self._pump_input(track), "rtc-input")

        @pc.on("datachannel")
        def on_channel(channel) -> None:
            self.channel = channel
            channel.on("message", self._on_message)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            log.debug("peer connection %s", pc.connectionState)
            if pc.connectionState in ("failed", "closed"):
                await self.end(f"peer connection {pc.connectionState}")

    def _spawn(self, coro, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            log.error("webrtc task %s failed", task.get_name(), exc_info=error)
            self._send("error", message="internal error: the session failed", ended=True)
            self._spawn(self.end("failed"), "rtc-end")

    # ------------------------------------------------------------------ running

    async def _run(self) -> None:
        try:
            await asyncio.wait_for(self._connected(), CONNECT_TIMEOUT_S)
        except TimeoutError:
            return await self.end(f"the peer did not connect within {CONNECT_TIMEOUT_S:g} s")
        self._spawn(self._pump_output(), "rtc-output")
        self._spawn(self._watchdog(), "rtc-watchdog")

    async def _connected(self) -> None:
        while self.pc.connectionState != "connected":
            if self.ended.is_set():
                return
            await asyncio.sleep(WATCHDOG_PERIOD_S / 5)

    async def _pump_input(self, track) -> None:
        while not self.ended.is_set():
            try:
                frame = await track.recv()
            except MediaStreamError:
                return  # the client's track ended
            self.last_audio = time.monotonic()
            try:
                self.session.push_audio(mono_samples(frame), frame.sample_rate)
            except UserError as e:  # pending-audio limit: tell the client, keep going
                self._send("error", message=str(e), ended=False)

    async def _pump_output(self) -> None:
        session, last_stats = self.session, 0.0
        clock = MediaClock(session.sample_rate, round(session.sample_rate / session.fps))
        async for frame in session.aframes():
            gap = clock.behind(time.perf_counter())
            if gap:  # generation stalled: the media clock keeps time with silence
                self._put_audio(np.zeros(gap, np.float32), clock)
                self.stall_frames += gap // clock.frame_samples
            self.video.put(video_frame(frame.image, clock.seconds))
            self._put_audio(frame.audio, clock)
            if time.monotonic() - last_stats > STATS_PERIOD_S:
                last_stats = time.monotonic()
                self._send("stats", **self.stats())
        self._send("done", stats=self.stats())
        await self.end("stream finished")

    def _put_audio(self, audio: np.ndarray, clock: MediaClock) -> None:
        for piece in audio_frames(audio, clock.rate, clock.samples):
            self.audio.put(piece)
        clock.samples += len(audio)

    def stats(self) -> dict:
        stream = self.session.stream
        return {
            **stats_fields(self.session.stats),
            "face": stream.source.face,  # the face driven, as reported (session option face)
            "silence_gate": stream.silence_gate.enabled,
            "rtc_dropped_frames": self.video.dropped,
            "rtc_dropped_audio": self.audio.dropped,
            "rtc_stall_frames": self.stall_frames,
        }

    async def _watchdog(self) -> None:
        started = time.monotonic()
        while not self.ended.is_set():
            await asyncio.sleep(WATCHDOG_PERIOD_S)
            now = time.monotonic()
            reason = None
            if now - started > self.limits.max_session_s:
                reason = f"session time limit of {self.limits.max_session_s:g} s reached"
            elif now - self.last_audio > self.limits.idle_timeout_s:
                reason = f"no audio for {self.limits.idle_timeout_s:g} s: closing"
            if reason:
                self._send("error", message=reason, ended=True)
                return await self.end(reason)

    # ------------------------------------------------------------------ control channel

    def _on_message(self, text) -> None:
        if not isinstance(text, str):
            return self._send("error", message="the control channel takes JSON text", ended=False)
        try:
            msg = parse_message(text, int(self.limits.max_text_message_kb * 1000))
            if "token" in msg:
                msg = {k: v for k, v in msg.items() if k != "token"}
            reply = apply_control(self.session, msg)
        except ProtocolError as e:
            self._send("error", message=str(e), ended=e.fatal)
            if e.fatal:
                self._spawn(self.end(str(e)), "rtc-end")
            return None
        if reply is not None:
            self.channel.send(reply)
        return None

    def _send(self, kind: str, **fields) -> None:
        channel = self.channel
        if channel is not None and channel.readyState == "open":
            channel.send(message(kind, **fields))

    # ------------------------------------------------------------------ end

    async def end(self, reason: str) -> None:
        """End the session once: free the slot now, stop generation in the background."""
        if self.ended.is_set():
            return
        self.ended.set()
        log.info("webrtc session ended: %s", reason)
        if self.release is not None:
            self.release()
        if self.session is not None:
            self.state.retirer.retire(self.session)
        current = asyncio.current_task()
        for task in list(self.tasks):
            if task is not current:
                task.cancel()
        await self.pc.close()
        self.state.peers.discard(self)


class RtcPeers(set):
    """The live WebRTC sessions of a server (closed at shutdown)."""

    async def offer(self, state, body: object) -> dict:
        sdp, options = parse_offer(body, int(state.limits.max_offer_kb * 1000))
        release = state.slots.acquire()  # Busy when full
        peer = RtcPeer(state, options)
        try:
            answer = await peer.answer(sdp, release)
        except ProtocolError as e:  # unknown source and the like
            raise OfferRefused(str(e)) from None
        self.add(peer)
        return answer

    async def close_all(self) -> None:
        await asyncio.gather(*(peer.end("server shutting down") for peer in list(self)))
