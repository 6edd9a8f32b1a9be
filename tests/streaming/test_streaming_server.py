"""The server over a real WebSocket / HTTP on 127.0.0.1: streaming, tokens, hostile messages,
Host / Origin checks, session slots and the memory budget."""

from __future__ import annotations

import dataclasses
import json
import logging
import socket
import time

import cv2
import numpy as np
import pytest
from server_helpers import TOKEN, auth, closed_with, pcm_bytes, recv_json, running
from streaming_inputs import speech_like

from lipforcing.errors import UserError
from lipforcing.streaming.server import (
    AccessPolicy,
    ServerLimits,
    check_bind,
    create_app,
    decode_frame,
)


@pytest.fixture(scope="module")
def server(pipeline, source):
    # as if loaded from a file: /api/info must not reveal where
    pipeline = dataclasses.replace(pipeline, checkpoint="/srv/private/student.safetensors")
    limits = ServerLimits(max_upload_mb=0.05, max_sessions=1, idle_timeout_s=20)
    app = create_app(pipeline, source, token=TOKEN, limits=limits, sample_audio=speech_like(1.0))
    with running(app) as address:
        yield address


@pytest.fixture(scope="module")
def open_server(pipeline, source):
    """No token: the loopback default."""
    with running(create_app(pipeline, source, limits=ServerLimits(max_upload_mb=0.05))) as addr:
        yield addr


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


def test_stream_over_websocket(server, source):
    from websockets.sync.client import connect

    audio = speech_like(1.0)
    pcm = pcm_bytes(audio)
    with connect(f"ws://{server}/ws", max_size=2**24) as ws:
        # a browser cannot set headers: the token rides in the first message
        ws.send(json.dumps({"type": "start", "realtime": False, "seed": 0, "token": TOKEN}))
        ready = json.loads(ws.recv(timeout=60))
        assert ready["type"] == "ready" and (ready["height"], ready["width"]) == source.frame_size
        ws.send("this is not json")
        assert json.loads(ws.recv(timeout=10))["type"] == "error"
        ws.send(json.dumps({"type": "dance"}))
        error = json.loads(ws.recv(timeout=10))
        assert error["type"] == "error" and "unknown message type" in error["message"]
        ws.send(json.dumps(["not", "an", "object"]))
        assert json.loads(ws.recv(timeout=10))["type"] == "error"
        ws.send(b"\x00\x00\x00")  # odd byte count: not int16 PCM
        assert "even number of bytes" in json.loads(ws.recv(timeout=10))["message"]
        for i in range(0, len(pcm), 3200):  # 100 ms pieces; the session goes on after errors
            ws.send(pcm[i : i + 3200])
        ws.send(json.dumps({"type": "close"}))
        frames, texts = receive_until_done(ws)
        code, _ = closed_with(ws)
    assert code == 1000  # the server closes normally after "done"
    done = texts[-1]["stats"]
    assert len(frames) == 33 == done["frames_out"]  # 25 speech frames -> chunks of 9 + 12 + 12
    assert done["speech_frames_out"] == 25 and done["ttff_s"] > 0
    header, audio_out, jpeg = frames[0]
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape[:2] == source.frame_size and header["speech"]
    played = np.concatenate([a for _, a, _ in frames]).astype(np.float32) / 32768
    assert np.abs(played[: len(audio)] - audio).max() < 1e-3


def test_tokens(server):
    import httpx
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    with pytest.raises(InvalidStatus) as e:  # a wrong handshake header is refused at once
        connect(f"ws://{server}/ws", additional_headers=auth("wrong"))
    assert e.value.response.status_code == 403
    with connect(f"ws://{server}/ws", additional_headers=auth()) as ws:  # header: no token field
        ws.send(json.dumps({"type": "ping"}))
        assert recv_json(ws)["type"] == "pong"
    with connect(f"ws://{server}/ws") as ws:  # first message without the token
        ws.send(json.dumps({"type": "start"}))
        code, error = closed_with(ws)
    assert code == 1008 and "token" in error["message"] and error["ended"]
    with connect(f"ws://{server}/ws?token={TOKEN}") as ws:  # URLs do not carry tokens
        ws.send(json.dumps({"type": "ping"}))
        assert closed_with(ws)[0] == 1008

    url = f"http://{server}"
    assert httpx.get(f"{url}/api/info").status_code == 401
    assert httpx.get(f"{url}/api/info?token={TOKEN}").status_code == 401
    assert httpx.get(f"{url}/api/info", headers=auth("wrong")).status_code == 401
    # a non-ASCII token is just a wrong token, not a crash
    for raw in ("t\u00f6ken".encode("latin-1"), "t\u00f6ken\u2603".encode()):
        header = {"Authorization": b"Bearer " + raw}
        assert httpx.get(f"{url}/api/info", headers=header).status_code == 401
    ok = httpx.get(f"{url}/api/info", headers=auth())
    assert ok.status_code == 200 and ok.json()["sources"][0]["source"] == "default"
    assert ok.json()["checkpoint"] == "student.safetensors"  # no server paths leak to clients
    assert httpx.get(f"{url}/openapi.json").status_code == 401
    spec = httpx.get(f"{url}/openapi.json", headers=auth())
    assert spec.status_code == 200 and "/api/sources" in spec.json()["paths"]
    assert httpx.get(f"{url}/").status_code == 200  # the page itself is public
    assert httpx.get(f"{url}/static/js/main.js").status_code == 200
    assert httpx.get(f"{url}/static/../server/app.py").status_code == 404


def test_non_ascii_token_configured(pipeline, source):
    import httpx

    token = "cl\u00e9-\u2603"
    with running(create_app(pipeline, source, token=token)) as address:
        header = {"Authorization": b"Bearer " + token.encode()}
        assert httpx.get(f"http://{address}/api/info", headers=header).status_code == 200
        assert httpx.get(f"http://{address}/api/info", headers=auth("x")).status_code == 401


def test_uploads_are_limited_and_checked(server):
    import httpx

    url = f"http://{server}/api/sources"
    big = httpx.post(url, params={"name": "big.mp4"}, headers=auth(), content=b"\0" * 60_000)
    assert big.status_code == 413 and "upload over" in big.json()["error"]
    bad = httpx.post(url, params={"name": "clip.mp4"}, headers=auth(), content=b"garbage" * 100)
    assert bad.status_code == 422 and "clip.mp4: not a supported file" in bad.json()["error"]
    assert httpx.post(url, headers=auth(), content=b"").status_code == 400
    nul = httpx.post(url, params={"name": "a\0b.mp4"}, headers=auth(), content=b"x")
    assert nul.status_code == 400 and "control characters" in nul.json()["error"]
    assert httpx.post(url, content=b"x").status_code == 401


def test_hostile_start_messages_close_cleanly(server, caplog):
    from websockets.sync.client import connect

    caplog.set_level(logging.INFO, logger="lipforcing.streaming.server")
    hello = {"type": "start", "token": TOKEN}
    for bad, words in [
        ({**hello, "seed": True}, "seed must be"),
        ({**hello, "sample_rate": "fast"}, "sample_rate must be"),
        ({**hello, "source": "nope"}, "unknown source"),
        ({**hello, "colour": "red"}, "unknown session option"),
    ]:
        with connect(f"ws://{server}/ws") as ws:
            ws.send(json.dumps(bad))
            code, error = closed_with(ws)
        assert code == 1008 and words in error["message"] and error["ended"], (bad, error)
        assert any(words in r.getMessage() for r in caplog.records), words  # logged
    with connect(f"ws://{server}/ws", additional_headers=auth(), max_size=None) as ws:
        ws.send("[" * 200_000 + "]" * 200_000)  # 400 kB of nesting
        code, error = closed_with(ws)
    assert code == 1009 and "message over" in error["message"]
    with connect(f"ws://{server}/ws", additional_headers=auth()) as ws:
        ws.send("[" * 20_000)  # small but deep
        code, error = closed_with(ws)
    assert code == 1008 and "nested too deeply" in error["message"]


def test_session_limit_and_errors_before_start(server):
    from websockets.sync.client import connect

    with connect(f"ws://{server}/ws", additional_headers=auth()) as ws:
        ws.send(json.dumps({"type": "clear"}))
        code, error = closed_with(ws)
    assert code == 1008 and "before start" in error["message"]
    with connect(f"ws://{server}/ws", additional_headers=auth()) as ws:
        ws.send(json.dumps({"type": "start", "realtime": True}))
        assert recv_json(ws)["type"] == "ready"
        with connect(f"ws://{server}/ws", additional_headers=auth()) as second:  # max 1
            second.send(json.dumps({"type": "start"}))
            code, error = closed_with(second)
        assert code == 1013 and "busy" in error["message"]
        ws.send(json.dumps({"type": "ping"}))
        assert recv_json(ws)["type"] == "pong"


class SlowModel:
    """The real model, slowed down: each call sleeps first (a long chunk in progress)."""

    def __init__(self, model, delay_s: float) -> None:
        self.model, self.delay_s = model, delay_s

    def __call__(self, *args, **kwargs):
        time.sleep(self.delay_s)
        return self.model(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.model, name)


def test_slot_frees_at_once_on_disconnect(pipeline, source):
    """A client that leaves mid-chunk frees its slot at once, not after the chunk, and the
    next client is ready without waiting for that chunk either."""
    from websockets.sync.client import connect

    slow = dataclasses.replace(pipeline, model=SlowModel(pipeline.model, delay_s=0.5))
    app = create_app(slow, source, limits=ServerLimits(max_sessions=1))
    slots = app.app.state.server.slots  # create_app wraps the FastAPI app in its Host guard
    with running(app) as address:
        for _ in range(3):
            with connect(f"ws://{address}/ws") as ws:
                ws.send(json.dumps({"type": "start", "realtime": False}))
                assert recv_json(ws)["type"] == "ready"
                ws.send(pcm_bytes(speech_like(0.5)))
                ws.send(json.dumps({"type": "close"}))
                time.sleep(0.3)  # the first chunk is being generated (3 calls of 0.5 s)
            t0 = time.monotonic()
            while slots.used and time.monotonic() - t0 < 1.0:
                time.sleep(0.01)
            assert slots.used == 0  # freed while the chunk still had >= 0.2 s to go
            with connect(f"ws://{address}/ws") as ws:
                ws.send(json.dumps({"type": "start", "realtime": False}))
                reply = recv_json(ws)
                assert reply["type"] == "ready", reply
            assert time.monotonic() - t0 < 1.0  # no wait for the chunk (>= 1 s left)


def test_foreign_host_and_origin_are_refused(open_server, server):
    import httpx
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    for address, headers in [(open_server, {}), (server, auth())]:  # with and without token
        url = f"http://{address}"
        assert httpx.get(f"{url}/", headers={"Host": "attacker.example"}).status_code == 403
        foreign = {**headers, "Host": "attacker.example:80"}
        assert httpx.get(f"{url}/api/info", headers=foreign).status_code == 403
        evil = {**headers, "Origin": "http://attacker.example", "Content-Type": "text/plain"}
        up = httpx.post(f"{url}/api/sources", params={"name": "x.mp4"}, headers=evil, content=b"x")
        assert up.status_code == 403 and "Origin" in up.json()["error"]
        same = {**headers, "Origin": url}
        assert httpx.get(f"{url}/api/info", headers=same).status_code == 200
        assert (
            httpx.get(f"{url}/api/info", headers={**headers, "Origin": "null"}).status_code == 403
        )
        with pytest.raises(InvalidStatus) as e:
            connect(f"ws://{address}/ws", additional_headers={**headers, **evil})
        assert e.value.response.status_code == 403
        sock = socket.create_connection(tuple(address.split(":")))  # DNS rebinding: our IP,
        with pytest.raises(InvalidStatus) as e:  # their name in the Host header
            connect("ws://attacker.example/ws", sock=sock, additional_headers=headers)
        assert e.value.response.status_code == 403
        with connect(f"ws://{address}/ws", additional_headers={**headers, "Origin": url}) as ws:
            ws.send(json.dumps({"type": "ping", "token": TOKEN}))
            assert recv_json(ws)["type"] == "pong"


def test_access_policy_names():
    policy = AccessPolicy.create(None, "0.0.0.0", allow_hosts=("lips.example",))
    assert policy.host_ok("127.0.0.1:8000") and policy.host_ok("[::1]:8000")
    assert policy.host_ok("LOCALHOST") and policy.host_ok("192.0.2.7:8000")
    assert policy.host_ok("lips.example:8000") and not policy.host_ok("attacker.example")
    assert not policy.host_ok("127.0.0.1:http") and not policy.host_ok("")
    assert policy.origin_ok("http://lips.example:8000", "lips.example:8000")
    assert not policy.origin_ok("http://lips.example:9000", "lips.example:8000")
    extra = AccessPolicy.create(None, allow_origins=("https://app.example/",))
    assert extra.origin_ok("https://app.example", "127.0.0.1:8000")


def test_memory_budget_refuses_new_work(pipeline, source):
    import httpx
    from websockets.sync.client import connect

    app = create_app(pipeline, source, limits=ServerLimits(memory_budget_mb=1.0))
    with running(app) as address:
        up = httpx.post(f"http://{address}/api/sources", params={"name": "a.png"}, content=b"x")
        assert up.status_code == 503 and "memory budget" in up.json()["error"]
        with connect(f"ws://{address}/ws") as ws:
            ws.send(json.dumps({"type": "start"}))
            code, error = closed_with(ws)
        assert code == 1013 and "memory budget" in error["message"]


def test_binding_beyond_loopback_needs_a_real_token():
    check_bind("127.0.0.1", None)
    check_bind("0.0.0.0", "t")
    with pytest.raises(UserError, match="needs --token"):
        check_bind("0.0.0.0", None)
    with pytest.raises(UserError, match="blank"):
        check_bind("0.0.0.0", " \t ")
    with pytest.raises(UserError, match="blank"):
        check_bind("127.0.0.1", "")


def test_quick_reconnects_are_never_busy(pipeline, source):
    """60 clients in a row, each leaving mid-stream (no close message, the socket just goes):
    with one slot, every one of them gets ``ready`` (issue 19 item 8: 25 of 60 got "busy")."""
    from websockets.sync.client import connect

    app = create_app(pipeline, source, limits=ServerLimits(max_sessions=1))
    replies = []
    with running(app) as address:
        for _ in range(60):
            with connect(f"ws://{address}/ws") as ws:
                ws.send(json.dumps({"type": "start", "realtime": False}))
                replies.append(recv_json(ws))
                ws.send(pcm_bytes(speech_like(0.5)))  # a chunk starts; the client leaves
    kinds = [r["type"] if r["type"] == "ready" else r["message"] for r in replies]
    assert kinds == ["ready"] * 60, [k for k in kinds if k != "ready"][:3]


def test_startup_line_never_shows_the_token():
    """`lipforcing serve --token` prints where to go, never the token (nor logs it)."""
    import subprocess
    import sys

    import httpx
    from server_helpers import free_port

    secret = "never-print-me-7f3a"
    port = free_port()
    cmd = [sys.executable, "-c", "from lipforcing.cli.main import main; main()", "serve"]
    cmd += ["--token", secret, "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        startup = proc.stdout.readline()  # printed once the model is loaded, before serving
        assert f"http://127.0.0.1:{port}/" in startup, startup
        for _ in range(200):  # uvicorn binds just after the line
            try:
                reply = httpx.get(f"http://127.0.0.1:{port}/api/info", headers=auth(secret))
                break
            except httpx.ConnectError:
                time.sleep(0.1)
        assert reply.status_code == 200  # the token is the server's
        assert httpx.get(f"http://127.0.0.1:{port}/api/info").status_code == 401
    finally:
        proc.terminate()
        output = startup + proc.communicate(timeout=30)[0]
    assert secret not in output, output
