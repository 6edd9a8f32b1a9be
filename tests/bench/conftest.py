"""Benchmark tests run on one CPU thread with a reduced tiny preset (2 blocks, 64x64 crops)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
