"""HTTP + WebSocket (+ WebRTC) server for live lip sync, with a browser page (``lipforcing serve``).

Endpoints (all but the page and its static files need the token when one is set, sent as
``Authorization: Bearer <token>``; a browser's WebSocket sends it in its first message):

- ``GET /`` the page; ``GET /static/*`` its scripts and style.
- ``GET /api/info`` preset, checkpoint file name, limits and the available sources.
- ``POST /api/sources?name=clip.mp4&face=largest`` raw file body (an mp4 / mov / mkv / webm
  video or a PNG / JPEG / WebP / BMP image, recognised by its content) -> ``{"source": id,
  "face", "faces", "face_choice", "frames_with_face", "shot_cuts", ...}``; the face is tracked
  once here: ``face`` = largest (default), center, N (0 = leftmost) or a box x0,y0,x1,y1,
  chosen again at each shot cut; frames without it are streamed untouched. ``faces``: faces
  the detector saw in the first frame with the chosen one; ``face_choice``: sessions may ask
  for another face (the ``face`` session option; false for avatars and given tracks).
  Refusals: 413 (too big), 429 (uploads busy), 422 (not accepted, over a budget, no face, a
  bad ``face``), 503 (memory budget).
- ``GET /api/sources/{id}/preview.jpg`` the source's first frame.
- ``GET /api/sample.wav`` a built-in speech sample (SynthTalk) to stream without a microphone.
- With ``serve --avatars DIR`` (:mod:`.avatars`): ``GET /api/avatars`` the avatars of the
  folder and the builds (``building`` with ``progress``: stage, index of 9, ``left_s``;
  ``ready``; ``failed`` / ``interrupted`` with a message); ``POST /api/avatars?name=NAME`` a raw
  video body (1-3 min of the person talking, with sound) -> an ``avatar create`` in a child
  process (409 name taken, 429 a build running, 413 / 422 refused footage). Avatar ``NAME`` is
  the source id ``avatar:NAME`` (its own student and footage).
- ``GET /openapi.json`` the API description.
- ``WS /ws`` one streaming session (protocol below).

WebSocket protocol. Client -> server:
- text ``{"type": "start", "source": "default", "realtime": true, "seed": 0,
  "sample_rate": 16000, "quality": 80, "face": null, "silence_gate": true}`` opens the session
  (all fields optional; a browser adds ``"token"``). ``face`` is spelled as ``--face``
  (largest, center, N, x0,y0,x1,y1); null = the face the source was tracked with. Another
  choice tracks the source's stored frames again with it, once (on an upload worker: ``1013``
  busy while every worker is taken), and keeps that track with the source for later sessions;
  a face no frame has, or any face on an avatar or a source with a given track, is refused.
  ``silence_gate`` false turns the engine's silence gate off (mouth driven by any sound).
  ``POST /offer`` takes the same options in its body;
- binary messages: little-endian int16 mono PCM at the start message's ``sample_rate``;
- text ``{"type": "end_segment"}`` (utterance done), ``{"type": "clear"}`` (interruption),
  ``{"type": "close"}`` (no more audio: the server drains and sends ``done``),
  ``{"type": "ping"}`` (answered with ``pong``).
Server -> client:
- text ``{"type": "ready", "fps", "sample_rate", "width", "height", "face",
  "frames_with_face", "silence_gate", "limits"}`` (the face driven, as reported);
- binary frames (:func:`encode_frame`): ``uint32 LE n`` | ``n`` bytes of JSON ``{"i", "t",
  "speech", "audio_bytes", "segment_end"}`` | int16 PCM played with the frame | a JPEG image;
- text ``{"type": "stats", ...}`` twice a second and ``{"type": "done", "stats": {...}}``, then
  a normal close;
- text ``{"type": "error", "message": "...", "ended": bool}``: a refused message; when
  ``ended`` the connection is closed (1008 refused, 1009 too big, 1011 failure, 1013 busy,
  1000 time limits).

Safety (:mod:`.access`, :mod:`.limits`, :mod:`.capacity`, :mod:`.sources`): binds 127.0.0.1 by
default and refuses to listen elsewhere without a token; foreign Host headers and Origins are
refused; limits on upload size, concurrent uploads (decoded at low priority), source duration
/ frame size / stored memory, concurrent sessions, session and idle time, message sizes and
pending audio; an optional memory budget.
"""

from lipforcing.streaming.server.access import AccessPolicy
from lipforcing.streaming.server.limits import ServerLimits, check_bind
from lipforcing.streaming.server.protocol import decode_frame, encode_frame

MAX_WS_MESSAGE_BYTES = 4 * 2**20  # largest WebSocket message uvicorn accepts
MAX_CONNECTIONS = 64  # concurrent connections before uvicorn answers 503


def serve(app, host: str, port: int) -> None:
    """Run ``app`` with uvicorn (no access log: nothing about requests is written per line)."""
    import uvicorn

    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        ws_max_size=MAX_WS_MESSAGE_BYTES,
        limit_concurrency=MAX_CONNECTIONS,
    )


def __getattr__(name: str):
    """``create_app`` is imported on first use (FastAPI is an optional dependency, and the
    command line reads the limits without it)."""
    if name == "create_app":
        from lipforcing.streaming.server.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AccessPolicy",
    "ServerLimits",
    "check_bind",
    "create_app",
    "decode_frame",
    "encode_frame",
    "serve",
]
