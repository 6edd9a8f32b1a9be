"""Fixtures for the streaming tests: a random tiny student + codec and a synthetic face source.

The source is a drawn face with known 5-point landmarks (so no detector runs) that moves a
little from frame to frame; nothing here needs a trained checkpoint.
"""

from __future__ import annotations

import pytest
from streaming_inputs import face_frames

from lipforcing.config import tiny


@pytest.fixture(scope="session")
def pipeline():
    from lipforcing.streaming.pipeline import Pipeline

    return Pipeline.random(tiny(), seed=0)


@pytest.fixture(scope="session")
def source():
    from lipforcing.streaming.source import Source

    frames, marks = face_frames()
    return Source.from_frames(frames, tiny().media, landmarks=marks, name="drawn")
