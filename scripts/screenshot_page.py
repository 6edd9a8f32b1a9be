"""Screenshot the live page in headless Chromium while it streams the built-in speech.

Starts the server on 127.0.0.1 (a random port, a random token), launches Chromium headless
with a DevTools port, opens ``/?autostart=sample#token=...`` (the page fetches the built-in
speech, streams it up the WebSocket at real time and draws the returned frames), waits, reads
the page's stats and saves a PNG of the whole page. Needs a ``chromium`` binary (Debian:
``apt-get install chromium``).

    python scripts/screenshot_page.py --out page.png [--checkpoint CKPT | --random] [--wait 6]
        [--min-frames N --max-wait 240]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import socket
import threading
import time
from pathlib import Path

FRAMES_POLL_S = 0.5  # how often --min-frames reads the page's frame count, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="page.png")
    ap.add_argument("--checkpoint", help="student checkpoint (default: built-in, else random)")
    ap.add_argument("--random", action="store_true", help="random tiny weights")
    ap.add_argument("--wait", type=float, default=6.0, help="seconds of streaming before the shot")
    ap.add_argument(
        "--min-frames",
        type=int,
        default=0,
        help="after --wait, wait on until the page counts this many frames (a loaded CPU)",
    )
    ap.add_argument(
        "--max-wait", type=float, default=240.0, help="bound on the --min-frames wait, seconds"
    )
    ap.add_argument("--transport", default="websocket", choices=["websocket", "webrtc"])
    ap.add_argument("--video", help="source video (default: the built-in SynthTalk face)")
    ap.add_argument("--audio", help="speech the page streams (default: built-in SynthTalk speech)")
    args = ap.parse_args()

    token = secrets.token_hex(8)
    port = free_port()
    server, thread = start_server(args, token, port)
    query = f"autostart=sample&transport={args.transport}"
    url = f"http://127.0.0.1:{port}/?{query}#token={token}"  # the fragment stays in the browser
    try:
        png, stats = asyncio.run(screenshot(url, args.wait, args.min_frames, args.max_wait))
    finally:
        # Stop the server and its streaming sessions before the interpreter exits: a daemon
        # thread still generating at exit can abort the process ("terminate called ...").
        server.should_exit = True
        thread.join(timeout=30)
    Path(args.out).write_bytes(png)
    print(f"saved {args.out}; page stats: {json.dumps(stats)}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args, token: str, port: int):
    import uvicorn

    from lipforcing.config import tiny
    from lipforcing.streaming.builtin import builtin_sample
    from lipforcing.streaming.pipeline import Pipeline, shipped_asset
    from lipforcing.streaming.server import create_app

    ckpt = args.checkpoint or (None if args.random else shipped_asset("student.safetensors"))
    pipeline = Pipeline.load(ckpt) if ckpt else Pipeline.random(tiny())
    if args.video:
        from lipforcing.media.io import read_audio
        from lipforcing.streaming.source import Source

        source = Source.from_file(args.video, pipeline.preset.media)
        audio = read_audio(args.audio, sample_rate=pipeline.preset.audio.sample_rate)[: 16_000 * 8]
    else:
        sample = builtin_sample(pipeline.preset, seconds=8.0)
        source, audio = sample.source, sample.audio
    from lipforcing.streaming.engine import warmup

    warmup(pipeline, source)
    app = create_app(pipeline, source, token=token, sample_audio=audio)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    print(f"server on 127.0.0.1:{port} with {pipeline.checkpoint}")
    return server, thread


async def screenshot(url: str, wait: float, min_frames: int, max_wait: float):
    """(PNG, the page's stats) after ``wait`` seconds and, past that, once the page counts
    ``min_frames`` frames or ``max_wait`` more seconds passed."""
    from chromium import Chromium

    async with Chromium() as browser:
        await browser.navigate(url)
        await asyncio.sleep(wait)
        deadline = time.monotonic() + max_wait
        while time.monotonic() < deadline and await frames_shown(browser) < min_frames:
            await asyncio.sleep(FRAMES_POLL_S)
        stats = await browser.evaluate(
            "JSON.stringify({status: document.getElementById('status').textContent, "
            "stats: [...document.querySelectorAll('#stats dd')].map("
            "d => d.previousElementSibling.textContent + ': ' + d.textContent)})"
        )
        return await browser.screenshot(full_page=True), json.loads(stats)


async def frames_shown(browser) -> int:
    """The page's frame count (its stats row; 0 before the first stats message)."""
    text = await browser.evaluate("document.getElementById('s-frames')?.textContent ?? ''")
    return int(text) if text.isdigit() else 0


if __name__ == "__main__":
    main()
