"""Distillation tests run their tiny models on one thread: on a shared 2-core machine the
intra-op thread pool costs more than it saves at these sizes (20 ms per LayerNorm call)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
