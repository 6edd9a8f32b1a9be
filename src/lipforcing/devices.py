"""Device and dtype names as users give them: ``--device auto|cpu|cuda[:i]``,
``--dtype auto|bf16|fp16|fp32``.

``auto`` picks CUDA when this torch build has it and a GPU is visible, else the CPU; the auto
dtype is bf16 on CUDA (the release's inference dtype) and fp32 on the CPU (bf16 matmuls are
slow there). Asking for CUDA on a CPU-only build of torch, or on a machine without a GPU, is
one clear :class:`~lipforcing.errors.UserError`, not an internal error.
"""

from __future__ import annotations

import re

import torch

from lipforcing.errors import UserError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
DEVICE_NAMES = "auto, cpu, cuda or cuda:N"


def resolve_device(name: str | None = "auto") -> torch.device:
    """The torch device for a user-given name (see the module docstring)."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if not re.fullmatch(r"cuda(:\d+)?", name):
        raise UserError(f"unknown device {name!r}; use {DEVICE_NAMES}")
    if torch.version.cuda is None:
        raise UserError(
            f"--device {name}: this torch build ({torch.__version__}) has no CUDA support; "
            "install a CUDA build of PyTorch (docs/INSTALL.md) or use --device cpu"
        )
    if not torch.cuda.is_available():
        raise UserError(
            f"--device {name}: no CUDA GPU is visible (driver or CUDA_VISIBLE_DEVICES?)"
        )
    index = int(name.split(":")[1]) if ":" in name else 0
    if index >= torch.cuda.device_count():
        raise UserError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s)")
    return torch.device(name)


def resolve_dtype(name: str | None, device: torch.device) -> torch.dtype:
    """``auto``: bf16 on CUDA, fp32 elsewhere; else one of :data:`DTYPES`."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if name not in DTYPES:
        raise UserError(f"unknown dtype {name!r}; use auto, {', '.join(DTYPES)}")
    return DTYPES[name]


def dtype_name(dtype: torch.dtype) -> str:
    return {v: k for k, v in DTYPES.items()}[dtype]


__all__ = ["DTYPES", "dtype_name", "resolve_device", "resolve_dtype"]
