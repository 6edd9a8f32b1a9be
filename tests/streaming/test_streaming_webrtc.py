"""WebRTC through the real server with a real aiortc peer on loopback (issue 18 item 3): the
offer / answer, video + audio down on one peer connection in step, the input audio coming back,
interruption over the data channel, and refused offers (bad input)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import pytest
from server_helpers import TOKEN, auth, running
from streaming_inputs import speech_like

from lipforcing.streaming.server import ServerLimits, create_app

ROOT = Path(__file__).resolve().parents[2]
FRAME_TICKS = 90_000 // 25  # RTP ticks between video frames at 25 fps
MIN_FRAMES = 100  # video frames the stream must deliver (4 s at 25 FPS: the beeps span 0.5-4.6 s)
SHARED_FRAMES = 25  # frames each of two sessions sharing the scheduler must deliver (1 s)
SKEW_S = 0.02  # half a frame: a frame's audio sent a frame early or late is caught
EVENT_TIMEOUT_S = 240.0  # bound on waiting for what a test checks on a starved CPU, seconds


def load_transports():
    """The benchmark's clients: the code that measures is the code that is tested."""
    spec = importlib.util.spec_from_file_location(
        "transports", ROOT / "benchmarks" / "transports.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def transports():
    return load_transports()


@pytest.fixture(scope="module")
def server(pipeline, source):
    from lipforcing.streaming.engine import warmup

    warmup(pipeline, source)
    app = create_app(pipeline, source, token=TOKEN, limits=ServerLimits(max_sessions=1))
    with running(app) as address:
        yield address


def test_webrtc_stream_in_step(server, source, transports):
    import soxr

    audio, onsets = transports.marker_audio(5.0)  # beeps at 0.5, 1.5, ... 4.5 s

    def every_beep_played(partial) -> bool:
        """The event this test checks: each beep came back with the frame that plays it,
        and the server's stats counted the frames (a loaded CPU may take far longer than
        the 10 s of stream; a broken server never gets here and the asserts below fail)."""
        return (
            partial.frames > MIN_FRAMES
            and len(partial.latencies_s) == len(onsets)
            and partial.stats.get("frames_out", 0) > MIN_FRAMES
        )

    result = asyncio.run(
        transports.webrtc_session(
            server,
            audio,
            seconds=10.0,
            token=TOKEN,
            keep_video=True,
            until=every_beep_played,
            max_seconds=EVENT_TIMEOUT_S,
        )
    )
    # video frames of the source's size, stamped a whole number of frames apart (25 FPS grid)
    assert result.frames > MIN_FRAMES, result.stats
    assert result.images[0].shape[:2] == source.frame_size
    steps = np.diff(np.asarray(result.video_pts, np.int64)) % 2**32
    assert np.median(steps) == FRAME_TICKS and (steps % FRAME_TICKS == 0).all()
    assert result.packets_lost == 0, "packets lost on loopback: is the machine overloaded?"
    # the audio that comes back is the input, delayed: every beep, in order, the same waveform;
    # nothing is lost between beeps (a generation stall may add silence, never remove audio)
    back = soxr.resample(result.audio, result.audio_rate, 16_000)
    beeps = transports.beeps_in(back, 16_000)
    heard = [int(b[0]) for b in beeps]
    assert len(heard) == len(onsets), (heard, onsets)
    assert (np.diff(heard) >= np.diff(onsets) - 2).all(), (heard, onsets)
    length = int(transports.BEEP_S * 16_000)
    whole = [(b, sent) for b, sent in zip(beeps, onsets) if b[-1] - b[0] < 1.1 * length]
    assert len(whole) >= 3  # beeps a stall did not split
    for b, sent in whole:  # aligned to the sample (onsets are found by level)
        corr = max(
            np.corrcoef(back[b[0] + d : b[0] + d + length], audio[sent : sent + length])[0, 1]
            for d in range(-20, 21)
        )
        assert corr > 0.9, corr
    # audio and video of the same output time arrive together (within half a frame), as the
    # server sends them: RTP packets on arrival. The decoded tracks' skew (result.av_skew_s)
    # adds the client's jitter buffers (a video frame held until the next one's first packet,
    # audio four packets: ~40 ms, audio later; 95 ms once on a starved CPU), so it says little
    # of the server: a video frame sent a frame late passes there, here it fails.
    skew = statistics.median(abs(s) for s in result.av_skew_packets_s)
    assert skew < SKEW_S, (skew, result.stats)  # the stats say whether generation stalled
    # the server's measured stats came over the data channel
    assert result.stats["type"] == "stats" and result.stats["frames_out"] > MIN_FRAMES
    assert len(result.latencies_s) == len(onsets), (result.latencies_s, result.stats)


def test_webrtc_interruption_silences_pending_speech(server, transports):
    """`clear` on the data channel drops the speech not yet shown: what comes back after it
    is silence, where an uninterrupted run still plays the speech sent before the clear."""
    audio = speech_like(10.0, seed=3)
    runs = {}
    for name, actions in [("interrupted", {3.0: "clear"}), ("control", {})]:
        runs[name] = asyncio.run(
            transports.webrtc_session(server, audio, seconds=8.0, token=TOKEN, actions=actions)
        )

    def speech_after_s(result, seconds: float) -> float:
        """Seconds of speech (loud 20 ms packets) that arrived later than ``seconds``."""
        starts = [s for s, _ in result.audio_arrivals] + [len(result.audio)]
        packets = zip(result.audio_arrivals, starts[1:])
        loud = [
            (stop - start) / result.audio_rate
            for (start, now), stop in packets
            if now - result.started > seconds and np.abs(result.audio[start:stop]).max() > 0.02
        ]
        return sum(loud)

    # Without the clear the speech goes on; with it, pending speech is dropped and only the
    # input audio already on its way when the clear was sent (~0.1-0.3 s: the server's jitter
    # buffer) is still played, one latency later. Then silence (idle frames: closed mouth).
    assert speech_after_s(runs["control"], 3.2) > 0.8  # speech_like: half its time is loud
    assert speech_after_s(runs["interrupted"], 3.2) < 0.4
    assert runs["interrupted"].audio_arrivals[-1][1] - runs["interrupted"].started > 7.0
    assert runs["interrupted"].stats["dropped_frames"] > 0


def test_webrtc_and_websocket_sessions_share_the_scheduler(pipeline, source, transports):
    """A WebRTC session and a WebSocket session at once run on the server's one scheduler
    (what `serve --max-sessions` batches), both streaming."""
    import threading

    app = create_app(pipeline, source, limits=ServerLimits(max_sessions=2))
    scheduler = app.app.state.server.scheduler
    attached, done = [], threading.Event()

    def watch() -> None:
        while not done.wait(0.05):
            attached.append(scheduler.sessions)

    def streamed(partial) -> bool:  # a second of frames (a loaded CPU may need far longer)
        return partial.frames > SHARED_FRAMES

    async def both(address):
        audio = speech_like(6.0, seed=4)
        wait = {"seconds": 6.0, "until": streamed, "max_seconds": EVENT_TIMEOUT_S}
        return await asyncio.gather(
            transports.webrtc_session(address, audio, **wait),
            transports.websocket_session(address, audio, **wait),
        )

    watcher = threading.Thread(target=watch, daemon=True)
    with running(app) as address:
        watcher.start()
        rtc, ws = asyncio.run(both(address))
        done.set()
    watcher.join()
    assert rtc.frames > SHARED_FRAMES and ws.frames > SHARED_FRAMES, (rtc.frames, ws.frames)
    assert max(attached) == 2  # both sessions on the one scheduler at the same time


def test_bad_offers_are_refused(server, pipeline, source):
    import httpx

    from lipforcing.streaming.server.webrtc import parse_offer  # noqa: F401 (importable)

    url = f"http://{server}/offer"
    cases = [
        (b"not json", "must be JSON"),
        (b"[" * 20_000 + b"]" * 20_000, "must be JSON"),  # nested too deeply for the parser
        (json.dumps({"sdp": "v=0", "type": "answer"}).encode(), '"type": "offer"'),
        (json.dumps({"type": "offer"}).encode(), "SDP as a string"),
        (json.dumps({"sdp": "garbage\r\n", "type": "offer"}).encode(), "malformed offer"),
        (json.dumps({"sdp": "v=0\r\n", "type": "offer", "seed": True}).encode(), "seed must"),
        (json.dumps({"sdp": "x" * 70_000, "type": "offer"}).encode(), "over 64 kB"),
    ]
    for body, words in cases:
        reply = httpx.post(url, content=body, headers=auth())
        assert reply.status_code == 400 and words in reply.json()["error"], (words, reply.text)
    assert httpx.post(url, content=b"{}").status_code == 401
    sdp = asyncio.run(client_offer(audio=True, video=True, codec="ISAC/16000"))
    reply = httpx.post(url, json={"sdp": sdp, "type": "offer"}, headers=auth())
    assert reply.status_code == 400 and "no common codec" in reply.json()["error"]
    sdp = asyncio.run(client_offer(audio=False, video=True))
    reply = httpx.post(url, json={"sdp": sdp, "type": "offer"}, headers=auth())
    assert reply.status_code == 400 and "must send an audio track" in reply.json()["error"]
    sdp = asyncio.run(client_offer(audio=True, video=True))
    reply = httpx.post(url, json={"sdp": sdp, "type": "offer", "source": "nope"}, headers=auth())
    assert reply.status_code == 400 and "unknown source" in reply.json()["error"]
    # a good offer whose peer never connects: the slot comes back when the server gives up
    reply = httpx.post(url, json={"sdp": sdp, "type": "offer"}, headers=auth())
    assert reply.status_code == 200 and reply.json()["type"] == "answer"
    busy = httpx.post(url, json={"sdp": sdp, "type": "offer"}, headers=auth())
    assert busy.status_code == 503 and "busy" in busy.json()["error"]


async def client_offer(audio: bool, video: bool, codec: str | None = None) -> str:
    """An offer from a real aiortc peer (optionally rewritten to offer only ``codec`` audio)."""
    from aiortc import RTCConfiguration, RTCPeerConnection
    from aiortc.mediastreams import AudioStreamTrack

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    if audio:
        pc.addTrack(AudioStreamTrack())
    if video:
        pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    if codec is not None:  # offer only an audio codec the server does not speak
        lines, out, audio_section = sdp.split("\r\n"), [], False
        for line in lines:
            if line.startswith("m="):
                audio_section = line.startswith("m=audio")
                if audio_section:
                    out += [" ".join(line.split()[:3] + ["103"]), f"a=rtpmap:103 {codec}"]
                    continue
            if audio_section and line.startswith(("a=rtpmap:", "a=fmtp:", "a=rtcp-fb:")):
                continue
            out.append(line)
        sdp = "\r\n".join(out)
    return sdp
