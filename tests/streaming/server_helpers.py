"""A real server on 127.0.0.1 for tests (uvicorn in a thread, or ``lipforcing serve`` in a
subprocess for the load test and the soak) and small client helpers."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

TOKEN = "s3cret-token"
STOP_TIMEOUT_S = 30.0  # a served subprocess must exit this long after SIGTERM, else it is killed
SERVER_START_S = 120.0  # bound on uvicorn starting in its thread (seconds on a starved CPU)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running(app, *, ws_max_size: int = 4 * 2**20):
    """Serve ``app`` on a free loopback port; yields ``"127.0.0.1:port"``."""
    import uvicorn

    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", ws_max_size=ws_max_size
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + SERVER_START_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the test server did not start within {SERVER_START_S:g} s")
        time.sleep(0.05)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextlib.contextmanager
def serve_process(options: list[str], port: int, log_path: Path, *, threads: int, startup_s: float):
    """``lipforcing serve --port PORT OPTIONS`` in a subprocess with ``threads`` OMP threads,
    its output appended to ``log_path``; yields its Popen once the port accepts connections
    (RuntimeError if it exits or is not listening within ``startup_s``), and stops it on exit."""
    cmd = [sys.executable, "-m", "lipforcing.cli.main", "serve", "--port", str(port), *options]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    with open(log_path, "a") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + startup_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited: {Path(log_path).read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"the server did not listen within {startup_s:g} s")
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()


def auth(token: str = TOKEN) -> dict:
    return {"Authorization": f"Bearer {token}"}


def pcm_bytes(audio: np.ndarray) -> bytes:
    return np.round(np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


def recv_json(ws, timeout: float = 30.0) -> dict:
    """The next text message (binary frames before it are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        msg = ws.recv(timeout=max(0.01, deadline - time.monotonic()))
        if isinstance(msg, str):
            return json.loads(msg)


def closed_with(ws, timeout: float = 30.0):
    """Read until the server closes; returns (close code, last error message or None)."""
    from websockets.exceptions import ConnectionClosed

    error = None
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            msg = ws.recv(timeout=max(0.01, deadline - time.monotonic()))
            if isinstance(msg, str) and json.loads(msg).get("type") == "error":
                error = json.loads(msg)
    except ConnectionClosed as e:
        return (e.rcvd.code if e.rcvd else None), error
    raise AssertionError("the server did not close the connection")
