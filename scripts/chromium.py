"""Headless Chromium driven over the DevTools protocol (screenshots, browser tests).

Launches Debian's ``chromium`` with the flags this closed network needs (no background
networking, component updates, sync or QUIC: without them Chromium keeps trying to reach
Google's hosts), a fresh profile and a DevTools port, and offers ``navigate``, ``evaluate``
(awaiting promises) and ``screenshot`` on its first page. ``fake_audio`` feeds a WAV file to
``getUserMedia`` as the microphone (Chromium's fake capture devices, permission prompts
answered yes).

    async with Chromium(fake_audio="speech.wav") as browser:
        await browser.navigate("http://127.0.0.1:8000/")
        value = await browser.evaluate("document.title")
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

CLOSED_NETWORK_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
STARTUP_POLLS = 300  # 0.1 s apart: Chromium gets 30 s to write its DevTools port


def chromium_binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Chromium:
    """An async context manager: a headless Chromium and a DevTools session on its page."""

    def __init__(self, *, fake_audio: str | Path | None = None, window=(1280, 760)) -> None:
        self.fake_audio, self.window = fake_audio, window
        self.ids = iter(range(1, 10**9))

    def _command(self, profile: str) -> list[str]:
        cmd = [
            chromium_binary() or "chromium",
            *CLOSED_NETWORK_FLAGS,
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            f"--window-size={self.window[0]},{self.window[1]}",
            "--autoplay-policy=no-user-gesture-required",
        ]
        if self.fake_audio is not None:
            cmd += [
                "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream",
                f"--use-file-for-fake-audio-capture={self.fake_audio}",
            ]
        return [*cmd, "about:blank"]

    async def __aenter__(self) -> Chromium:
        import httpx
        import websockets

        self.profile = tempfile.mkdtemp(prefix="lf-chromium-")
        self.proc = subprocess.Popen(
            self._command(self.profile), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        port_file = Path(self.profile) / "DevToolsActivePort"
        for _ in range(STARTUP_POLLS):
            if port_file.exists() and port_file.read_text().strip():
                break
            await asyncio.sleep(0.1)
        else:
            await self.__aexit__()
            raise RuntimeError("chromium did not start (no DevToolsActivePort)")
        port = int(port_file.read_text().split()[0])
        async with httpx.AsyncClient() as http:
            targets = (await http.get(f"http://127.0.0.1:{port}/json/list")).json()
        page = next(t for t in targets if t["type"] == "page")
        self.cdp = await websockets.connect(page["webSocketDebuggerUrl"], max_size=2**26)
        await self.call("Page.enable")
        await self.call("Runtime.enable")
        return self

    async def __aexit__(self, *exc) -> None:
        if getattr(self, "cdp", None) is not None:
            await self.cdp.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)

    async def call(self, method: str, **params) -> dict:
        i = next(self.ids)
        await self.cdp.send(json.dumps({"id": i, "method": method, "params": params}))
        while True:
            msg = json.loads(await self.cdp.recv())
            if msg.get("id") == i:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    async def navigate(self, url: str) -> None:
        await self.call("Page.navigate", url=url)

    async def evaluate(self, expression: str):
        """The value of a JS expression (promises awaited); raises on a JS exception."""
        result = await self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"page error: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def screenshot(self, *, full_page: bool = False) -> bytes:
        """A PNG of the window, or with ``full_page`` of the whole document (scrolled parts
        too)."""
        params: dict = {"format": "png"}
        if full_page:  # the window's width (scroll bar included), the document's height
            width, height = await self.evaluate(
                "[window.innerWidth, document.documentElement.scrollHeight]"
            )
            clip = {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}
            params |= {"captureBeyondViewport": True, "clip": clip}
        shot = await self.call("Page.captureScreenshot", **params)
        return base64.b64decode(shot["data"])
