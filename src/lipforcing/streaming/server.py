"""HTTP + WebSocket server for live lip sync, with a browser page (``lipforcing serve``).

Endpoints (all but the page and its static files need the token when one is set, as
``?token=...`` or ``Authorization: Bearer ...``):

- ``GET /`` the page; ``GET /static/*`` its script and style.
- ``GET /api/info`` preset, checkpoint, limits and the available sources.
- ``POST /api/sources?name=clip.mp4`` raw file body (a video or an image) -> ``{"source": id,
  ...}``; the face is tracked once here. Bodies over ``max_upload_mb`` get 413.
- ``GET /api/sample.wav`` a built-in speech sample (SynthTalk) to stream without a microphone.
- ``WS /ws?token=...`` one streaming session.

WebSocket protocol. Client -> server:
- text ``{"type": "start", "source": "default", "realtime": true, "seed": 0,
  "sample_rate": 16000, "quality": 80}`` opens the session (all fields optional);
- binary messages: little-endian int16 mono PCM at the start message's ``sample_rate``;
- text ``{"type": "end_segment"}`` (utterance done), ``{"type": "clear"}`` (interruption),
  ``{"type": "close"}`` (no more audio: the server drains and sends ``done``),
  ``{"type": "ping"}`` (answered with ``pong``).
Server -> client:
- text ``{"type": "ready", "fps", "sample_rate", "width", "height", "limits"}``;
- binary frames: ``uint32 LE n`` | ``n`` bytes of JSON ``{"i", "t", "speech", "audio_bytes",
  "segment_end"}`` | ``audio_bytes`` of int16 PCM played with the frame | a JPEG image;
- text ``{"type": "stats", ...}`` twice a second and ``{"type": "done", "stats": {...}}``;
- text ``{"type": "error", "message": "..."}`` for a malformed or refused message; the session
  goes on unless the error says it ended (limits, idle timeout).

Safety: binds 127.0.0.1 by default and refuses to listen elsewhere without a token; limits on
upload size, concurrent sessions, session duration, idle time, audio message size and pending
audio.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import io
import json
import logging
import secrets
import struct
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from fastapi import FastAPI, HTTPException, Request, WebSocket
from fastapi.responses import FileResponse, JSONResponse, Response

from lipforcing.errors import UserError
from lipforcing.streaming.pipeline import Pipeline
from lipforcing.streaming.session import Frame, StreamSession
from lipforcing.streaming.source import Source

log = logging.getLogger(__name__)
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True, kw_only=True)
class ServerLimits:
    max_upload_mb: float = 50.0  # largest source upload, megabytes
    max_sessions: int = 2  # concurrent streaming sessions
    max_session_s: float = 600.0  # wall-clock length of one session, seconds
    idle_timeout_s: float = 60.0  # close a session after this long without a client message
    max_audio_message_s: float = 10.0  # audio in one binary message, seconds
    max_pending_s: float = 120.0  # audio waiting to be generated, seconds
    max_sources: int = 8  # uploaded sources kept in memory (oldest evicted)
    max_source_s: float = 120.0  # longest source video, seconds


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen beyond loopback without a token."""
    if host not in LOCAL_HOSTS and not token:
        raise UserError(f"listening on {host} needs --token (or bind 127.0.0.1)")


def encode_frame(frame: Frame, quality: int = 80) -> bytes:
    """The binary frame message of the protocol (header JSON, int16 audio, JPEG)."""
    import cv2

    ok, jpeg = cv2.imencode(
        ".jpg", frame.image[:, :, ::-1], [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)]
    )
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    pcm = (np.clip(frame.audio, -1, 1) * 32767).astype("<i2").tobytes()
    header = json.dumps(
        {
            "i": frame.index,
            "t": round(frame.timestamp, 4),
            "speech": frame.speech,
            "audio_bytes": len(pcm),
            "segment_end": frame.segment_end,
        }
    ).encode()
    return struct.pack("<I", len(header)) + header + pcm + jpeg.tobytes()


def decode_frame(message: bytes) -> tuple[dict, np.ndarray, bytes]:
    """Inverse of :func:`encode_frame`: (header, int16 audio, JPEG bytes) (tests, clients)."""
    (n,) = struct.unpack_from("<I", message)
    header = json.loads(message[4 : 4 + n])
    a = 4 + n + header["audio_bytes"]
    return header, np.frombuffer(message[4 + n : a], "<i2"), message[a:]


def create_app(
    pipeline: Pipeline,
    default_source: Source,
    *,
    token: str | None = None,
    limits: ServerLimits = ServerLimits(),
    sample_audio: np.ndarray | None = None,
):
    """The FastAPI application (uvicorn serves it; tests drive it on loopback)."""
    app = FastAPI(title="lipforcing", docs_url=None, redoc_url=None)
    sources: OrderedDict[str, Source] = OrderedDict(default=default_source)
    state = {"sessions": 0}
    web = Path(str(resources.files("lipforcing.streaming") / "web"))

    def authorised(given: str | None) -> bool:
        return token is None or (given is not None and hmac.compare_digest(given, token))

    def request_token(request) -> str | None:
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        return request.query_params.get("token")

    def require(request: Request) -> None:
        if not authorised(request_token(request)):
            raise HTTPException(401, "missing or wrong token")

    def describe(sid: str, src: Source) -> dict:
        h, w = src.frame_size
        return {"source": sid, "name": src.name, "frames": len(src), "width": w, "height": h}

    @app.get("/")
    def page() -> FileResponse:
        return FileResponse(web / "index.html", media_type="text/html")

    @app.get("/static/{name}")
    def static(name: str) -> FileResponse:
        types = {"app.js": "text/javascript", "style.css": "text/css"}
        if name not in types:
            raise HTTPException(404, "not found")
        return FileResponse(web / name, media_type=types[name])

    @app.get("/api/info")
    def info(request: Request) -> dict:
        require(request)
        p = pipeline.preset
        return {
            "preset": p.name,
            # the file name only: the server's directory layout is nobody's business
            "checkpoint": Path(pipeline.checkpoint).name,
            "fps": p.media.fps,
            "sample_rate": p.audio.sample_rate,
            "limits": limits.__dict__,
            "sources": [describe(k, v) for k, v in sources.items()],
            "sample_audio": sample_audio is not None,
        }

    @app.get("/api/sample.wav")
    def sample(request: Request) -> Response:
        require(request)
        if sample_audio is None:
            raise HTTPException(404, "this server has no sample audio")
        import soundfile

        buf = io.BytesIO()
        soundfile.write(buf, sample_audio, pipeline.preset.audio.sample_rate, format="WAV")
        return Response(buf.getvalue(), media_type="audio/wav")

    @app.post("/api/sources")
    async def upload(request: Request, name: str = "upload.mp4"):
        require(request)
        limit = int(limits.max_upload_mb * 1e6)
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return JSONResponse({"error": f"upload over {limits.max_upload_mb:g} MB"}, 413)
        suffix = Path(name).suffix.lower()[:8] or ".mp4"
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"source{suffix}"
            size = 0
            with open(path, "wb") as f:
                async for part in request.stream():
                    size += len(part)
                    if size > limit:
                        return JSONResponse(
                            {"error": f"upload over {limits.max_upload_mb:g} MB"}, 413
                        )
                    f.write(part)
            if size == 0:
                return JSONResponse({"error": "empty upload"}, 400)
            try:
                src = await asyncio.to_thread(
                    Source.from_file, path, pipeline.preset.media, max_seconds=limits.max_source_s
                )
            except UserError as e:
                return JSONResponse({"error": str(e).replace(str(path), name)}, 422)
        src.name = Path(name).name[:100]
        sid = secrets.token_hex(6)
        sources[sid] = src
        while len(sources) > limits.max_sources + 1:
            oldest = next(k for k in sources if k != "default")
            del sources[oldest]
        return describe(sid, src)

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        if not authorised(websocket.query_params.get("token")):
            await websocket.close(code=1008, reason="missing or wrong token")
            return
        await websocket.accept()
        if state["sessions"] >= limits.max_sessions:
            await _send_error(websocket, "server busy: too many sessions", ended=True)
            await websocket.close(code=1013)
            return
        state["sessions"] += 1
        try:
            await _Connection(websocket, pipeline, sources, limits).run()
        finally:
            state["sessions"] -= 1

    return app


async def _send_error(websocket, message: str, ended: bool = False) -> None:
    await websocket.send_text(json.dumps({"type": "error", "message": message, "ended": ended}))


class _Connection:
    """One WebSocket: a receive loop feeding a session and a send loop draining it."""

    def __init__(self, websocket, pipeline: Pipeline, sources, limits: ServerLimits) -> None:
        self.ws, self.pipeline, self.sources, self.limits = websocket, pipeline, sources, limits
        self.session: StreamSession | None = None
        self.sample_rate = pipeline.preset.audio.sample_rate
        self.quality = 80
        self.last_message = time.monotonic()
        self.started = time.monotonic()
        self.sender: asyncio.Task | None = None

    async def run(self) -> None:
        from starlette.websockets import WebSocketDisconnect

        watchdog = asyncio.create_task(self._watchdog())
        try:
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                self.last_message = time.monotonic()
                try:
                    await self._handle(message)
                except UserError as e:
                    await _send_error(self.ws, str(e))
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            watchdog.cancel()
            if self.session is not None:
                await asyncio.to_thread(self.session.stop)
            if self.sender is not None:
                self.sender.cancel()

    async def _handle(self, message: dict) -> None:
        if message.get("bytes") is not None:
            return self._audio(message["bytes"])
        text = message.get("text") or ""
        try:
            msg = json.loads(text)
        except json.JSONDecodeError:
            raise UserError("malformed message: not JSON") from None
        if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
            raise UserError('malformed message: expected an object with a "type"')
        kind = msg["type"]
        if kind == "ping":
            return await self.ws.send_text(json.dumps({"type": "pong"}))
        if kind == "start":
            return await self._start(msg)
        if self.session is None:
            raise UserError(f"{kind!r} before start")
        if kind == "end_segment":
            self.session.end_segment()
        elif kind == "clear":
            self.session.clear()
        elif kind == "close":
            self.session.close()
        else:
            raise UserError(f"unknown message type {kind[:40]!r}")

    def _audio(self, data: bytes) -> None:
        if self.session is None:
            raise UserError("audio before start")
        if len(data) > 2 * self.sample_rate * self.limits.max_audio_message_s:
            raise UserError(f"audio message over {self.limits.max_audio_message_s:g} s")
        self.session.push_audio(data, self.sample_rate)

    async def _start(self, msg: dict) -> None:
        if self.session is not None:
            raise UserError("the session has already started")
        sid = msg.get("source", "default")
        if not isinstance(sid, str) or sid not in self.sources:
            raise UserError(f"unknown source {str(sid)[:40]!r}")
        rate, seed = msg.get("sample_rate", 16_000), msg.get("seed", 0)
        quality, realtime = msg.get("quality", 80), msg.get("realtime", True)
        if not (isinstance(rate, int) and 8_000 <= rate <= 96_000):
            raise UserError("sample_rate must be an integer in 8000..96000")
        if not (isinstance(seed, int) and 0 <= seed < 2**63):
            raise UserError("seed must be a non-negative integer")
        if not (isinstance(quality, int) and 10 <= quality <= 95):
            raise UserError("quality must be an integer in 10..95")
        if not isinstance(realtime, bool):
            raise UserError("realtime must be true or false")
        source = self.sources[sid]
        self.sample_rate, self.quality = rate, quality
        self.session = await asyncio.to_thread(
            StreamSession,
            self.pipeline,
            source,
            seed=seed,
            realtime=realtime,
            max_pending_s=self.limits.max_pending_s,
        )
        h, w = source.frame_size
        await self.ws.send_text(
            json.dumps(
                {
                    "type": "ready",
                    "fps": self.session.fps,
                    "sample_rate": self.session.sample_rate,
                    "width": w,
                    "height": h,
                    "limits": self.limits.__dict__,
                }
            )
        )
        self.sender = asyncio.create_task(self._send_frames())

    async def _send_frames(self) -> None:
        session = self.session
        last_stats = 0.0
        try:
            async for frame in session.aframes():
                data = await asyncio.to_thread(encode_frame, frame, self.quality)
                await self.ws.send_bytes(data)
                if frame.speech:  # audio still flowing: the connection is not idle
                    self.last_message = time.monotonic()
                if time.monotonic() - last_stats > 0.5:
                    last_stats = time.monotonic()
                    await self.ws.send_text(json.dumps({"type": "stats", **_stats(session)}))
            await self.ws.send_text(json.dumps({"type": "done", "stats": _stats(session)}))
        except UserError as e:
            await _send_error(self.ws, str(e), ended=True)
        except Exception as e:  # a failed generation, or the client went away mid-send
            if _is_disconnect(e):
                return
            log.exception("session failed")
            with contextlib.suppress(Exception):
                await _send_error(self.ws, f"session failed: {type(e).__name__}: {e}", ended=True)

    async def _watchdog(self) -> None:
        lim = self.limits
        while True:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            reason = None
            if now - self.started > lim.max_session_s:
                reason = f"session time limit of {lim.max_session_s:g} s reached"
            elif now - self.last_message > lim.idle_timeout_s:
                reason = f"no message for {lim.idle_timeout_s:g} s: closing"
            if reason:
                try:
                    await _send_error(self.ws, reason, ended=True)
                    await self.ws.close(code=1000)
                except Exception:
                    pass
                return


def _is_disconnect(e: BaseException) -> bool:
    """The peer went away (Starlette, uvicorn and websockets each name it differently)."""
    return "Disconnect" in type(e).__name__ or "ConnectionClosed" in type(e).__name__


def _stats(session: StreamSession) -> dict:
    return {
        k: (round(v, 4) if isinstance(v, float) else v) for k, v in session.stats.as_dict().items()
    }


def serve(app, host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning", ws_max_size=4 * 2**20)
