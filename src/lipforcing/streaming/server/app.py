"""The FastAPI application: one small named handler per endpoint, over one explicit state.

:func:`create_app` builds a :class:`ServerState` (the pipeline, the limits, the access policy,
the source store, the upload workers, the session slots, the memory guard) and registers the
handlers below; each reads that state from ``request.app.state.server``. Refusals are
exceptions turned into ``{"error": message}`` responses by the handlers registered in
:func:`_register_errors`; an unexpected failure is logged with its traceback and answered with
a 500 that says only that it happened.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from fastapi import FastAPI, HTTPException, Request, WebSocket
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from lipforcing.errors import UserError
from lipforcing.streaming.pipeline import Pipeline
from lipforcing.streaming.scheduler import Scheduler
from lipforcing.streaming.server.access import AccessPolicy, HostOriginGuard
from lipforcing.streaming.server.avatars import AvatarStore
from lipforcing.streaming.server.capacity import Busy, MemoryGuard, SessionSlots
from lipforcing.streaming.server.limits import ServerLimits
from lipforcing.streaming.server.live import Retirer, session_inputs
from lipforcing.streaming.server.protocol import ProtocolError
from lipforcing.streaming.server.sources import (
    SourceStore,
    UploadRefused,
    UploadWorkers,
    clean_name,
    describe,
)
from lipforcing.streaming.server.webrtc import OfferRefused, RtcPeers
from lipforcing.streaming.server.websocket import WebSocketClient
from lipforcing.streaming.source import Source

log = logging.getLogger(__name__)
PREVIEW_QUALITY = 90  # JPEG quality of a source's preview image
WEB = Path(str(resources.files("lipforcing.streaming") / "web"))


@dataclass
class ServerState:
    """Everything the handlers share (one per application)."""

    pipeline: Pipeline
    limits: ServerLimits
    access: AccessPolicy
    sources: SourceStore
    uploads: UploadWorkers
    slots: SessionSlots
    memory: MemoryGuard
    retirer: Retirer
    scheduler: Scheduler  # steps every session's chunks together (streaming/scheduler.py)
    peers: RtcPeers
    sample_audio: np.ndarray | None = None
    avatars: AvatarStore | None = None  # serve --avatars DIR


def create_app(
    pipeline: Pipeline,
    default_source: Source,
    *,
    token: str | None = None,
    limits: ServerLimits | None = None,
    sample_audio: np.ndarray | None = None,
    access: AccessPolicy | None = None,
    scheduler: Scheduler | None = None,
    avatars: str | Path | None = None,
):
    """The ASGI application (uvicorn serves it; tests drive it on loopback).

    ``access`` defaults to loopback Host names and same-origin pages, with ``token``; every
    session runs on ``scheduler`` (default: one made here), which batches their chunks;
    ``avatars`` a folder of avatars to list, stream and build (see :mod:`.avatars`; each avatar
    streams on a scheduler of its own, as it runs its own student).
    """
    access = access or AccessPolicy.create(token)
    limits = limits or ServerLimits()
    state = ServerState(
        pipeline=pipeline,
        limits=limits,
        access=access,
        sources=SourceStore(default_source, limits),
        uploads=UploadWorkers(limits, pipeline.preset.media),
        slots=SessionSlots(limits.max_sessions),
        memory=MemoryGuard(limits),
        retirer=Retirer(),
        scheduler=scheduler if scheduler is not None else Scheduler(pipeline),
        peers=RtcPeers(),
        sample_audio=sample_audio,
        avatars=AvatarStore(avatars, pipeline, limits) if avatars is not None else None,
    )
    app = FastAPI(
        title="lipforcing", docs_url=None, redoc_url=None, openapi_url=None, lifespan=_lifespan
    )
    app.state.server = state
    app.mount("/static", StaticFiles(directory=WEB), name="static")
    app.add_api_route("/", page, methods=["GET"], include_in_schema=False)
    app.add_api_route("/openapi.json", openapi, methods=["GET"], include_in_schema=False)
    app.add_api_route("/api/info", info, methods=["GET"])
    app.add_api_route("/api/sample.wav", sample_wav, methods=["GET"])
    app.add_api_route("/api/sources", upload_source, methods=["POST"])
    app.add_api_route("/api/sources/{sid}/preview.jpg", source_preview, methods=["GET"])
    app.add_api_route("/api/avatars", avatar_status, methods=["GET"])
    app.add_api_route("/api/avatars", create_avatar, methods=["POST"])
    app.add_api_route("/offer", webrtc_offer, methods=["POST"])
    app.add_api_websocket_route("/ws", websocket_session)
    _register_errors(app)
    return HostOriginGuard(app, access)


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI):
    yield
    state = app.state.server
    state.uploads.close()
    await state.peers.close_all()
    await state.retirer.wait()
    state.scheduler.close()
    if state.avatars is not None:
        state.avatars.close()


def server_state(request: Request | WebSocket) -> ServerState:
    return request.app.state.server


def require_token(request: Request) -> ServerState:
    """The state, once the request's bearer token checks out (401 otherwise)."""
    state = server_state(request)
    if not state.access.token_ok(state.access.header_token(request.scope["headers"])):
        raise HTTPException(401, "missing or wrong token (send Authorization: Bearer ...)")
    return state


# ---------------------------------------------------------------------- handlers


def page() -> FileResponse:
    """The browser page (public: it holds no data; it asks for the token itself)."""
    return FileResponse(WEB / "index.html", media_type="text/html")


def openapi(request: Request) -> JSONResponse:
    require_token(request)
    return JSONResponse(request.app.openapi())


def info(request: Request) -> dict:
    """Preset, checkpoint file name, limits and the sources."""
    state = require_token(request)
    preset = state.pipeline.preset
    return {
        "preset": preset.name,
        # the file name only: the server's directory layout is nobody's business
        "checkpoint": Path(state.pipeline.checkpoint).name,
        "fps": preset.media.fps,
        "sample_rate": preset.audio.sample_rate,
        "limits": state.limits.public(),
        "sources": state.sources.describe() + _avatar_sources(state),
        "sample_audio": state.sample_audio is not None,
        "avatars": state.avatars is not None,
    }


def _avatar_sources(state: ServerState) -> list[dict]:
    return state.avatars.describe() if state.avatars is not None else []


def avatar_status(request: Request) -> dict:
    """The avatars of the folder and the builds with their progress."""
    return _avatar_store(require_token(request)).status()


async def create_avatar(request: Request, name: str) -> dict:
    """A raw video body of the person talking -> an avatar build in the background."""
    state = require_token(request)
    store = _avatar_store(state)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > state.limits.max_avatar_upload_mb * 1e6:
        raise UploadRefused(f"footage over {state.limits.max_avatar_upload_mb:g} MB", 413)
    state.memory.admit_upload()
    return await store.create(request.stream(), name)


def _avatar_store(state: ServerState) -> AvatarStore:
    if state.avatars is None:
        raise HTTPException(404, "this server keeps no avatars (serve --avatars DIR)")
    return state.avatars


def sample_wav(request: Request) -> Response:
    """The built-in speech sample as a WAV file."""
    import soundfile

    state = require_token(request)
    if state.sample_audio is None:
        raise HTTPException(404, "this server has no sample audio")
    buf = io.BytesIO()
    soundfile.write(buf, state.sample_audio, state.pipeline.preset.audio.sample_rate, format="WAV")
    return Response(buf.getvalue(), media_type="audio/wav")


async def upload_source(request: Request, name: str = "upload", face: str = "largest") -> dict:
    """A raw file body (video or image) -> a stored source; the face is tracked here."""
    from lipforcing.media.faces import parse_face

    state = require_token(request)
    display = clean_name(name)
    choice = parse_face(face, option="face")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > state.limits.upload_bytes:
        raise UploadRefused(f"upload over {state.limits.max_upload_mb:g} MB", 413)
    state.memory.admit_upload()
    source = await state.uploads.run(request.stream(), display, choice)
    sid = state.sources.add(source)
    log.info("stored source %s (%d frames, %.1f MB)", sid, len(source), source.nbytes / 1e6)
    return describe(sid, source)


def source_preview(request: Request, sid: str) -> Response:
    """The source's first frame as a JPEG, so the page shows the face before streaming."""
    import cv2

    state = require_token(request)
    try:
        _, source = session_inputs(state, sid)
    except ProtocolError:
        raise HTTPException(404, "no such source") from None
    frame = source.frames[0]
    ok, jpeg = cv2.imencode(
        ".jpg", frame[:, :, ::-1], [int(cv2.IMWRITE_JPEG_QUALITY), PREVIEW_QUALITY]
    )
    if not ok:
        raise RuntimeError("JPEG encoding of a preview failed")
    return Response(jpeg.tobytes(), media_type="image/jpeg")


async def webrtc_offer(request: Request) -> dict:
    """A WebRTC offer ``{sdp, type, ...session options}`` -> the answer ``{sdp, type}``."""
    state = require_token(request)
    limit = int(state.limits.max_offer_kb * 1000)
    body = b""
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise OfferRefused(f"the offer is over {state.limits.max_offer_kb:g} kB")
    try:
        offer = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise OfferRefused("the offer must be JSON {sdp, type, ...options}") from None
    return await state.peers.offer(state, offer)


async def websocket_session(websocket: WebSocket) -> None:
    await WebSocketClient(websocket, server_state(websocket)).serve()


# ---------------------------------------------------------------------- errors


def _register_errors(app: FastAPI) -> None:
    def refusal(status: int):
        def handler(request: Request, exc: Exception) -> JSONResponse:
            log.info("%s %s refused (%d): %s", request.method, request.url.path, status, exc)
            return JSONResponse({"error": str(exc)}, status)

        return handler

    def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        log.info(
            "%s %s refused (%d): %s", request.method, request.url.path, exc.status_code, exc.detail
        )
        return JSONResponse({"error": str(exc.detail)}, exc.status_code)

    def upload_refused(request: Request, exc: UploadRefused) -> JSONResponse:
        return refusal(exc.status)(request, exc)

    def failure(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"error": "internal error (see the server log)"}, 500)

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(UploadRefused, upload_refused)
    app.add_exception_handler(OfferRefused, refusal(400))
    app.add_exception_handler(Busy, refusal(503))
    app.add_exception_handler(UserError, refusal(422))
    app.add_exception_handler(Exception, failure)
