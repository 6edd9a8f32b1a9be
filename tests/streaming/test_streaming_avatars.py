"""The server with a folder of avatars (serve --avatars DIR): avatars are listed as sources,
stream with their own student and footage, and are built from uploaded footage by the real
`avatar create` in a child process, whose progress and one-line refusals the page shows."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import httpx
import pytest
from server_helpers import TOKEN, auth, pcm_bytes, running
from streaming_inputs import speech_like

from lipforcing.streaming.server import ServerLimits, create_app

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "avatar"))  # footage helpers
from avatar_helpers import silent, talking, untrained_avatar  # noqa: E402


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("avatars")
    untrained_avatar(folder, "me")
    return folder


@pytest.fixture(scope="module")
def server(pipeline, source, folder):
    app = create_app(pipeline, source, token=TOKEN, avatars=folder)
    with running(app) as address:
        yield address


def test_avatars_are_sources_with_their_own_student(server):
    from websockets.sync.client import connect

    info = httpx.get(f"http://{server}/api/info", headers=auth()).json()
    assert info["avatars"] is True
    mine = next(s for s in info["sources"] if s["source"] == "avatar:me")
    assert (mine["width"], mine["height"], mine["frames"]) == (128, 128, 50)
    r = httpx.get(f"http://{server}/api/sources/avatar:me/preview.jpg", headers=auth())
    assert r.status_code == 200 and r.content[:2] == b"\xff\xd8"
    with connect(f"ws://{server}/ws", max_size=2**24) as ws:
        start = {"type": "start", "source": "avatar:me", "realtime": False, "token": TOKEN}
        ws.send(json.dumps(start))
        ready = json.loads(ws.recv(timeout=120))
        assert ready["type"] == "ready" and (ready["width"], ready["height"]) == (128, 128)
        ws.send(pcm_bytes(speech_like(0.5)))
        ws.send(json.dumps({"type": "close"}))
        frames = 0
        while True:
            msg = ws.recv(timeout=120)
            if isinstance(msg, bytes):
                frames += 1
            elif json.loads(msg)["type"] == "done":
                break
    assert frames >= 12
    bad = httpx.get(f"http://{server}/api/sources/avatar:nobody/preview.jpg", headers=auth())
    assert bad.status_code == 404


def test_avatar_uploads_are_checked_before_any_build(server, tmp_path):
    url = f"http://{server}/api/avatars"
    cases = [
        ("../evil", b"x" * 100, 400, "avatar name"),
        ("me", b"x" * 100, 409, "exists"),
        ("notes", b"#EXTM3U\nfile:///etc/passwd\n", 422, "not a supported file"),
    ]
    for name, body, status, message in cases:
        r = httpx.post(url, params={"name": name}, content=body, headers=auth(), timeout=60)
        assert r.status_code == status and message in r.json()["error"], (name, r.text)
    png = talking(tmp_path / "face.mp4", seconds=1.0).with_suffix(".npz")  # not a video
    r = httpx.post(url, params={"name": "still"}, content=png.read_bytes(), headers=auth())
    assert r.status_code == 422
    assert httpx.post(url, params={"name": "x"}, content=b"1").status_code == 401


def test_a_build_from_refused_footage_reports_its_reason(server, tmp_path):
    """The real command runs on the upload: silent footage is refused by its footage report,
    and the page gets the command's one-line reason."""
    video = silent(tmp_path / "quiet.mp4", seconds=24.0, sound_inside=True)
    url = f"http://{server}/api/avatars"
    r = httpx.post(url, params={"name": "quiet"}, content=video.read_bytes(), headers=auth())
    assert r.status_code == 200 and r.json()["state"] == "building"
    busy = httpx.post(url, params={"name": "other"}, content=video.read_bytes(), headers=auth())
    assert busy.status_code == 429
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        builds = httpx.get(url, headers=auth()).json()["builds"]
        quiet = next(b for b in builds if b["name"] == "quiet")
        if quiet["state"] != "building":
            break
        time.sleep(1)
    assert quiet["state"] == "failed"
    assert quiet["message"].startswith("error: quiet.mp4: speech in only 0%")


def test_a_video_without_sound_is_refused_before_any_build(server, tmp_path):
    video = talking(tmp_path / "mute.mp4", seconds=2.0)  # the speech only in the .wav beside it
    url = f"http://{server}/api/avatars"
    r = httpx.post(url, params={"name": "mute"}, content=video.read_bytes(), headers=auth())
    assert r.status_code == 422 and "no sound" in r.json()["error"]
    names = [b["name"] for b in httpx.get(url, headers=auth()).json()["builds"]]
    assert "mute" not in names


def test_serve_without_an_avatar_folder_has_no_avatar_api(pipeline, source):
    app = create_app(pipeline, source, limits=ServerLimits())
    with running(app) as address:
        r = httpx.get(f"http://{address}/api/avatars")
        assert r.status_code == 404 and "--avatars" in r.json()["error"]
