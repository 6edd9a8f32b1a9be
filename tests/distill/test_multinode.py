"""Multi-node launch as documented in docs/TRAINING.md, exercised as 2 nodes x 1 process on
loopback: two torchrun agents meet through the c10d rendezvous and train with gloo; the result
equals one process training the same global batch."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch

from lipforcing.cli.main import main
from lipforcing.config import tiny
from lipforcing.distill.latents import save_cache
from lipforcing.models.checkpoints import read_state_dict


def random_cache(path, n: int = 4, frames: int = 6, audio_dim: int | None = None) -> None:
    p, g = tiny(), torch.Generator().manual_seed(0)
    audio_dim = audio_dim or p.audio.feature_dim
    lat = (n, 16, frames, *p.latent_hw)
    s = p.media.crop_size
    save_cache(
        {
            "x0": torch.randn(lat, generator=g),
            "masked": torch.randn(lat, generator=g),
            "ref": torch.randn(n, 16, 1, *p.latent_hw, generator=g),
            "ref_seq": torch.randn(lat, generator=g),
            "audio": torch.randn(n, 1 + 4 * (frames - 1), audio_dim, generator=g),
            "mask": (torch.arange(s)[:, None] > s // 2).float().expand(s, s).contiguous(),
        },
        path,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_nodes_one_process_each_on_loopback_equal_one_process(tmp_path):
    cache = tmp_path / "latents.pt"
    random_cache(cache)
    args = ["train", "teacher", "--latents", str(cache), "--recipe", "tiny-quick", "--steps", "2"]
    args += ["--batch-size", "2", "--micro-batch", "1", "--threads", "1"]
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1"]
    launch += ["--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{port}", "--rdzv_id=lipforcing"]
    cmd = [*launch, "-m", "lipforcing.cli.main", *args, "--out", str(tmp_path / "two")]
    nodes = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)]
    nodes.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    logs = [n.communicate(timeout=300)[0].decode() for n in nodes]
    assert all(n.returncode == 0 for n in nodes), "\n".join(logs)
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    two = read_state_dict(tmp_path / "two" / "teacher.safetensors")
    one = read_state_dict(tmp_path / "one" / "teacher.safetensors")
    for k in one:
        torch.testing.assert_close(two[k], one[k], rtol=0, atol=1e-5, msg=k)
