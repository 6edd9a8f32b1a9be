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
