"""Stage 2 through the one loop: batch by accumulation on any number of processes, exact
resume from the distributed checkpoint, and export of that checkpoint to one file."""

from __future__ import annotations

import pytest
import torch
import torch.multiprocessing as mp
from distill_helpers import sample_reward, stage2_setup, stage2_worker

from lipforcing.config import with_overrides
from lipforcing.distill.run_state import export_checkpoint, export_trainable
from lipforcing.distill.stages import run_stage2
from lipforcing.models.checkpoints import load_checkpoint, read_state_dict


@pytest.fixture(scope="module")
def setup_root(tmp_path_factory):
    """Teacher and Stage-1 student trained once for the module (later calls skip them)."""
    root = tmp_path_factory.mktemp("stage2_setup")
    stage2_setup(root)
    return root


def params(path):
    return read_state_dict(path)


def assert_same(a: dict, b: dict, atol=1e-5):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=atol, msg=k)


def test_batch_4_as_4x1_accumulated_equals_1x4_after_two_updates(tmp_path, setup_root):
    runs = {}
    for micro in (1, 4):
        cache, teacher, s1, cfg = stage2_setup(setup_root, micro=micro)
        out = run_stage2(
            cache, s1, teacher, cfg, tmp_path / f"m{micro}", reward_fn=sample_reward, critic_path=s1
        )
        critic = export_trainable(tmp_path / f"m{micro}" / "checkpoint", "critic")
        runs[micro] = (params(out), critic, params(out.with_name("student_ema.safetensors")))
    start = params(s1)
    assert any(not torch.equal(start[k], runs[1][0][k]) for k in start)  # it trained
    for a, b in zip(runs[1], runs[4]):  # student, critic, EMA
        assert_same(a, b)


def test_two_gloo_processes_equal_one(tmp_path, setup_root):
    init = tmp_path / "init"
    args = (2, str(init), str(setup_root), str(tmp_path / "two"), 2)
    mp.spawn(stage2_worker, args=args, nprocs=2, join=True)
    cache, teacher, s1, cfg = stage2_setup(setup_root, micro=2)
    one = run_stage2(
        cache, s1, teacher, cfg, tmp_path / "one" / "s2", reward_fn=sample_reward, critic_path=s1
    )
    assert_same(params(tmp_path / "two" / "s2" / "student.safetensors"), params(one))
    two_critic = export_trainable(tmp_path / "two" / "s2" / "checkpoint", "critic")
    assert_same(two_critic, export_trainable(tmp_path / "one" / "s2" / "checkpoint", "critic"))


def test_exact_resume_from_the_distributed_checkpoint(tmp_path, setup_root):
    cache, teacher, s1, cfg = stage2_setup(setup_root, micro=2)
    full = run_stage2(
        cache, s1, teacher, cfg, tmp_path / "full", reward_fn=sample_reward, critic_path=s1
    )
    # A run that stopped after iteration 3 of 4 (its last checkpoint), then restarts.
    cut = with_overrides(cfg, steps=3)
    part = run_stage2(
        cache, s1, teacher, cut, tmp_path / "part", reward_fn=sample_reward, critic_path=s1
    )
    part.unlink()  # as if it had crashed before writing its final checkpoint
    resumed = run_stage2(
        cache, s1, teacher, cfg, tmp_path / "part", reward_fn=sample_reward, critic_path=s1
    )
    assert_same(params(resumed), params(full), atol=0)  # bit-exact
    ema = "student_ema.safetensors"
    assert_same(params(resumed.with_name(ema)), params(full.with_name(ema)), atol=0)


def test_checkpoint_exports_to_one_file_equal_to_the_trained_student(tmp_path, setup_root):
    from lipforcing.cli.main import main

    cache, teacher, s1, cfg = stage2_setup(setup_root, micro=2)
    out = run_stage2(
        cache, s1, teacher, cfg, tmp_path / "s2", reward_fn=sample_reward, critic_path=s1
    )
    exported = export_trainable(tmp_path / "s2" / "checkpoint", "student")
    assert_same(exported, params(out), atol=0)  # full fine-tune: every parameter
    run = str(tmp_path / "s2")
    assert main(["train", "export", run, "--out", str(tmp_path / "x.safetensors")]) == 0
    assert main(["train", "export", run, "--ema", "--out", str(tmp_path / "e.safetensors")]) == 0
    assert_same(params(tmp_path / "x.safetensors"), params(out), atol=0)
    assert_same(
        params(tmp_path / "e.safetensors"), params(out.with_name("student_ema.safetensors")), atol=0
    )
    model, preset = load_checkpoint(tmp_path / "x.safetensors")
    assert preset.model.attention == "block_causal"
    critic, cpreset = load_checkpoint(
        export_checkpoint(tmp_path / "s2", "critic", tmp_path / "c.safetensors")
    )
    assert cpreset.model.attention == "bidirectional"
