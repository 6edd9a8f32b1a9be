"""Latent codecs: one interface (:class:`~lipforcing.codecs.base.Codec`) for the tiny CPU codec,
the Tiny AutoEncoder (TAEHV, ``taew2_1``) and the Wan 2.1 VAE; a preset's ``CodecConfig``
picks one. Checkpoints are safetensors files whose header names the codec configuration.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from lipforcing.codecs.base import Codec, StreamDecoder, StreamEncoder, build_taehv_family
from lipforcing.config import CodecConfig
from lipforcing.errors import CheckpointError

FORMAT = "lipforcing-codec"


def build_codec(cfg: CodecConfig, weights: str | Path | None = None) -> Codec:
    """A codec of ``cfg``: randomly initialised, or with ``weights`` (a file) loaded."""
    if cfg.kind in ("tiny", "taehv"):
        codec = build_taehv_family(cfg)
    elif cfg.kind == "wan_vae":
        from lipforcing.codecs.wan_vae import build_wan_vae

        codec = build_wan_vae(cfg)
    else:
        raise CheckpointError(f"unknown codec kind {cfg.kind!r}")
    if weights is not None:
        load_weights(codec, weights)
    return codec


def _read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if not path.is_file():
        raise CheckpointError(f"no codec checkpoint at {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), "pt") as f:
                names = list(f.keys())  # noqa: SIM118 (safe_open is not a dict)
                return {k: f.get_tensor(k) for k in names}, dict(f.metadata() or {})
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt or foreign file: one line, no traceback
        raise CheckpointError(
            f"{path.name} is not a readable checkpoint ({type(e).__name__})"
        ) from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise CheckpointError(f"{path.name} does not hold a state dict of tensors")
    return state, {}


def load_weights(codec: Codec, path: str | Path) -> Codec:
    """Load a state dict (ours or an official file with the same key names) into ``codec``."""
    path = Path(path)
    state, _ = _read_tensors(path)
    if hasattr(codec, "convert_state_dict"):
        state = codec.convert_state_dict(state)
    own = codec.state_dict()
    # Official TAEHV files carry no latent statistics: keep the codec's (identity) ones.
    for key in ("latent_mean", "latent_std"):
        if key in own and key not in state:
            state[key] = own[key]
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"{path.name} does not fit a {codec.cfg.kind} codec: {len(missing)} missing keys "
            f"(e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]})"
        )
    bad = [k for k in own if own[k].shape != state[k].shape]
    if bad:
        raise CheckpointError(f"{path.name}: shape mismatch for {bad[:3]} (another width?)")
    codec.load_state_dict(state)
    return codec


def save_codec(path: str | Path, codec: Codec, extra: dict | None = None) -> Path:
    """Write ``codec`` as safetensors with its configuration in the header."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"{path}: codecs are written as .safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in codec.state_dict().items()}
    meta = {"format": FORMAT, "codec": json.dumps(dataclasses.asdict(codec.cfg))}
    if extra:
        meta["extra"] = json.dumps(extra)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def load_codec(
    path: str | Path, cfg: CodecConfig | None = None, decoder: str | Path | None = None
) -> Codec:
    """A codec from ``path``: our safetensors (configuration in the header), an official TAEHV
    (``taew2_1.pth`` / ``.safetensors``), or a Wan 2.1 VAE (``Wan2.1_VAE.pth``, or a diffusers
    ``vae/`` folder / ``diffusion_pytorch_model.safetensors``), each recognised by its keys.
    ``decoder`` (e.g. ``taew2_1.pth``) decodes instead of ``path``'s own decoder (the official
    Lip Forcing setup: Wan VAE encode, TAEHV decode)."""
    if decoder is not None:
        from lipforcing.codecs.wan_vae import ComposedCodec

        return ComposedCodec(load_codec(path, cfg), load_codec(decoder))
    path = Path(path)
    if path.is_dir():
        path = path / "diffusion_pytorch_model.safetensors"
    state, meta = _read_tensors(path)
    if cfg is None:
        if (
            meta.get("format") == "lipforcing-dit"
            or meta.get("format", "").startswith("lipforcing")
            and meta.get("format") != FORMAT
        ):
            raise CheckpointError(f"{path.name} is a model checkpoint, not a codec")
        if meta.get("format") == FORMAT:
            try:
                cfg = CodecConfig(**json.loads(meta["codec"]))
            except (KeyError, TypeError, ValueError) as e:
                raise CheckpointError(f"{path.name}: bad codec header ({e})") from None
        elif "encoder.0.weight" in state and "decoder.1.weight" in state:
            width = int(state["encoder.0.weight"].shape[0])
            cfg = CodecConfig(kind="taehv", width=width, image_size=512)
        elif any(k.startswith(("encoder.downsamples.", "encoder.down_blocks.")) for k in state):
            cfg = CodecConfig(kind="wan_vae", image_size=512)
        else:
            raise CheckpointError(
                f"{path.name} is not a codec checkpoint (no lipforcing-codec header, no TAEHV "
                "keys); for a Wan 2.1 VAE pass its CodecConfig"
            )
    if cfg.kind == "wan_vae" and meta.get("format") != FORMAT:
        return load_weights(_wan_vae_of(state, cfg), path)  # a Wan or diffusers file
    return load_weights(build_codec(cfg), path)


WAN_VAE_FIRST_CONV = ("encoder.conv1.weight", "encoder.conv_in.weight")  # original, diffusers


def _wan_vae_of(state: dict[str, torch.Tensor], cfg: CodecConfig) -> Codec:
    """A Wan 2.1 VAE of the width its tensors have (the release's is 96; narrower files, such
    as the conformance stand-ins, keep its names at a fraction of the channels)."""
    from lipforcing.codecs.wan_vae import RELEASED_BASE_DIM, build_wan_vae

    first = next((state[k] for k in WAN_VAE_FIRST_CONV if k in state), None)
    width = RELEASED_BASE_DIM if first is None else int(first.shape[0])
    return build_wan_vae(cfg, None if width == RELEASED_BASE_DIM else {"base_dim": width})


__all__ = [
    "Codec",
    "StreamDecoder",
    "StreamEncoder",
    "build_codec",
    "load_codec",
    "load_weights",
    "save_codec",
]
