"""The codec interface every part uses, and the TAEHV-family codec that implements it.

Layout (Wan's causal video latents): ``T = 1 + 4 (F - 1)`` frames <-> ``F`` latent frames;
the first frame is encoded alone. A TAEHV-family stack works on groups of 4 frames, so the
decoder drops its first 3 frames. The tiny codec's encoder repeats the first frame 3 times in
front (exactly causal: streamable chunk by chunk); the official TAEHV encoder instead pads the
end with copies of the last frame (as its reference implementation does), so its stream
encoder takes whole groups of 4 frames.
Latents are normalised per channel with the codec's ``latent_mean`` / ``latent_std``.

Streaming: ``stream_encoder().push(x)`` takes ``1 + 4k`` frames first and ``4k`` afterwards,
``stream_decoder().push(z)`` returns ``1 + 4 (F - 1)`` frames first and ``4 F`` afterwards;
concatenated, both equal the whole-clip :meth:`Codec.encode` / :meth:`Codec.decode`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lipforcing.codecs.taehv import (
    pixel_patch,
    pixel_unpatch,
    run_stack,
    taehv_decoder,
    taehv_encoder,
    tiny_decoder,
    tiny_encoder,
)
from lipforcing.config import CodecConfig

Tensor = torch.Tensor
TRIM = 3  # frames added in front of the first frame (time stride 4, first frame alone)


class Codec(nn.Module):
    """Video <-> normalised latents. ``encoder`` / ``decoder`` are TAEHV-family stacks."""

    def __init__(self, cfg: CodecConfig, encoder: nn.Sequential, decoder: nn.Sequential) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = encoder
        self.decoder = decoder
        c = cfg.latent_channels
        self.register_buffer("latent_mean", torch.zeros(c))
        self.register_buffer("latent_std", torch.ones(c))
        # Official TAEHV works on [0, 1] pixels and pads the end; ours [-1, 1], pads the front.
        self.unit_pixels = cfg.kind == "taehv"
        self.front_pad = cfg.kind != "taehv"
        self.patch = 1
        # Tiny codec: a fixed colour summary (4 frames x 4x4 pixel averages) rides in the first
        # 12 latent channels and is upsampled back in the decoder; the networks learn residuals
        # around it (space-to-channel shortcuts, as in DC-AE: much faster convergence).
        self.shortcut = cfg.kind == "tiny"
        self.to(memory_format=torch.channels_last)  # fast CPU convolutions (see run_stack)

    # ------------------------------------------------------------------ geometry

    @property
    def temporal_stride(self) -> int:
        return self.cfg.temporal_stride

    @property
    def spatial_stride(self) -> int:
        return self.cfg.spatial_stride

    @property
    def latent_channels(self) -> int:
        return self.cfg.latent_channels

    def video_frames(self, latent_frames: int) -> int:
        return self.cfg.video_frames(latent_frames)

    def latent_frames(self, video_frames: int) -> int:
        return self.cfg.latent_frames(video_frames)

    # ------------------------------------------------------------------ pieces

    def _check_video(self, video: Tensor, first: bool, memory_free: bool = False) -> None:
        if video.dim() != 5 or video.shape[1] != 3:
            raise ValueError(f"video must be (B, 3, T, H, W), got {tuple(video.shape)}")
        t, (h, w) = video.shape[2], video.shape[-2:]
        s = self.spatial_stride
        if h % s or w % s:
            raise ValueError(f"frame size {h}x{w} is not a multiple of {s}")
        if first and not self.front_pad:  # official TAEHV: any length when whole, else 4k
            ok = memory_free or t % self.temporal_stride == 0
        else:
            ok = (t - 1) % self.temporal_stride == 0 if first else t % self.temporal_stride == 0
        if t < 1 or not ok:
            need = "1 + 4k" if first and self.front_pad else "4k"
            raise ValueError(f"{t} frames: this call needs {need} frames")

    def _normalise(self, z: Tensor) -> Tensor:
        shape = (1, -1, 1, 1, 1)
        return (z - self.latent_mean.view(shape)) / self.latent_std.view(shape)

    def _denormalise(self, z: Tensor) -> Tensor:
        shape = (1, -1, 1, 1, 1)
        return z * self.latent_std.view(shape) + self.latent_mean.view(shape)

    def _encode_frames(self, video: Tensor, memory, first: bool) -> Tensor:
        """(B, 3, T, H, W) in [-1, 1] -> (B, C, F, h, w) normalised."""
        x = video.transpose(1, 2)  # (B, T, 3, H, W)
        if first and self.front_pad:
            x = torch.cat([x[:, :1].expand(-1, TRIM, -1, -1, -1), x], 1)
        elif memory is None and x.shape[1] % self.temporal_stride:
            pad = self.temporal_stride - x.shape[1] % self.temporal_stride
            x = torch.cat([x, x[:, -1:].expand(-1, pad, -1, -1, -1)], 1)
        if self.unit_pixels:
            x = (x + 1) / 2
        return self._normalise(self.encode_raw(x, memory).transpose(1, 2))

    def encode_raw(self, x: Tensor, memory=None) -> Tensor:
        """Padded frames ``(B, 4k, 3, H, W)`` -> raw latents ``(B, k, C, h, w)``."""
        z = run_stack(self.encoder, pixel_patch(x, self.patch), memory)
        if self.shortcut:
            s = colour_summary(x)
            z = z + F.pad(s, (0, 0, 0, 0, 0, z.shape[2] - s.shape[2]))
        return z

    def decode_raw(self, z: Tensor, memory=None) -> Tensor:
        """Raw latents ``(B, k, C, h, w)`` -> frames ``(B, 4k, 3, H, W)`` (untrimmed)."""
        x = pixel_unpatch(run_stack(self.decoder, z, memory), self.patch)
        if self.shortcut:
            x = x + colour_expand(z[:, :, : 4 * 3], self.temporal_stride)
        return x

    def _decode_latents(self, z: Tensor, memory, first: bool) -> Tensor:
        """(B, C, F, h, w) normalised -> (B, 3, T, H, W) in [-1, 1] (about)."""
        x = self.decode_raw(self._denormalise(z).transpose(1, 2), memory)
        if self.unit_pixels:
            x = x * 2 - 1
        if first:
            x = x[:, TRIM:]
        return x.transpose(1, 2)

    # ------------------------------------------------------------------ whole clips

    def encode(self, video: Tensor) -> Tensor:
        self._check_video(video, first=True, memory_free=True)
        return self._encode_frames(video, None, first=True)

    def decode(self, z: Tensor) -> Tensor:
        if z.dim() != 5 or z.shape[1] != self.latent_channels:
            raise ValueError(f"latents must be (B, {self.latent_channels}, F, h, w)")
        return self._decode_latents(z, None, first=True)

    def stream_encoder(self) -> StreamEncoder:
        return StreamEncoder(self)

    def stream_decoder(self) -> StreamDecoder:
        return StreamDecoder(self)


def colour_summary(x: Tensor) -> Tensor:
    """``(B, 4k, 3, H, W)`` -> ``(B, k, 12, H/8, W/8)``: the mean colour of each 4x4 pixel
    block over each group of 4 frames, its 2x2 blocks stacked as channels."""
    b, t, c, h, w = x.shape
    y = x.reshape(b, t // 4, 4, c, h, w).mean(2).flatten(0, 1)
    y = F.pixel_unshuffle(F.avg_pool2d(y, 4), 2)
    return y.unflatten(0, (b, t // 4))


def colour_expand(s: Tensor, stride: int) -> Tensor:
    """Inverse of :func:`colour_summary` up to blur: ``(B, k, 12, h, w)`` -> bilinear
    ``(B, 4k, 3, 8h, 8w)``, each latent frame's colours repeated over its 4 frames."""
    b, k = s.shape[:2]
    y = F.pixel_shuffle(s.flatten(0, 1), 2)
    y = F.interpolate(y, scale_factor=4, mode="bilinear", align_corners=False)
    y = y.unflatten(0, (b, k)).unsqueeze(2).expand(-1, -1, stride, -1, -1, -1)
    return y.flatten(1, 2)


class _Stream:
    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self.reset()

    def reset(self) -> None:
        self.memory: dict[int, Tensor] = {}
        self.started = False


class StreamEncoder(_Stream):
    """Chunk-by-chunk encoder: ``1 + 4k`` frames first, then ``4k`` frames per push."""

    def push(self, video: Tensor) -> Tensor:
        first = not self.started
        self.codec._check_video(video, first)
        z = self.codec._encode_frames(video, self.memory, first)
        self.started = True
        return z


class StreamDecoder(_Stream):
    """Chunk-by-chunk decoder: latents in, their frames out (3 fewer on the first push)."""

    def push(self, z: Tensor) -> Tensor:
        first = not self.started
        x = self.codec._decode_latents(z, self.memory, first)
        self.started = True
        return x


def init_weights(codec: Codec) -> Codec:
    """He-normal convolutions and identity-like MemBlocks (last convolution of each residual
    branch zero), so a fresh deep ReLU stack passes its input through instead of shrinking it
    (PyTorch's default init leaves the latent at ~4% of its trained scale and trains slowly)."""
    from lipforcing.codecs.taehv import MemBlock

    for m in codec.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    for m in codec.modules():
        if isinstance(m, MemBlock):
            nn.init.zeros_(m.conv[4].weight)
    for stack in (codec.encoder, codec.decoder):
        last = [m for m in stack if isinstance(m, nn.Conv2d)][-1]
        nn.init.xavier_normal_(last.weight)
        if codec.shortcut:  # start as the colour shortcut alone; the nets learn the residual
            nn.init.zeros_(last.weight)
    return codec


def build_taehv_family(cfg: CodecConfig) -> Codec:
    """Randomly initialised codec of ``cfg`` (``tiny`` or ``taehv``)."""
    c = cfg.latent_channels
    if cfg.spatial_stride != 8 or cfg.temporal_stride != 4:
        raise ValueError("TAEHV-family codecs have strides 4 (time) x 8 x 8 (space)")
    if cfg.kind == "tiny":
        return init_weights(Codec(cfg, tiny_encoder(c, cfg.width), tiny_decoder(c, cfg.width)))
    if cfg.kind == "taehv":
        dec = (
            (256, 128, 64, 64)
            if cfg.width == 64
            else (4 * cfg.width, 2 * cfg.width) + (cfg.width,) * 2
        )
        return Codec(cfg, taehv_encoder(c, cfg.width), taehv_decoder(c, dec))
    raise ValueError(f"not a TAEHV-family codec: {cfg.kind}")


__all__ = ["Codec", "StreamDecoder", "StreamEncoder", "build_taehv_family"]
