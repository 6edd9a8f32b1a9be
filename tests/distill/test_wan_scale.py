"""Stage 2 at Wan widths on the CPU (reduced depth): a 14B-width teacher with a 1.3B-width
student (full fine-tune) and critic, and a 14B-width student and critic under LoRA 128 / 64;
the reward is SyncNet-v2 (random weights, the real architecture) on TAEHV-decoded crops
against the raw waveform. The LoRA run uses two gloo processes and then resumes exactly."""

from __future__ import annotations

import json

import pytest
import torch
import torch.multiprocessing as mp
from wan_helpers import files, run, worker

from lipforcing.models.checkpoints import read_state_dict


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


@pytest.mark.slow
@pytest.mark.timeout(3600)  # three two-process runs of 14B-width models (~8 GB each process)
def test_14b_lora_student_on_two_processes_then_an_exact_resume(tmp_path):
    root = tmp_path / "files"
    files(root, "wan-14b")  # written once, before the processes start
    init = str(tmp_path / "init")
    full = tmp_path / "full"
    mp.spawn(worker, args=(2, init + "a", str(root), str(full), 2), nprocs=2, join=True)
    part = tmp_path / "part"
    mp.spawn(worker, args=(2, init + "b", str(root), str(part), 1), nprocs=2, join=True)
    (part / "student.safetensors").unlink()  # stopped after its first update's checkpoint
    (part / "student_ema.safetensors").unlink()
    mp.spawn(worker, args=(2, init + "c", str(root), str(part), 2), nprocs=2, join=True)
    a, b = (
        read_state_dict(full / "student.safetensors"),
        read_state_dict(part / "student.safetensors"),
    )
    assert a.keys() == b.keys() and all(
        "lora_" in k or k.startswith(("audio_", "patch_")) for k in a
    )
    for k in a:
        assert torch.equal(a[k], b[k]), k  # bit-exact
    history = json.loads((part / "trainer.json").read_text())["history"]
    assert [h["role"] for h in history] == ["student", "critic"]
