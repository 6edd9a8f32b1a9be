"""Conformance fixtures shared by both modules: the stand-ins of one width (written once per
session, 1.3B width in ``make test``, 14B width in the slow run) and a SynthTalk clip."""

from __future__ import annotations

import shutil

import pytest

from lipforcing.conformance.standins import write_all

LAYERS = 4  # reduced depth: every layout and key name, a fraction of the blocks
VAE_WIDTH = 16  # Wan VAE base channels (the release's 96): every name, ~1/30 of the encode work


@pytest.fixture(scope="session", params=["1.3b", pytest.param("14b", marks=pytest.mark.slow)])
def standins(request, tmp_path_factory):
    """The manifest of :func:`write_all` (paths by role, ``family``) plus ``out``, its folder."""
    out = tmp_path_factory.mktemp(f"release-{request.param}")
    manifest = write_all(out, width=request.param, layers=LAYERS, vae_width=VAE_WIDTH)
    manifest["out"] = out
    yield manifest
    shutil.rmtree(out, ignore_errors=True)


@pytest.fixture(scope="session")
def clip(tmp_path_factory):
    """A SynthTalk talking face as a plain video + wav (no landmark file: dlib tracks it)."""
    from lipforcing.media.synthtalk import write_dataset

    folder = tmp_path_factory.mktemp("clip")
    write_dataset(folder, 1, 2.0, 5)
    for extra in [*folder.glob("*.npz"), folder / "index.json"]:
        extra.unlink(missing_ok=True)
    return folder
