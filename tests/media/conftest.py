"""Fixtures of the media tests (helpers live in media_testutils.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from media_testutils import CLIPS


@pytest.fixture
def clip_paths(shared_data: Path) -> list[Path]:
    return [shared_data / "clips" / f"{name}.mp4" for name in CLIPS]
