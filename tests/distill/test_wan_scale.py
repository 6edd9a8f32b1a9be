"""Stage 2 at Wan widths on the CPU (reduced depth): a 14B-width teacher with a 1.3B-width
student (full fine-tune) and critic, and a 14B-width student and critic under LoRA 128 / 64;
the reward is SyncNet-v2 (random weights, the real architecture) on TAEHV-decoded crops
against the raw waveform. Each run makes 2 updates (student, critic) and resumes exactly after
its first; the cross-scale one on two gloo processes, the 14B LoRA one on one process (two
when the machine has ~16 GB free: two processes of 14B-width models)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import torch.multiprocessing as mp
from wan_helpers import available_gib, files, run, worker

from lipforcing.models.checkpoints import read_state_dict


@pytest.fixture(autouse=True)
def _free_disk(tmp_path):
    """Wan-width weights and checkpoints are 3-7 GB a test on a shared disk: removed after."""
    yield
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.mark.parametrize("teacher", ["wan-1.3b", pytest.param("wan-14b", marks=pytest.mark.slow)])
def test_teacher_distils_into_a_1_3b_student_with_the_syncnet_v2_reward(tmp_path, teacher):
    """The fast variant (1.3B-width teacher) runs in make test; the 14B-width teacher is slow."""
    out = run(tmp_path / "files", tmp_path / "s2", "wan-1.3b", None, teacher=teacher, save_every=9)
    trained = read_state_dict(out)
    start = read_state_dict(files(tmp_path / "files", "wan-1.3b", teacher)["student"])
    assert trained.keys() == start.keys()  # full fine-tune: the whole student
    assert any(not torch.equal(trained[k], start[k]) for k in start)
    history = json.loads((tmp_path / "s2" / "trainer.json").read_text())["history"]
    assert [h["role"] for h in history] == ["student", "critic"]
    assert "reward" in history[0] and history[0]["weight"] > 0
    assert (tmp_path / "s2" / "student_ema.safetensors").is_file()


def spawn_run(root, out, steps: int, student: str, procs: int, init: str) -> None:
    args = (procs, init, str(root), str(out), steps, student)
    mp.spawn(worker, args=args, nprocs=procs, join=True)


def two_updates_then_exact_resume(tmp_path, student: str, procs: int) -> dict:
    """A run of 2 updates (student, critic) on ``procs`` gloo processes, and the same run
    stopped after its first update's checkpoint and restarted: bit-identical students."""
    root = tmp_path / "files"
    files(root, student)  # written once, before the processes start
    init = str(tmp_path / "init")
    full, part = tmp_path / "full", tmp_path / "part"
    spawn_run(root, full, 2, student, procs, init + "a")
    spawn_run(root, part, 1, student, procs, init + "b")
    (part / "student.safetensors").unlink()  # as if it had stopped before its final write
    (part / "student_ema.safetensors").unlink()
    spawn_run(root, part, 2, student, procs, init + "c")
    a, b = (
        read_state_dict(full / "student.safetensors"),
        read_state_dict(part / "student.safetensors"),
    )
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k  # bit-exact
    history = json.loads((part / "trainer.json").read_text())["history"]
    assert [h["role"] for h in history] == ["student", "critic"]
    return a


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_14b_teacher_1_3b_student_on_two_processes_then_an_exact_resume(tmp_path):
    """The cross-scale run (14B-width teacher, 1.3B-width student and critic, full fine-tune)
    on two gloo processes (~4 GB each)."""
    two_updates_then_exact_resume(tmp_path, "wan-1.3b", 2)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_14b_lora_student_then_an_exact_resume(tmp_path):
    """The 14B-width student and critic under LoRA 128 / 64, one process (~8 GB)."""
    a = two_updates_then_exact_resume(tmp_path, "wan-14b", 1)
    assert all(
        "lora_" in k or k.endswith(".alpha") or k.startswith(("audio_", "patch_")) for k in a
    )


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.skipif(available_gib() < 20, reason="two 14B-width processes need ~16 GB free")
def test_14b_lora_student_on_two_processes_then_an_exact_resume(tmp_path):
    two_updates_then_exact_resume(tmp_path, "wan-14b", 2)
