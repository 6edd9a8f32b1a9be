"""The server over a real WebSocket on 127.0.0.1: stats, limits, tokens, malformed messages."""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
import time

import cv2
import numpy as np
import pytest
from streaming_inputs import speech_like

from lipforcing.errors import UserError
from lipforcing.streaming.server import ServerLimits, check_bind, create_app, decode_frame

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def server(pipeline, source):
    import uvicorn

    # as if loaded from a file: /api/info must not reveal where
    pipeline = dataclasses.replace(pipeline, checkpoint="/srv/private/student.safetensors")
    limits = ServerLimits(max_upload_mb=0.05, max_sessions=1, idle_timeout_s=20)
    app = create_app(pipeline, source, token=TOKEN, limits=limits, sample_audio=speech_like(1.0))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    yield f"127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


def receive_until_done(ws, timeout=120.0):
    frames, texts = [], []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = ws.recv(timeout=deadline - time.monotonic())
        if isinstance(msg, bytes):
            frames.append(decode_frame(msg))
            continue
        texts.append(json.loads(msg))
        if texts[-1]["type"] == "done":
            return frames, texts
    raise AssertionError("no 'done' message")


def test_stream_over_websocket(pipeline, server, source):
    from websockets.sync.client import connect

    audio = speech_like(1.0)
    pcm = np.round(audio * 32768).astype("<i2").tobytes()
    with connect(f"ws://{server}/ws?token={TOKEN}", max_size=2**24) as ws:
        ws.send(json.dumps({"type": "start", "realtime": False, "seed": 0}))
        ready = json.loads(ws.recv(timeout=60))
        assert ready["type"] == "ready" and (ready["height"], ready["width"]) == source.frame_size
        ws.send("this is not json")
        assert json.loads(ws.recv(timeout=10))["type"] == "error"
        ws.send(json.dumps({"type": "dance"}))
        error = json.loads(ws.recv(timeout=10))
        assert error["type"] == "error" and "unknown message type" in error["message"]
        ws.send(json.dumps(["not", "an", "object"]))
        assert json.loads(ws.recv(timeout=10))["type"] == "error"
        for i in range(0, len(pcm), 3200):  # 100 ms pieces; the session goes on after errors
            ws.send(pcm[i : i + 3200])
        ws.send(json.dumps({"type": "close"}))
        frames, texts = receive_until_done(ws)
    done = texts[-1]["stats"]
    assert len(frames) == 33 == done["frames_out"]  # 25 speech frames -> chunks of 9 + 12 + 12
    assert done["speech_frames_out"] == 25 and done["ttff_s"] > 0
    header, audio_out, jpeg = frames[0]
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape[:2] == source.frame_size and header["speech"]
    played = np.concatenate([a for _, a, _ in frames]).astype(np.float32) / 32768
    assert np.abs(played[: len(audio)] - audio).max() < 1e-3


def test_wrong_token_is_refused(server):
    import httpx
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    with pytest.raises(InvalidStatus) as e:
        connect(f"ws://{server}/ws?token=wrong")
    assert e.value.response.status_code == 403
    assert httpx.get(f"http://{server}/api/info").status_code == 401
    ok = httpx.get(f"http://{server}/api/info", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and ok.json()["sources"][0]["source"] == "default"
    assert ok.json()["checkpoint"] == "student.safetensors"  # no server paths leak to clients
    assert httpx.get(f"http://{server}/").status_code == 200  # the page itself is public


def test_uploads_are_limited_and_checked(server):
    import httpx

    url = f"http://{server}/api/sources?token={TOKEN}&name=big.mp4"
    big = httpx.post(url, content=b"\0" * 60_000)
    assert big.status_code == 413 and "upload over" in big.json()["error"]
    bad = httpx.post(url.replace("big.mp4", "clip.mp4"), content=b"garbage" * 100)
    assert bad.status_code == 422 and bad.json()["error"]
    assert httpx.post(url, content=b"").status_code == 400


def test_start_errors_and_session_limit(server):
    from websockets.sync.client import connect

    with connect(f"ws://{server}/ws?token={TOKEN}") as ws:
        ws.send(b"\x00\x00")
        assert "before start" in json.loads(ws.recv(timeout=10))["message"]
        ws.send(json.dumps({"type": "start", "source": "nope"}))
        assert "unknown source" in json.loads(ws.recv(timeout=10))["message"]
        ws.send(json.dumps({"type": "start", "sample_rate": "fast"}))
        assert "sample_rate" in json.loads(ws.recv(timeout=10))["message"]
        with connect(f"ws://{server}/ws?token={TOKEN}") as second:  # max_sessions=1
            msg = json.loads(second.recv(timeout=10))
            assert msg["type"] == "error" and "busy" in msg["message"]
        ws.send(json.dumps({"type": "ping"}))
        assert json.loads(ws.recv(timeout=10))["type"] == "pong"


def test_binding_beyond_loopback_needs_a_token():
    check_bind("127.0.0.1", None)
    check_bind("0.0.0.0", "t")
    with pytest.raises(UserError, match="needs --token"):
        check_bind("0.0.0.0", None)
