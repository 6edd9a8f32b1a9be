"""`lipforcing train {teacher,stage1,stage2}`: bad input is one `error:` line and exit 2, before
any step runs."""

from __future__ import annotations

import pytest
import torch
from test_multinode import random_cache

from lipforcing.cli.main import main


def run(capsys, *argv) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


def test_stage_commands_refuse_bad_input(tmp_path, capsys):
    cache = tmp_path / "latents.pt"
    random_cache(cache)
    common = ["--latents", str(cache), "--recipe", "tiny-quick", "--threads", "1"]
    code, err = run(
        capsys,
        "train",
        "teacher",
        *common,
        "--out",
        str(tmp_path / "t"),
        "--batch-size",
        "3",
        "--micro-batch",
        "2",
    )
    assert code == 2 and "error: batch size 3 is not a multiple of micro-batch 2" in err
    code, err = run(
        capsys,
        "train",
        "stage1",
        "--latents",
        str(tmp_path / "none.pt"),
        "--init",
        str(cache),
        "--out",
        str(tmp_path / "s1"),
    )
    assert code == 2 and "none.pt: no such file or folder" in err
    not_a_cache = tmp_path / "other.pt"
    torch.save({"x0": torch.zeros(1)}, not_a_cache)
    code, err = run(
        capsys, "train", "teacher", "--latents", str(not_a_cache), "--out", str(tmp_path / "t2")
    )
    assert code == 2 and "not a latent cache (missing masked" in err
    s2 = ["train", "stage2", *common, "--student", str(cache), "--teacher", str(cache)]
    code, err = run(capsys, *s2, "--out", str(tmp_path / "s2"))
    assert code == 2 and "the reward needs --syncnet" in err
    wrong = tmp_path / "syncnet_v2.model"
    torch.save({"w": torch.zeros(2)}, wrong)
    code, err = run(capsys, *s2, "--syncnet", str(wrong), "--out", str(tmp_path / "s2"))
    assert code == 2 and "syncnet_v2.model: not syncnet_python's SyncNet weights" in err
    with pytest.raises(SystemExit) as exit_:  # argparse: an unknown recipe is not a choice
        main(["train", "teacher", *common, "--recipe", "nope", "--out", "x"])
    assert exit_.value.code == 2 and "invalid choice: 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "s2").exists() and not (tmp_path / "t").exists()


def test_audio_the_reward_cannot_read_is_one_message_before_any_step(tmp_path, capsys):
    """SyncNet-v2 (its real architecture, random weights) on a cache that kept no raw waveform,
    and our LipSyncNet on Wan-width audio features: one `error:` line each, exit 2, nothing
    trained or written."""
    from lipforcing.evaluation.syncnet import (
        LipSyncNet,
        LipSyncNetConfig,
        SyncNetV2,
        save_syncnet,
    )

    no_wave, wan_audio = tmp_path / "latents.pt", tmp_path / "wan_latents.pt"
    random_cache(no_wave)
    random_cache(wan_audio, audio_dim=10752)
    torch.manual_seed(0)
    v2 = tmp_path / "syncnet_v2.model"
    torch.save(SyncNetV2().state_dict(), v2)
    ours = tmp_path / "syncnet.safetensors"
    save_syncnet(LipSyncNet(LipSyncNetConfig()), ours)
    s2 = ["train", "stage2", "--recipe", "tiny-quick", "--threads", "1"]
    models = ["--student", str(no_wave), "--teacher", str(no_wave)]  # never read: checks first
    out_a, out_b = str(tmp_path / "a"), str(tmp_path / "b")
    code, err = run(
        capsys, *s2, *models, "--latents", str(no_wave), "--syncnet", str(v2), "--out", out_a
    )
    assert code == 2 and err.startswith("error: the SyncNet-v2 reward scores the raw waveform")
    assert err.count("\n") == 1
    code, err = run(
        capsys, *s2, *models, "--latents", str(wan_audio), "--syncnet", str(ours), "--out", out_b
    )
    assert code == 2 and err.startswith("error: our LipSyncNet reward reads 640-d log-mel")
    assert "features are 10752-d" in err and err.count("\n") == 1
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
