"""The per-session options ``face`` and ``silence_gate`` through the real server (issue 19
what-to-build 2 and 3): a session's frames equal the offline path that ``lipforcing sync`` runs
with the same ``--face`` / ``--no-silence-gate``; bad values are refused with one message.

Frames come back as JPEG (quality 95); the oracle is the offline frame coded by the same
encoder call, byte for byte (so any pixel off fails).
"""

from __future__ import annotations

import json
import logging

import cv2
import numpy as np
import pytest
from server_helpers import closed_with, pcm_bytes, running
from streaming_inputs import speech_like

from lipforcing.config import tiny
from lipforcing.media.faces import parse_face
from lipforcing.media.io import write_video
from lipforcing.media.probe import MediaBudget
from lipforcing.media.synthtalk.clip import render_clip
from lipforcing.media.vad import SilenceGateConfig
from lipforcing.streaming.offline import lipsync_offline
from lipforcing.streaming.server import ServerLimits, create_app, decode_frame
from lipforcing.streaming.server.protocol import ProtocolError, SessionOptions
from lipforcing.streaming.source import Source

MEDIA = tiny().media
QUALITY = 95
LEFT, RIGHT = (0, 200), (200, 360)  # x spans of the two faces


@pytest.fixture(scope="module")
def two_faces(tmp_path_factory):
    """A 0.6 s mp4 of two SynthTalk faces: a large one on the left, a smaller one right of
    it that is nearer the frame's centre (x = 220)."""
    left = render_clip(1, 0.6, size=200).frames
    right = render_clip(2, 0.6, size=160).frames
    canvas = np.zeros((len(left), 220, 440, 3), np.uint8)
    canvas[:, 10:210, 0:200] = left
    canvas[:, 30:190, 200:360] = right
    path = tmp_path_factory.mktemp("two") / "two.mp4"
    write_video(path, canvas, 25)
    return path


@pytest.fixture(scope="module")
def server(pipeline, two_faces):
    """`serve --video two.mp4`: the default source tracked with the largest face."""
    default = Source.from_file(two_faces, MEDIA)
    with running(create_app(pipeline, default, limits=ServerLimits())) as address:
        yield address


def stream(address: str, audio: np.ndarray, **options) -> tuple[dict, list[bytes]]:
    """One non-realtime WebSocket session: (ready message, the JPEG of every frame)."""
    from websockets.sync.client import connect

    start = {"type": "start", "realtime": False, "quality": QUALITY, **options}
    jpegs = []
    with connect(f"ws://{address}/ws", max_size=2**24) as ws:
        ws.send(json.dumps(start))
        ready = json.loads(ws.recv(timeout=120))
        assert ready["type"] == "ready", ready
        ws.send(pcm_bytes(audio))
        ws.send(json.dumps({"type": "close"}))
        while True:
            msg = ws.recv(timeout=120)
            if isinstance(msg, bytes):
                jpegs.append(decode_frame(msg)[2])
            elif json.loads(msg)["type"] == "done":
                return ready, jpegs


def coded(frames: np.ndarray) -> list[bytes]:
    """Frames as the server codes them (protocol.encode_frame's JPEG call)."""
    params = [int(cv2.IMWRITE_JPEG_QUALITY), QUALITY]
    return [cv2.imencode(".jpg", f[:, :, ::-1], params)[1].tobytes() for f in frames]


def same_frames(jpegs: list[bytes], offline) -> bool:
    expected = coded(offline.frames)
    return len(jpegs) >= len(expected) and jpegs[: len(expected)] == expected


def changed_columns(offline, source: Source) -> np.ndarray:
    """Frame x where the output differs from the source frames (where the mouth was driven)."""
    differ = offline.frames != np.asarray(source.frames)[offline.source_index]
    return np.flatnonzero(np.any(differ, axis=(0, 1, 3)))


@pytest.mark.parametrize("face, span", [("1", RIGHT), ("center", RIGHT)])
def test_a_sessions_face_equals_sync_with_that_face(server, pipeline, two_faces, face, span):
    audio = speech_like(0.6, seed=5)
    ready, jpegs = stream(server, audio, face=face)
    cli = Source.from_file(two_faces, MEDIA, face=parse_face(face))  # what sync --face reads
    offline = lipsync_offline(pipeline, cli, audio)
    assert ready["face"] == cli.face and ready["silence_gate"] is True
    assert same_frames(jpegs, offline)
    xs = changed_columns(offline, cli)
    assert len(xs) and span[0] <= xs.min() and xs.max() < span[1]  # the right face moved
    _, default = stream(server, audio)  # no face option: the face the source was tracked with
    largest = lipsync_offline(pipeline, Source.from_file(two_faces, MEDIA), audio)
    assert same_frames(default, largest) and not same_frames(default, offline)


def test_an_uploads_face_is_tracked_again_over_its_stored_frames(server, pipeline, two_faces):
    import httpx

    reply = httpx.post(
        f"http://{server}/api/sources", params={"name": "two.mp4"},
        content=two_faces.read_bytes(), timeout=120,
    )  # fmt: skip
    body = reply.json()
    assert reply.status_code == 200 and (body["face"], body["faces"]) == ("largest", 2)
    assert body["face_choice"] is True
    audio = speech_like(0.6, seed=6)
    ready, jpegs = stream(server, audio, source=body["source"], face="1")
    assert ready["face"] == "index 1 from the left"
    # the oracle: the upload as the server stores it, its decoded frames tracked as a file's
    upload = Source.from_upload(two_faces, MEDIA, budget=MediaBudget(), name="two.mp4")
    stored = Source.from_frames(np.asarray(upload.frames), MEDIA, face=1)
    offline = lipsync_offline(pipeline, stored, audio)
    assert same_frames(jpegs, offline)
    xs = changed_columns(offline, stored)
    assert len(xs) and RIGHT[0] <= xs.min()


def test_the_silence_gate_option_is_the_engines_gate(pipeline, source):
    """Room noise under the gate's floor: gated, the session equals the gated offline run;
    ungated, the ungated one; and the two differ."""
    rng = np.random.default_rng(0)
    hum = 10 ** (-70 / 20) * rng.standard_normal(int(0.84 * 16_000))
    hum = (np.round(hum * 32767) / 32767).astype(np.float32)  # what int16 PCM carries
    with running(create_app(pipeline, source)) as address:
        ready_on, on = stream(address, hum)
        ready_off, off = stream(address, hum, silence_gate=False)
    gated = lipsync_offline(pipeline, source, hum)
    ungated = lipsync_offline(pipeline, source, hum, silence_gate=SilenceGateConfig(enabled=False))
    assert (ready_on["silence_gate"], ready_off["silence_gate"]) == (True, False)
    assert same_frames(on, gated) and same_frames(off, ungated)
    assert not np.array_equal(gated.frames, ungated.frames)  # the oracle can fail


@pytest.mark.parametrize(
    "bad, words",
    [({"face": "middle"}, "face must be"), ({"face": 1}, "face must be a string"),
     ({"face": "-1"}, "face must be"), ({"face": "1,2,3"}, "face must be"),
     ({"silence_gate": "yes"}, "silence_gate must be"), ({"silence_gate": 0}, "silence_gate must")],
)  # fmt: skip
def test_bad_options_are_refused(bad, words):
    with pytest.raises(ProtocolError, match=words) as refused:
        SessionOptions.parse({"type": "start", **bad}, ignore=("type",))
    assert refused.value.fatal


def test_bad_faces_close_the_session_with_one_message(server, pipeline, source, caplog):
    from websockets.sync.client import connect

    caplog.set_level(logging.INFO, logger="lipforcing.streaming.server")
    cases = [
        (server, {"face": "middle"}, "face must be"),
        (server, {"silence_gate": "off"}, "silence_gate must be"),
        (server, {"face": "5"}, "no face matches face 'index 5 from the left'"),
    ]
    with running(create_app(pipeline, source)) as known:  # a source with known landmarks
        cases.append((known, {"face": "1"}, "no other face to choose"))
        for address, bad, words in cases:
            with connect(f"ws://{address}/ws") as ws:
                ws.send(json.dumps({"type": "start", **bad}))
                code, error = closed_with(ws, timeout=120)
            assert code == 1008 and words in error["message"] and error["ended"], (bad, error)
            assert any(words in r.getMessage() for r in caplog.records), words  # logged


def test_a_webrtc_offer_opens_its_session_with_those_options(pipeline, two_faces):
    """The offer body's face and silence_gate reach the session the answer belongs to (VP8
    video is lossy, so the frames themselves are compared on the WebSocket above)."""
    import asyncio

    import httpx
    from test_streaming_webrtc import client_offer

    app = create_app(pipeline, Source.from_file(two_faces, MEDIA))
    state = app.app.state.server  # inside the Host / Origin guard
    sdp = asyncio.run(client_offer(audio=True, video=True))
    with running(app) as address:
        body = {"sdp": sdp, "type": "offer", "face": "1", "silence_gate": False}
        reply = httpx.post(f"http://{address}/offer", json=body, timeout=120)
        assert reply.status_code == 200 and reply.json()["type"] == "answer", reply.text
        (peer,) = state.peers  # the peer never connects: it ends at the server's shutdown
        stream = peer.session.stream
        assert stream.source.face == "index 1 from the left" and not stream.silence_gate.enabled
        assert peer.stats()["face"] == "index 1 from the left"  # what its stats will say


def test_offers_take_and_check_the_same_options(server):
    import asyncio

    import httpx
    from test_streaming_webrtc import client_offer

    url = f"http://{server}/offer"
    sdp = asyncio.run(client_offer(audio=True, video=True))
    for extra, words in [({"face": "middle"}, "face must be"),
                         ({"silence_gate": "no"}, "silence_gate must be"),
                         ({"face": "5"}, "no face matches")]:  # fmt: skip
        reply = httpx.post(url, json={"sdp": sdp, "type": "offer", **extra}, timeout=120)
        assert reply.status_code == 400 and words in reply.json()["error"], reply.text


def test_tracks_of_other_faces_are_kept_with_their_source_and_leave_with_it(source):
    import dataclasses

    from lipforcing.streaming.server.sources import MAX_FACE_TRACKS, SourceStore

    store = SourceStore(source, ServerLimits(max_sources=1))
    sid = store.add(dataclasses.replace(source, name="upload"))
    assert store.tracked(sid, "largest") is store[sid]  # its own face: the stored source
    other = [dataclasses.replace(source, face=f"index {i} from the left") for i in range(5)]
    for s in other:
        assert store.keep_tracked(sid, s) is s
    assert store.tracked(sid, "index 4 from the left") is other[4]
    assert store.tracked(sid, "index 0 from the left") is None  # the oldest dropped
    assert len(store.faces[sid]) == MAX_FACE_TRACKS
    store.add(dataclasses.replace(source, name="next"))  # evicts the first upload
    assert sid not in store.faces and store.tracked(sid, "index 4 from the left") is None
    store.keep_tracked(sid, other[0])  # a tracking that ends after its source left
    assert sid not in store.faces


def test_a_face_tracking_takes_an_upload_workers_place(two_faces):
    import asyncio

    from lipforcing.streaming.server.sources import UploadRefused, UploadWorkers

    workers = UploadWorkers(ServerLimits(max_uploads=1), MEDIA)
    raw = Source.from_file(two_faces, MEDIA)
    try:
        workers.busy = 1  # an upload is being decoded
        with pytest.raises(UploadRefused, match="try again") as refused:
            asyncio.run(workers.with_face(raw, 1))
        assert refused.value.status == 429
        workers.busy = 0
        tracked = asyncio.run(workers.with_face(raw, 1))
        assert workers.busy == 0 and tracked.face == "index 1 from the left"
        assert tracked.frames is raw.frames  # the frames are shared, not copied
        np.testing.assert_array_equal(
            tracked.transforms, Source.from_file(two_faces, MEDIA, face=1).transforms
        )
    finally:
        workers.close()
