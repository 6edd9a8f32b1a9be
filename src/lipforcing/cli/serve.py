"""Serve live lip sync over HTTP + WebSocket, with a browser page (microphone or file in).

Binds 127.0.0.1 by default; listening on any other address needs ``--token``. Open the
printed address in a browser (add ``?token=...`` when a token is set).
"""

from __future__ import annotations

import argparse

from lipforcing.cli import options

DESCRIPTION = """\
Serve live lip sync over HTTP and WebSocket, with a browser page (microphone or audio file
in). Binds 127.0.0.1 by default; listening on any other address needs --token. Open the
printed address in a browser."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind")
    parser.add_argument("--port", type=int, default=8000, help="port to bind")
    parser.add_argument("--token", help="access token (required beyond loopback)")
    options.add_student(parser)
    parser.add_argument("--video", help="default source video or image (default: SynthTalk face)")
    options.add_device(parser)
    options.add_execution(parser)
    parser.add_argument("--max-sessions", type=int, default=2, help="concurrent sessions")
    parser.add_argument("--max-upload-mb", type=float, default=50.0, help="largest upload")
    parser.add_argument("--max-session-s", type=float, default=600.0, help="session length")
    parser.add_argument("--idle-timeout-s", type=float, default=60.0, help="idle session timeout")


def run(args: argparse.Namespace) -> int:
    from lipforcing.streaming.builtin import builtin_sample
    from lipforcing.streaming.server import ServerLimits, check_bind, create_app, serve
    from lipforcing.streaming.source import Source

    check_bind(args.host, args.token)
    pipeline = options.load_pipeline(args)
    sample = builtin_sample(pipeline.preset)
    source = Source.from_file(args.video, pipeline.preset.media) if args.video else sample.source
    limits = ServerLimits(
        max_upload_mb=args.max_upload_mb,
        max_sessions=args.max_sessions,
        max_session_s=args.max_session_s,
        idle_timeout_s=args.idle_timeout_s,
    )
    from lipforcing.streaming.engine import warmup

    warmup(pipeline, source)  # one-off start-up costs before the first client, not in its TTFF
    app = create_app(pipeline, source, token=args.token, limits=limits, sample_audio=sample.audio)
    query = f"?token={args.token}" if args.token else ""
    print(f"lipforcing serving {pipeline.checkpoint} at http://{args.host}:{args.port}/{query}")
    serve(app, args.host, args.port)
    return 0
