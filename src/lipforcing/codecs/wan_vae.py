"""The Wan 2.1 VAE behind the codec interface, on diffusers' ``AutoencoderKLWan``.

- Weights: diffusers format (``diffusion_pytorch_model.safetensors``) or the original
  ``Wan2.1_VAE.pth``, whose key names are converted here by rule (the original's flat
  ``downsamples`` / ``upsamples`` lists and ``residual.{0,2,3,6}`` indices to diffusers'
  ``down_blocks`` / ``up_blocks.<level>.resnets`` / ``norm1, conv1, norm2, conv2``).
- Latents: the posterior mean, normalised with Wan's per-channel ``latents_mean`` / ``std``.
- Streaming: the VAE is causal in time (first frame alone, then groups of 4, with a cache of
  the last frames of every causal convolution); the stream encoder / decoder keep that cache
  between pushes, so chunked results equal the whole clip.

:class:`ComposedCodec` pairs the Wan VAE encoder with a TAEHV decoder (the official Lip Forcing
inference setup).
"""

from __future__ import annotations

import re

import torch
from torch import nn

from lipforcing.config import CodecConfig

Tensor = torch.Tensor
RESIDUAL = {"0.gamma": "norm1.gamma", "2": "conv1", "3.gamma": "norm2.gamma", "6": "conv2"}


def _residual(rest: str) -> str:
    """``residual.<i>.<param>`` / ``shortcut.<param>`` -> diffusers' resnet names."""
    if rest.startswith("shortcut."):
        return "conv_shortcut." + rest[len("shortcut.") :]
    m = re.fullmatch(r"residual\.(\d)\.(\w+)", rest)
    if not m:
        return rest
    idx, param = m.groups()
    if idx in ("0", "3"):
        return RESIDUAL[f"{idx}.gamma"]
    return f"{RESIDUAL[idx]}.{param}"


RELEASED_BASE_DIM = 96  # base channel width of Wan2.1_VAE.pth (AutoencoderKLWan's default)


def original_to_diffusers(key: str, num_res_blocks: int = 2) -> str:
    """One key of ``Wan2.1_VAE.pth`` -> its name in ``AutoencoderKLWan``."""
    top = {"conv1": "quant_conv", "conv2": "post_quant_conv"}
    head, _, rest = key.partition(".")
    if head in top:
        return f"{top[head]}.{rest}"
    if head not in ("encoder", "decoder"):
        return key
    part, _, rest = rest.partition(".")
    if part == "conv1":
        return f"{head}.conv_in.{rest}"
    if part == "head":
        idx, _, param = rest.partition(".")
        return f"{head}.norm_out.gamma" if idx == "0" else f"{head}.conv_out.{param}"
    if part == "middle":
        idx, _, rest = rest.partition(".")
        if idx == "1":
            return f"{head}.mid_block.attentions.0.{rest}"
        return f"{head}.mid_block.resnets.{int(idx) // 2}.{_residual(rest)}"
    if part == "downsamples":
        idx, _, rest = rest.partition(".")
        return f"encoder.down_blocks.{idx}.{_residual(rest)}"
    if part == "upsamples":
        idx, _, rest = rest.partition(".")
        group = num_res_blocks + 2  # (num_res_blocks + 1) resnets, then one resample
        level, pos = divmod(int(idx), group)
        if pos <= num_res_blocks:
            return f"decoder.up_blocks.{level}.resnets.{pos}.{_residual(rest)}"
        return f"decoder.up_blocks.{level}.upsamplers.0.{rest}"
    return key


def original_keys(
    base_dim: int = RELEASED_BASE_DIM,
    dim_mult: tuple[int, ...] = (1, 2, 4, 4),
    num_res_blocks: int = 2,
    temporal_downsample: tuple[bool, ...] = (False, True, True),
) -> list[str]:
    """The parameter names of the original Wan 2.1 VAE (``wan/modules/vae.py``'s layout)."""
    keys = ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"]

    def res(prefix: str, shortcut: bool) -> None:
        keys.extend(f"{prefix}.residual.{i}.gamma" for i in (0, 3))
        keys.extend(f"{prefix}.residual.{i}.{p}" for i in (2, 6) for p in ("weight", "bias"))
        if shortcut:
            keys.extend(f"{prefix}.shortcut.{p}" for p in ("weight", "bias"))

    def resample(prefix: str, temporal: bool) -> None:
        keys.extend(f"{prefix}.resample.1.{p}" for p in ("weight", "bias"))
        if temporal:
            keys.extend(f"{prefix}.time_conv.{p}" for p in ("weight", "bias"))

    def middle_and_head(side: str) -> None:
        res(f"{side}.middle.0", False)
        keys.append(f"{side}.middle.1.norm.gamma")
        keys.extend(
            f"{side}.middle.1.{n}.{p}" for n in ("to_qkv", "proj") for p in ("weight", "bias")
        )
        res(f"{side}.middle.2", False)
        keys.append(f"{side}.head.0.gamma")
        keys.extend(f"{side}.head.2.{p}" for p in ("weight", "bias"))

    dims = [base_dim * m for m in (1, *dim_mult)]
    keys.extend(f"encoder.conv1.{p}" for p in ("weight", "bias"))
    n = 0
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        for _ in range(num_res_blocks):
            res(f"encoder.downsamples.{n}", d_in != d_out)
            d_in, n = d_out, n + 1
        if i != len(dim_mult) - 1:
            resample(f"encoder.downsamples.{n}", temporal_downsample[i])
            n += 1
    middle_and_head("encoder")

    up = list(temporal_downsample[::-1])
    dims = [base_dim * m for m in (dim_mult[-1], *dim_mult[::-1])]
    keys.extend(f"decoder.conv1.{p}" for p in ("weight", "bias"))
    n = 0
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        if i in (1, 2, 3):
            d_in //= 2  # the previous level's upsampling halved the channels
        for _ in range(num_res_blocks + 1):
            res(f"decoder.upsamples.{n}", d_in != d_out)
            d_in, n = d_out, n + 1
        if i != len(dim_mult) - 1:
            resample(f"decoder.upsamples.{n}", up[i])
            n += 1
    middle_and_head("decoder")
    return keys


class WanVAECodec(nn.Module):
    """Wan 2.1 VAE with the codec interface (see :mod:`lipforcing.codecs.base`)."""

    def __init__(self, cfg: CodecConfig, vae_config: dict | None = None) -> None:
        super().__init__()
        from diffusers import AutoencoderKLWan

        self.cfg = cfg
        self.vae = AutoencoderKLWan(**(vae_config or {}))
        c = self.vae.config
        self.register_buffer("latent_mean", torch.tensor(c.latents_mean, dtype=torch.float32))
        self.register_buffer("latent_std", torch.tensor(c.latents_std, dtype=torch.float32))
        self.num_res_blocks = c.num_res_blocks

    temporal_stride = property(lambda self: self.cfg.temporal_stride)
    spatial_stride = property(lambda self: self.cfg.spatial_stride)
    latent_channels = property(lambda self: self.cfg.latent_channels)

    def video_frames(self, latent_frames: int) -> int:
        return self.cfg.video_frames(latent_frames)

    def latent_frames(self, video_frames: int) -> int:
        return self.cfg.latent_frames(video_frames)

    def convert_state_dict(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """Original (``Wan2.1_VAE.pth``), diffusers or our own key names -> ours."""
        if any(k.startswith("vae.") for k in state):
            return dict(state)
        original = "encoder.downsamples.0.residual.0.gamma" in state or "conv1.weight" in state
        out = {}
        for k, v in state.items():
            name = original_to_diffusers(k, self.num_res_blocks) if original else k
            out[f"vae.{name}"] = v
        return out

    # ------------------------------------------------------------------ core

    def _norm(self, z: Tensor) -> Tensor:
        shape = (1, -1, 1, 1, 1)
        return (z - self.latent_mean.view(shape)) / self.latent_std.view(shape)

    def _denorm(self, z: Tensor) -> Tensor:
        shape = (1, -1, 1, 1, 1)
        return z * self.latent_std.view(shape) + self.latent_mean.view(shape)

    def _enc_cache(self) -> list:
        return [None] * self.vae._cached_conv_counts["encoder"]

    def _dec_cache(self) -> list:
        return [None] * self.vae._cached_conv_counts["decoder"]

    def _encode_groups(self, video: Tensor, cache: list, first: bool) -> Tensor:
        t = video.shape[2]
        s = self.temporal_stride
        starts = ([0] if first else []) + list(range(1 if first else 0, t, s))
        ends = ([1] if first else []) + [min(a + s, t) for a in starts[1 if first else 0 :]]
        outs = []
        for a, b in zip(starts, ends, strict=True):
            outs.append(self.vae.encoder(video[:, :, a:b], feat_cache=cache, feat_idx=[0]))
        mu = self.vae.quant_conv(torch.cat(outs, 2))[:, : self.latent_channels]
        return self._norm(mu)

    def _decode_frames(self, z: Tensor, cache: list, first: bool) -> Tensor:
        x = self.vae.post_quant_conv(self._denorm(z))
        outs = []
        for i in range(x.shape[2]):
            kwargs = {"first_chunk": True} if first and i == 0 else {}
            outs.append(
                self.vae.decoder(x[:, :, i : i + 1], feat_cache=cache, feat_idx=[0], **kwargs)
            )
        return torch.cat(outs, 2).clamp(-1, 1)

    def _check(self, video: Tensor, first: bool) -> None:
        t = video.shape[2]
        ok = (t - 1) % self.temporal_stride == 0 if first else t % self.temporal_stride == 0
        if video.dim() != 5 or video.shape[1] != 3 or not ok:
            need = "1 + 4k" if first else "4k"
            raise ValueError(f"video {tuple(video.shape)}: need (B, 3, {need}, H, W)")

    def encode(self, video: Tensor) -> Tensor:
        self._check(video, True)
        return self._encode_groups(video, self._enc_cache(), True)

    def decode(self, z: Tensor) -> Tensor:
        return self._decode_frames(z, self._dec_cache(), True)

    def stream_encoder(self) -> _WanStream:
        return _WanStream(self, encode=True)

    def stream_decoder(self) -> _WanStream:
        return _WanStream(self, encode=False)


class _WanStream:
    def __init__(self, codec: WanVAECodec, *, encode: bool) -> None:
        self.codec, self.encode = codec, encode
        self.reset()

    def reset(self) -> None:
        self.cache = self.codec._enc_cache() if self.encode else self.codec._dec_cache()
        self.started = False

    def push(self, x: Tensor) -> Tensor:
        first = not self.started
        if self.encode:
            self.codec._check(x, first)
            y = self.codec._encode_groups(x, self.cache, first)
        else:
            y = self.codec._decode_frames(x, self.cache, first)
        self.started = True
        return y


class ComposedCodec(nn.Module):
    """Encode with one codec (Wan VAE), decode with another (TAEHV) in the same latent space."""

    def __init__(self, encoder_codec: nn.Module, decoder_codec: nn.Module) -> None:
        super().__init__()
        self.enc, self.dec = encoder_codec, decoder_codec
        self.cfg = encoder_codec.cfg

    temporal_stride = property(lambda self: self.enc.temporal_stride)
    spatial_stride = property(lambda self: self.enc.spatial_stride)
    latent_channels = property(lambda self: self.enc.latent_channels)

    def video_frames(self, latent_frames: int) -> int:
        return self.enc.video_frames(latent_frames)

    def latent_frames(self, video_frames: int) -> int:
        return self.enc.latent_frames(video_frames)

    def encode(self, video: Tensor) -> Tensor:
        return self.enc.encode(video)

    def decode(self, z: Tensor) -> Tensor:
        return self.dec.decode(z)

    def stream_encoder(self):
        return self.enc.stream_encoder()

    def stream_decoder(self):
        return self.dec.stream_decoder()


def build_wan_vae(cfg: CodecConfig, vae_config: dict | None = None) -> WanVAECodec:
    """A randomly initialised Wan 2.1 VAE (``vae_config`` overrides for small test models)."""
    return WanVAECodec(cfg, vae_config)


__all__ = [
    "RELEASED_BASE_DIM",
    "ComposedCodec",
    "WanVAECodec",
    "build_wan_vae",
    "original_keys",
    "original_to_diffusers",
]
