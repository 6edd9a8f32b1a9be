"""--device auto / --dtype: CUDA on a CPU build of torch is one clear message."""

from __future__ import annotations

import pytest
import torch

from lipforcing.devices import resolve_device, resolve_dtype
from lipforcing.errors import UserError


def test_auto_and_names():
    auto = resolve_device("auto")
    assert auto.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16
    assert resolve_dtype("fp16", torch.device("cpu")) == torch.float16
    with pytest.raises(UserError, match="unknown dtype"):
        resolve_dtype("int8", auto)
    with pytest.raises(UserError, match="unknown device"):
        resolve_device("tpu")


@pytest.mark.skipif(torch.version.cuda is not None, reason="needs a CPU-only torch build")
def test_cuda_on_a_cpu_build_is_one_message(capsys):
    from lipforcing.cli.main import main

    with pytest.raises(UserError, match="has no CUDA support; install a CUDA build"):
        resolve_device("cuda")
    assert main(["sync", "--video", "v.mp4", "--audio", "a.wav", "--out", "o.mp4",
                 "--device", "cuda"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert err.startswith("error: --device cuda: this torch build") and err.count("\n") == 1
