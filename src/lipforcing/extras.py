"""Optional extras: which ``pip install 'lipforcing[...]'`` provides which import.

A feature whose extra is not installed fails with one message naming the command that installs
it (:class:`MissingExtra`, a :class:`~lipforcing.errors.UserError` and an ``ImportError``), never
with a traceback: library modules import optional packages inside :func:`needs`, and the CLI
turns any other missing import it can attribute to an extra into the same message.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from lipforcing.errors import UserError

# top-level import name -> the extra that installs it (keep in step with pyproject.toml)
EXTRA_OF_MODULE = {
    "transformers": "models",
    "diffusers": "models",
    "peft": "models",
    "tensorboard": "train",
    "fastapi": "serve",
    "starlette": "serve",
    "uvicorn": "serve",
    "websockets": "serve",
    "aiortc": "serve",
    "PIL": "serve",
    "livekit": "livekit",
    "pipecat": "pipecat",
    "skimage": "eval",
    "python_speech_features": "eval",
    "dlib": "faces",
    "face_recognition_models": "faces",
}


class MissingExtra(UserError, ImportError):
    """An optional dependency is not installed; the message says how to install it."""

    def __init__(self, extra: str, missing: str | None = None, feature: str | None = None) -> None:
        need = missing or f"the '{extra}' extra"
        what = feature or "this command"
        super().__init__(f"{what} needs {need}, not installed: pip install 'lipforcing[{extra}]'")
        self.extra = extra


def extra_for(module: str | None) -> str | None:
    """The extra that provides ``module`` (a dotted name is looked up by its top level)."""
    return EXTRA_OF_MODULE.get((module or "").split(".")[0])


@contextmanager
def needs(extra: str, feature: str | None = None) -> Iterator[None]:
    """Imports inside this block that fail for a missing package raise :class:`MissingExtra`."""
    try:
        yield
    except ModuleNotFoundError as e:
        raise MissingExtra(extra, e.name, feature) from e
