"""WebRTC vs WebSocket on loopback: bitrate down, audio-in -> frame-out latency, FPS, A/V skew.

Starts ``lipforcing serve``'s application in this process (uvicorn on 127.0.0.1, the built-in
tiny student, or random weights with ``--random``) and streams the same input to it over each
transport, in real time, alternating, ``--runs`` times each:

- input: ``--seconds`` of near-silence with a 1 kHz beep every second (onsets known to the
  sample), sent as a client would: 20 ms of 16 kHz audio at a time, paced by the clock (the
  WebRTC client is a real aiortc peer sending Opus; the WebSocket client sends int16 PCM);
- latency: for each beep, from the moment the client sent its first sample to the moment the
  client received the video frame that plays it (the frame index comes from the beep's position
  in the returned audio: the server returns the input audio with the frames). This is
  glass-to-glass without capture and display; medians over beeps and runs;
- bitrate down: WebSocket, bytes of the messages received; WebRTC, bytes the ICE transport
  received (SRTP, RTCP and SCTP included), per second of stream;
- FPS: frames received per second; A/V skew (WebRTC): for each video frame, its arrival minus
  the arrival of the audio packet that starts at the same output time (RTP timestamps relative
  to each stream's first packet). Measured twice: on the decoded frames (what the client's
  tracks hand out, after aiortc's jitter buffers: they hold a video frame until the next one's
  first packet and audio four packets, ~-40 ms of skew that is the client's, not the server's)
  and on the RTP packets as they arrive, before those buffers (what the server sends).

    python benchmarks/transports.py [--random] [--seconds 12] [--runs 3] [--out results.json]

The test suite imports :func:`webrtc_session` / :func:`websocket_session` (one client code,
tested and benchmarked).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import fractions
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

RATE = 16_000  # input sample rate, Hz
PIECE_S = 0.02  # audio sent at a time, seconds
BEEP_HZ, BEEP_S, BEEP_LEVEL = 1000.0, 0.06, 0.5  # the latency markers
MARKER_PERIOD_S = 1.0  # one beep per second
ONSET_LEVEL = 0.15  # |sample| above this starts a beep in the returned audio
BEEP_LOUD_SHARE = 0.4  # a beep has at least this share of its samples above ONSET_LEVEL
FPS = 25.0
VIDEO_CLOCK = 90_000  # RTP clock of video, Hz
CONNECT_TIMEOUT_S = 60.0  # the WebRTC peer must connect within this, seconds
UNTIL_PERIOD_S = 0.25  # how often a session's ``until`` event is checked, seconds


def marker_audio(seconds: float, first_s: float = 0.5) -> tuple[np.ndarray, list[int]]:
    """Near-silence with a beep every ``MARKER_PERIOD_S``; returns (audio, onset samples)."""
    n = int(seconds * RATE)
    audio = (1e-3 * np.random.default_rng(0).standard_normal(n)).astype(np.float32)
    onsets = []
    t = np.arange(int(BEEP_S * RATE)) / RATE
    beep = (BEEP_LEVEL * np.sin(2 * np.pi * BEEP_HZ * t)).astype(np.float32)
    at = first_s
    while at + BEEP_S < seconds:
        start = int(at * RATE)
        audio[start : start + len(beep)] += beep
        onsets.append(start)
        at += MARKER_PERIOD_S
    return audio, onsets


def beeps_in(audio: np.ndarray, rate: int) -> list[np.ndarray]:
    """The beeps in ``audio`` (float mono), each as the sample positions it is loud at.

    Loud stretches are gathered in order into one beep while together they are no longer
    than one beep and lie within half a marker period, so a beep that comes back split by
    inserted silence (a generation stall) still counts as one beep and its pieces never join
    a neighbour; a group counts as a beep when at least ``BEEP_LOUD_SHARE`` of a beep's
    samples are loud.
    """
    loud = np.flatnonzero(np.abs(audio) > ONSET_LEVEL)
    runs = np.split(loud, np.flatnonzero(np.diff(loud) > rate // BEEP_HZ * 2) + 1)
    length, span = int(BEEP_S * rate), int(MARKER_PERIOD_S * rate / 2)
    groups, current = [], []
    for run in (r for r in runs if len(r)):
        full = sum(map(len, current)) + len(run) > length
        if current and (full or run[-1] - current[0][0] > span):
            groups.append(np.concatenate(current))
            current = []
        current.append(run)
    if current:
        groups.append(np.concatenate(current))
    return [g for g in groups if len(g) >= BEEP_LOUD_SHARE * length]


def onsets_in(audio: np.ndarray, rate: int) -> list[int]:
    """Sample positions where a beep starts in ``audio`` (float mono)."""
    return [int(b[0]) for b in beeps_in(audio, rate)]


@dataclass
class Result:
    """What one client measured over one session."""

    transport: str
    seconds: float  # stream time covered, s
    frames: int  # video frames received
    fps: float  # frames received per second of stream
    kbps: float  # kilobits per second received
    latencies_s: list[float] = field(default_factory=list)  # per beep
    av_skew_s: list[float] = field(default_factory=list)  # per decoded video frame (WebRTC)
    av_skew_packets_s: list[float] = field(default_factory=list)  # per frame, RTP packets
    stats: dict = field(default_factory=dict)  # the server's last stats message
    audio: np.ndarray | None = None  # returned audio, float mono at audio_rate
    audio_rate: int = RATE
    messages: list = field(default_factory=list)  # control messages received
    images: list = field(default_factory=list)  # received video frames (when kept)
    started: float = 0.0  # perf_counter time the stream started (connected / ready)
    audio_arrivals: list = field(default_factory=list)  # (output sample, arrival) per packet
    video_pts: list = field(default_factory=list)  # RTP timestamps of the video frames
    packets_lost: int = 0  # RTP packets the client never received (WebRTC)

    def summary(self) -> dict:
        skip = ("audio", "messages", "images", "audio_arrivals", "video_pts")
        d = {k: v for k, v in asdict(self).items() if k not in skip}
        d["latency_median_s"] = _median(self.latencies_s)
        d["av_skew_median_s"] = _median([abs(s) for s in self.av_skew_s])
        d["av_skew_max_s"] = max((abs(s) for s in self.av_skew_s), default=None)
        d["av_skew_packets_median_s"] = _median([abs(s) for s in self.av_skew_packets_s])
        del d["latencies_s"], d["av_skew_s"], d["av_skew_packets_s"]
        return d


def _median(values):
    return statistics.median(values) if values else None


# ---------------------------------------------------------------------- sending


class Sender:
    """Paced input: ``next_piece()`` returns the next 20 ms and records when it was sent."""

    def __init__(self, audio: np.ndarray) -> None:
        self.audio, self.position, self.sent_at = audio, 0, {}
        self.muted = False

    def next_piece(self) -> np.ndarray:
        n = int(PIECE_S * RATE)
        piece = self.audio[self.position : self.position + n]
        if self.muted or len(piece) < n:
            piece = np.zeros(n, np.float32)  # after the input (or muted): the line stays open
        self.sent_at[self.position] = time.perf_counter()
        self.position += n
        return piece

    def send_time(self, sample: int) -> float:
        n = int(PIECE_S * RATE)
        start = sample - sample % n
        return self.sent_at[start] + (sample - start) / RATE


def latencies(sender: Sender, onsets_out: list[int], arrival_of_sample) -> list[float]:
    """Per input beep: arrival of the frame playing it minus the send time of its onset."""
    sent = [s for s in onsets_in(sender.audio, RATE) if s < sender.position]
    out = []
    for onset, got in zip(sent, onsets_out):  # in order: the server keeps the input's order
        arrival = arrival_of_sample(got)
        if arrival is not None:
            out.append(arrival - sender.send_time(onset))
    return out


# ---------------------------------------------------------------------- WebSocket


async def websocket_session(
    address: str,
    audio: np.ndarray,
    *,
    seconds: float,
    token: str | None = None,
    source="default",
    until: Callable[[Result], bool] | None = None,
    max_seconds: float | None = None,
) -> Result:
    """Stream ``audio`` (then silence) for ``seconds`` over the WebSocket; measure.

    ``until`` / ``max_seconds``: as for :func:`webrtc_session`."""
    import websockets

    from lipforcing.streaming.server.protocol import decode_frame, pcm16

    sender = Sender(audio)
    got = _WsReceived()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with websockets.connect(
        f"ws://{address}/ws", additional_headers=headers, max_size=2**24
    ) as ws:
        await ws.send(json.dumps({"type": "start", "source": source, "sample_rate": RATE}))
        ready = json.loads(await ws.recv())
        assert ready["type"] == "ready", ready
        stop = asyncio.Event()

        async def send() -> None:
            t0 = time.perf_counter()
            k = 0
            while not stop.is_set():
                await ws.send(pcm16(sender.next_piece()))
                k += 1
                await asyncio.sleep(max(0.0, t0 + k * PIECE_S - time.perf_counter()))

        async def receive() -> None:
            async for msg in ws:
                got.received += len(msg)
                if isinstance(msg, bytes):
                    header, pcm, _ = decode_frame(msg)
                    got.arrivals.append(time.perf_counter())
                    got.chunks.append(pcm.astype(np.float32) / 32768)
                else:
                    got.texts.append(json.loads(msg))

        task = asyncio.create_task(receive())
        start = time.perf_counter()
        sending = asyncio.create_task(send())
        await asyncio.wait({sending}, timeout=seconds)  # over early only if sending failed
        if not sending.done():
            await _wait_for(until, lambda: got.result(sender, start), start, max_seconds or seconds)
        stop.set()
        await sending
        duration = time.perf_counter() - start
        await ws.close()
        await asyncio.gather(task, return_exceptions=True)
    return got.result(sender, start, duration)


@dataclass
class _WsReceived:
    """What a WebSocket client received so far."""

    arrivals: list = field(default_factory=list)  # perf_counter time of each frame
    chunks: list = field(default_factory=list)  # each frame's audio, float mono
    texts: list = field(default_factory=list)  # control messages
    received: int = 0  # bytes

    def result(self, sender: Sender, start: float, duration: float | None = None) -> Result:
        duration = time.perf_counter() - start if duration is None else duration
        out = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.float32)
        spf = int(RATE / FPS)
        arrivals = list(self.arrivals)

        def arrival(sample: int):
            k = sample // spf
            return arrivals[k] if k < len(arrivals) else None

        stats = next((t for t in reversed(self.texts) if t["type"] == "stats"), {})
        return Result(
            transport="websocket",
            started=start,
            seconds=duration,
            frames=len(arrivals),
            fps=len(arrivals) / duration,
            kbps=8 * self.received / duration / 1000,
            latencies_s=latencies(sender, onsets_in(out, RATE), arrival),
            stats=stats,
            audio=out,
            messages=list(self.texts),
        )


async def _wait_for(until, partial, start: float, max_seconds: float) -> None:
    """With ``until`` (a test's event): wait until it holds for ``partial()`` (the result so
    far), checked every ``UNTIL_PERIOD_S``, or until ``max_seconds`` after ``start``."""
    if until is None:
        return
    while time.perf_counter() - start < max_seconds and not until(partial()):
        await asyncio.sleep(UNTIL_PERIOD_S)


# ---------------------------------------------------------------------- WebRTC


def _paced_track(sender: Sender):
    from aiortc import MediaStreamTrack

    class PacedTrack(MediaStreamTrack):
        kind = "audio"

        def __init__(self) -> None:
            super().__init__()
            self.t0, self.k = None, 0

        async def recv(self):
            import av

            from lipforcing.streaming.server.protocol import pcm16

            if self.t0 is None:
                self.t0 = time.perf_counter()
            await asyncio.sleep(max(0.0, self.t0 + self.k * PIECE_S - time.perf_counter()))
            pcm = np.frombuffer(pcm16(sender.next_piece()), "<i2")[None]
            frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
            frame.sample_rate, frame.pts = RATE, self.k * int(PIECE_S * RATE)
            frame.time_base = fractions.Fraction(1, RATE)
            self.k += 1
            return frame

    return PacedTrack()


async def webrtc_session(
    address: str,
    audio: np.ndarray,
    *,
    seconds: float,
    token: str | None = None,
    source: str = "default",
    actions: dict[float, str] | None = None,
    keep_video: bool = False,
    until: Callable[[Result], bool] | None = None,
    max_seconds: float | None = None,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
) -> Result:
    """Stream ``audio`` (then silence) for ``seconds`` over WebRTC; measure.

    ``actions`` maps seconds after connecting to a control message type sent on the data
    channel then (``"clear"`` also mutes the input, as an interrupted speaker stops).
    ``until`` (a test's event): after ``seconds``, keep streaming until it holds for what
    was received so far, or ``max_seconds`` (default ``seconds``) passed; the benchmark
    streams exactly ``seconds``. RuntimeError when the peer does not connect within
    ``connect_timeout_s``.
    """
    import httpx
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import MediaStreamError

    from lipforcing.streaming.server.webrtc import mono_samples

    sender = Sender(audio)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    channel = pc.createDataChannel("control")
    messages: list = []
    channel.on("message", lambda m: messages.append(json.loads(m)))
    pc.addTrack(_paced_track(sender))
    pc.addTransceiver("video", direction="recvonly")
    packets = _record_packets(pc)
    video, sound, images = [], [], []

    async def take(track, into) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            now = time.perf_counter()
            if track.kind == "video":
                into.append((now, frame.pts))
                if keep_video:
                    images.append(frame.to_ndarray(format="rgb24"))
            else:
                into.append((now, frame.pts, frame.sample_rate, mono_samples(frame)))

    tasks = []
    pc.on(
        "track",
        lambda t: tasks.append(
            asyncio.ensure_future(take(t, video if t.kind == "video" else sound))
        ),
    )
    await pc.setLocalDescription(await pc.createOffer())
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = {"sdp": pc.localDescription.sdp, "type": "offer", "source": source}
    async with httpx.AsyncClient() as http:
        reply = await http.post(f"http://{address}/offer", json=body, headers=headers, timeout=60)
    if reply.status_code != 200:
        await pc.close()
        raise RuntimeError(f"offer refused ({reply.status_code}): {reply.text}")
    await pc.setRemoteDescription(RTCSessionDescription(**reply.json()))
    try:
        await asyncio.wait_for(_connected(pc), connect_timeout_s)
    except TimeoutError:
        await pc.close()
        raise RuntimeError(f"the peer did not connect within {connect_timeout_s:g} s") from None
    start = time.perf_counter()
    await _play_actions(channel, sender, actions or {}, start, seconds)

    def partial() -> Result:
        elapsed = time.perf_counter() - start
        return _rtc_result(sender, video, sound, messages, elapsed, 0, packets)

    await _wait_for(until, partial, start, max_seconds or seconds)
    duration = time.perf_counter() - start
    report = await pc.getStats()
    transport_bytes = _transport_bytes(report)
    lost = sum(getattr(r, "packetsLost", 0) for r in report.values() if r.type == "inbound-rtp")
    await pc.close()
    for task in tasks:
        task.cancel()
    result = _rtc_result(sender, video, sound, messages, duration, transport_bytes, packets)
    result.images, result.started, result.packets_lost = images, start, lost
    return result


async def _play_actions(channel, sender, actions: dict, start: float, seconds: float) -> None:
    """Send each of ``actions`` (seconds after ``start`` -> type) on the data channel in
    time, until ``seconds`` passed."""
    pending = sorted(actions.items())
    while time.perf_counter() - start < seconds:
        if pending and time.perf_counter() - start >= pending[0][0]:
            kind = pending.pop(0)[1]
            sender.muted = sender.muted or kind == "clear"
            channel.send(json.dumps({"type": kind}))
        await asyncio.sleep(0.01)


async def _connected(pc) -> None:
    while pc.connectionState != "connected":
        await asyncio.sleep(0.01)


def _record_packets(pc) -> dict[str, list]:
    """(RTP timestamp, arrival) of every packet each receiver of ``pc`` takes, per kind, as it
    arrives: before the receiver's jitter buffer and decoder (aiortc's per-packet entry point,
    ``RTCRtpReceiver._handle_rtp_packet``; the test extra pins aiortc)."""
    packets: dict[str, list] = {"audio": [], "video": []}
    for transceiver in pc.getTransceivers():
        receiver, into = transceiver.receiver, packets[transceiver.kind]
        handle = receiver._handle_rtp_packet

        async def record(packet, arrival_time_ms, handle=handle, into=into):
            into.append((packet.timestamp, time.perf_counter()))
            await handle(packet, arrival_time_ms=arrival_time_ms)

        receiver._handle_rtp_packet = record
    return packets


def _packet_skew(packets: dict[str, list], rate: int) -> list[float]:
    """Per video frame: the arrival of its first RTP packet minus that of the first audio
    packet at or after the same media time (timestamps relative to each stream's first)."""
    first: dict[str, dict] = {kind: {} for kind in packets}
    for kind, got in packets.items():
        for timestamp, now in got:
            first[kind].setdefault(timestamp, now)
    video, audio = first["video"], first["audio"]
    if not video or not audio:
        return []
    v0, a0 = next(iter(video)), next(iter(audio))
    starts = sorted(((ts - a0) % 2**32, now) for ts, now in audio.items())
    samples = [start for start, _ in starts]
    skew = []
    for timestamp, now in video.items():
        frame = round(((timestamp - v0) % 2**32) / (VIDEO_CLOCK / FPS))
        k = bisect.bisect_left(samples, frame * rate / FPS)
        if k < len(samples):
            skew.append(now - starts[k][1])
    return skew


def _transport_bytes(report) -> int:
    return sum(getattr(s, "bytesReceived", 0) for s in report.values() if s.type == "transport")


def _rtc_result(sender, video, sound, messages, duration, transport_bytes, packets) -> Result:
    rate = sound[0][2] if sound else 48_000
    spf = rate / FPS
    audio = np.concatenate([s[3] for s in sound]) if sound else np.zeros(0, np.float32)
    a0 = sound[0][1] if sound else 0
    # RTP timestamps relative to each stream's first packet: output time on both streams
    audio_starts = [((pts - a0) % 2**32, now) for now, pts, _, _ in sound]  # (sample, arrival)
    v0 = video[0][1] if video else 0
    video_at = {round(((pts - v0) % 2**32) / (VIDEO_CLOCK / FPS)): now for now, pts in video}

    def audio_arrival(sample: int):
        for start, now in audio_starts:
            if start >= sample:
                return now
        return None

    def frame_arrival(sample: int):
        return video_at.get(int(sample // spf))

    skew = []
    for n, now in video_at.items():
        heard = audio_arrival(n * spf)
        if heard is not None:
            skew.append(now - heard)
    stats = next((m for m in reversed(messages) if m.get("type") == "stats"), {})
    return Result(
        transport="webrtc",
        seconds=duration,
        frames=len(video),
        fps=len(video) / duration,
        kbps=8 * transport_bytes / duration / 1000,
        latencies_s=latencies(sender, onsets_in(audio, rate), frame_arrival),
        av_skew_s=skew,
        av_skew_packets_s=_packet_skew(packets, rate),
        stats=stats,
        audio=audio,
        audio_rate=rate,
        messages=messages,
        audio_arrivals=audio_starts,
        video_pts=[pts for _, pts in video],
    )


# ---------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--random", action="store_true", help="random tiny weights")
    ap.add_argument("--seconds", type=float, default=12.0, help="stream length per run, s")
    ap.add_argument("--runs", type=int, default=3, help="runs per transport (alternating)")
    ap.add_argument("--out", help="write the per-run summaries here (JSON)")
    args = ap.parse_args()

    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "streaming"))
    from server_helpers import running

    from lipforcing.config import tiny
    from lipforcing.streaming.builtin import builtin_sample
    from lipforcing.streaming.engine import warmup
    from lipforcing.streaming.pipeline import Pipeline, shipped_asset
    from lipforcing.streaming.server import ServerLimits, create_app

    ckpt = None if args.random else shipped_asset("student.safetensors")
    pipeline = Pipeline.load(ckpt) if ckpt else Pipeline.random(tiny())
    sample = builtin_sample(pipeline.preset)
    warmup(pipeline, sample.source)
    app = create_app(pipeline, sample.source, limits=ServerLimits(max_sessions=1))
    audio, _ = marker_audio(args.seconds)
    runs = []
    with running(app) as address:
        for _ in range(args.runs):
            for fn in (webrtc_session, websocket_session):
                result = asyncio.run(fn(address, audio, seconds=args.seconds))
                runs.append(result.summary())
                print(json.dumps(runs[-1]), flush=True)
                time.sleep(1.0)  # the previous session's slot and thread are gone
    table = {}
    for name in ("webrtc", "websocket"):
        mine = [r for r in runs if r["transport"] == name]
        table[name] = {
            k: _median([r[k] for r in mine if r[k] is not None])
            for k in (
                "kbps",
                "fps",
                "latency_median_s",
                "av_skew_median_s",
                "av_skew_max_s",
                "av_skew_packets_median_s",
            )
        }
    print(json.dumps({"checkpoint": pipeline.checkpoint, "medians": table}, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps({"runs": runs, "medians": table}, indent=1))


if __name__ == "__main__":
    main()
