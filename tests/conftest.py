"""Shared test fixtures: paths to ../shared/data (skipped when absent) and seeded generators."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """The real media of ../shared/data; the test is skipped where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent (research media is not shipped with the repo)")
    return SHARED_DATA


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)
