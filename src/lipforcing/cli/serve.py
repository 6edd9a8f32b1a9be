"""Serve live lip sync over HTTP + WebSocket, with a browser page (microphone or file in).

Binds 127.0.0.1 by default; listening on any other address needs ``--token``. Open the
printed address in a browser; with a token, the page asks for it (or add ``#token=...`` to the
address: a URL fragment never leaves the browser). The token is never printed or logged.
"""

from __future__ import annotations

import argparse

from lipforcing.cli import options

DESCRIPTION = """\
Serve live lip sync over HTTP, WebSocket and WebRTC, with a browser page (microphone or audio
file in). Binds 127.0.0.1 by default; listening on any other address needs --token. Open the
printed address in a browser; with a token the page asks for it (or add #token=SECRET to the
address). Pages of other origins and foreign Host names are refused."""

LIMIT_FLAGS = (  # fields of ServerLimits on the command line: (field, type, help)
    ("max_sessions", int, "concurrent streaming sessions (their chunks batched on one device)"),
    ("max_session_s", float, "wall-clock length of one session, s"),
    ("idle_timeout_s", float, "close a session after this long without a message, s"),
    ("max_upload_mb", float, "largest source upload, MB"),
    ("max_uploads", int, "uploads decoded at once (more are refused with 429)"),
    ("max_source_s", float, "longest source video, s"),
    ("max_source_store_mb", float, "memory for all stored uploads together, MB"),
    ("memory_budget_mb", float, "refuse new sessions / uploads when memory nears this, MB"),
    ("max_avatar_upload_mb", float, "largest footage upload for an avatar build, MB"),
    ("max_avatar_s", float, "longest footage for an avatar build, s"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lipforcing.streaming.server.limits import ServerLimits

    d = ServerLimits()
    parser.add_argument("--host", default="127.0.0.1", help="address to bind")
    parser.add_argument("--port", type=int, default=8000, help="port to bind")
    parser.add_argument("--token", help="access token (required beyond loopback)")
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a Host name clients may use besides loopback names and IP addresses (repeatable)",
    )
    parser.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="URL",
        help="another page origin that may call the server, e.g. https://app.example (repeatable)",
    )
    options.add_student(parser)
    parser.add_argument(
        "--video",
        help="default source video or image (default: the avatar's footage with --avatar, else "
        "a SynthTalk face)",
    )
    parser.add_argument(
        "--avatars",
        metavar="DIR",
        help="a folder of avatars: the page lists them, streams them with their own student, "
        "and creates new ones there from uploaded footage",
    )
    options.add_device(parser)
    options.add_execution(parser, stream_threads="auto")
    for field, kind, text in LIMIT_FLAGS:
        flag = "--" + field.replace("_", "-")
        parser.add_argument(flag, type=kind, default=getattr(d, field), help=text)


def limits_from(args: argparse.Namespace):
    from lipforcing.streaming.server.limits import ServerLimits

    return ServerLimits(**{field: getattr(args, field) for field, _, _ in LIMIT_FLAGS})


def run(args: argparse.Namespace) -> int:
    from lipforcing.streaming.builtin import builtin_sample
    from lipforcing.streaming.scheduler import Scheduler
    from lipforcing.streaming.server import AccessPolicy, check_bind, create_app, serve

    check_bind(args.host, args.token)
    limits = limits_from(args)
    access = AccessPolicy.create(
        args.token, args.host, tuple(args.allow_host), tuple(args.allow_origin)
    )
    pipeline = options.load_pipeline(args)
    sample = builtin_sample(pipeline.preset)
    source = options.load_source(args, pipeline, default=lambda: sample.source)
    scheduler = Scheduler(pipeline)  # one thread steps every session's chunks, batched
    scheduler.warmup(source)  # one-off start-up costs before the first client, not in its TTFF
    app = create_app(
        pipeline,
        source,
        limits=limits,
        sample_audio=sample.audio,
        access=access,
        scheduler=scheduler,
        avatars=args.avatars,
    )
    shown = f"[{args.host}]" if ":" in args.host else args.host
    note = " (the page asks for the token)" if args.token else ""
    print(
        f"lipforcing serving {pipeline.checkpoint} at http://{shown}:{args.port}/{note}", flush=True
    )
    serve(app, args.host, args.port)
    return 0
