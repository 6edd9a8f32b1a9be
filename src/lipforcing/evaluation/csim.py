"""CSIM: identity cosine similarity between generated and ground-truth faces.

Two identity networks:
- dlib's 128-d face-recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``, shipped
  by face-recognition-models; the default because its weights install offline). Input: the
  150x150 chip that ``dlib.get_face_chip_details(shape68, 150, padding=0.25)`` describes.
- ArcFace r100 (``iresnet100``, InsightFace ``arcface_torch`` layout and parameter names, our
  own PyTorch code), weights from a user-given ``.pth`` / ``.safetensors`` path (the paper's
  CSIM network; never downloaded). Input: the 112x112 crop aligned to InsightFace's 5-point
  template, RGB scaled ``(x / 255 - 0.5) / 0.5``; output the 512-d embedding.
Chips for BOTH videos are cut with the ground truth's landmarks
(:mod:`lipforcing.evaluation.protocol`), so a pred/gt pair differs only in pixels.
CSIM of a video = mean over frames of the cosine between pred and gt embeddings.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lipforcing.errors import CheckpointError, UserError
from lipforcing.media.faces import _model_path

DLIB_CHIP = 150  # px, dlib's aligned chip side
DLIB_PADDING = 0.25  # dlib's default padding around the face for recognition
ARCFACE_SIZE = 112  # px, InsightFace crop side


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of (N, D) embeddings -> (N,)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


@functools.cache
def _dlib_recognizer():
    import dlib

    return dlib.face_recognition_model_v1(_model_path("dlib_face_recognition_resnet_model_v1.dat"))


class DlibFaceNet:
    """dlib's 128-d identity embedding of 150x150 chips."""

    name = "dlib face-recognition ResNet (128-d)"
    chip = "dlib"

    def embed(self, chips: np.ndarray) -> np.ndarray:
        """(N, 150, 150, 3) uint8 RGB chips -> (N, 128) float64."""
        chips = np.asarray(chips)
        if chips.ndim != 4 or chips.shape[1:] != (DLIB_CHIP, DLIB_CHIP, 3):
            raise UserError(f"dlib chips must be (N, 150, 150, 3), got {chips.shape}")
        net = _dlib_recognizer()
        out = [np.array(net.compute_face_descriptor(np.ascontiguousarray(c))) for c in chips]
        return np.stack(out) if out else np.zeros((0, 128))


# ---------------------------------------------------------------- ArcFace iresnet100


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


class IBasicBlock(nn.Module):
    """InsightFace's improved residual block: BN, conv, BN, PReLU, conv (stride), BN."""

    def __init__(self, cin: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, eps=1e-5)
        self.conv1 = _conv3x3(cin, planes)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-5)
        self.prelu = nn.PReLU(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-5)
        self.downsample = None
        if stride != 1 or cin != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, planes, 1, stride, bias=False), nn.BatchNorm2d(planes, eps=1e-5)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class IResNet(nn.Module):
    """ArcFace backbone; ``forward(x (N, 3, 112, 112) in [-1, 1]) -> (N, 512)``."""

    def __init__(self, layers=(3, 13, 30, 3), num_features: int = 512) -> None:
        super().__init__()
        self.conv1 = _conv3x3(3, 64)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        cin = 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
            blocks = [IBasicBlock(cin, planes, 2)] + [
                IBasicBlock(planes, planes) for _ in range(n - 1)
            ]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            cin = planes
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.dropout = nn.Dropout(0.0)
        self.fc = nn.Linear(512 * 7 * 7, num_features)  # 112 px / 16 = 7
        self.features = nn.BatchNorm1d(num_features, eps=1e-5)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-3:] != (3, ARCFACE_SIZE, ARCFACE_SIZE):
            raise UserError(f"ArcFace expects (N, 3, 112, 112), got {tuple(x.shape)}")
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        return self.features(self.fc(x))


def iresnet100() -> IResNet:
    return IResNet((3, 13, 30, 3))


def load_arcface(path: str | Path, layers=(3, 13, 30, 3)) -> IResNet:
    """ArcFace iresnet from an InsightFace ``backbone.pth`` (or ``.safetensors``) state dict."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no ArcFace weights at {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        state = {k.removeprefix("module."): v for k, v in state.items()}
        model = IResNet(layers)
        model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    except (RuntimeError, AttributeError, ValueError, OSError) as e:
        raise CheckpointError(
            f"{path}: not an ArcFace iresnet ({str(e).splitlines()[0]})"
        ) from None
    return model.requires_grad_(False).eval()


class ArcFaceNet:
    """ArcFace identity embedding of 112x112 aligned crops (float32)."""

    name = "ArcFace iresnet100 (512-d)"
    chip = "arcface"

    def __init__(self, model: IResNet) -> None:
        self.model = model.float().eval()

    @classmethod
    def load(cls, path: str | Path) -> ArcFaceNet:
        return cls(load_arcface(path))

    @torch.no_grad()
    def embed(self, chips: np.ndarray, batch: int = 32) -> np.ndarray:
        """(N, 112, 112, 3) uint8 RGB -> (N, 512) float64, L2-normalised."""
        out = []
        for i in range(0, len(chips), batch):
            x = torch.from_numpy(np.array(chips[i : i + batch])).permute(0, 3, 1, 2).float()
            out.append(F.normalize(self.model((x / 255 - 0.5) / 0.5), dim=1))
        return torch.cat(out).double().numpy() if out else np.zeros((0, 512))


__all__ = [
    "ArcFaceNet",
    "DlibFaceNet",
    "IBasicBlock",
    "IResNet",
    "cosine",
    "iresnet100",
    "load_arcface",
]
