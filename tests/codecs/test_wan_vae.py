"""Wan 2.1 VAE behind the codec interface: key conversion, streaming, agreement with diffusers."""

from __future__ import annotations

import pytest
import torch

from lipforcing.codecs import build_codec, load_weights
from lipforcing.codecs.wan_vae import (
    ComposedCodec,
    build_wan_vae,
    original_keys,
    original_to_diffusers,
)
from lipforcing.config import CodecConfig

CFG = CodecConfig(kind="wan_vae", image_size=32)
SMALL = {"base_dim": 8}


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    return build_wan_vae(CFG, SMALL).eval()


def video(t: int, size: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(t)
    return torch.rand(1, 3, t, size, size, generator=g) * 2 - 1


def test_original_key_names_map_onto_diffusers_full_size():
    """The original layout's names (built from Wan's architecture rules) convert one to one
    onto the names of diffusers' full-size AutoencoderKLWan."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKLWan

    with init_empty_weights():
        full = AutoencoderKLWan()
    own = set(full.state_dict())
    orig = original_keys()
    mapped = [original_to_diffusers(k) for k in orig]
    assert len(set(mapped)) == len(orig) and set(mapped) == own


def test_original_checkpoint_loads_with_no_missing_keys(tmp_path, vae):
    state = {k[len("vae.") :]: v for k, v in vae.state_dict().items() if k.startswith("vae.")}
    original = {k: state[original_to_diffusers(k)].clone() for k in original_keys(base_dim=8)}
    path = tmp_path / "Wan2.1_VAE.pth"
    torch.save(original, path)
    torch.manual_seed(1)
    fresh = build_wan_vae(CFG, SMALL).eval()
    load_weights(fresh, path)  # raises on any missing / unexpected key
    v = video(5)
    with torch.no_grad():
        torch.testing.assert_close(fresh.encode(v), vae.encode(v))
    diffusers_file = tmp_path / "diffusion_pytorch_model.safetensors"
    from safetensors.torch import save_file

    save_file({k: t.contiguous() for k, t in state.items()}, str(diffusers_file))
    load_weights(build_wan_vae(CFG, SMALL), diffusers_file)


def test_load_codec_reads_the_vaes_width_from_its_tensors(tmp_path, vae):
    """A Wan VAE file of another width (same names: the conformance stand-ins') loads by path
    alone and under a preset's CodecConfig, and encodes as the model it was written from."""
    from lipforcing.codecs import load_codec

    state = {k[len("vae.") :]: v for k, v in vae.state_dict().items() if k.startswith("vae.")}
    original = {k: state[original_to_diffusers(k)].clone() for k in original_keys(base_dim=8)}
    path = tmp_path / "Wan2.1_VAE.pth"
    torch.save(original, path)
    v = video(5)
    with torch.no_grad():
        want = vae.encode(v)
        for cfg in (None, CFG):
            codec = load_codec(path, cfg).eval()
            assert codec.vae.config.base_dim == 8
            torch.testing.assert_close(codec.encode(v), want)


@pytest.mark.parametrize("frames", [1, 5, 9, 81])
def test_strides(vae, frames):
    with torch.no_grad():
        z = vae.encode(video(frames, 16))
        assert z.shape == (1, 16, 1 + (frames - 1) // 4, 2, 2)
        assert vae.decode(z).shape == (1, 3, frames, 16, 16)


def test_streaming_equals_whole_clip_and_diffusers(vae):
    v = video(17)
    with torch.no_grad():
        z = vae.encode(v)
        enc = vae.stream_encoder()
        chunks = [enc.push(v[:, :, :9]), enc.push(v[:, :, 9:13]), enc.push(v[:, :, 13:])]
        torch.testing.assert_close(torch.cat(chunks, 2), z, rtol=1e-5, atol=1e-5)
        x = vae.decode(z)
        dec = vae.stream_decoder()
        parts = [dec.push(z[:, :, :3]), dec.push(z[:, :, 3:])]
        assert [p.shape[2] for p in parts] == [9, 8]
        torch.testing.assert_close(torch.cat(parts, 2), x, rtol=1e-5, atol=1e-5)
        # diffusers' own (whole-clip) encode / decode, with Wan's latent normalisation
        mu = vae.vae.encode(v).latent_dist.mean
        mean, std = vae.latent_mean.view(1, -1, 1, 1, 1), vae.latent_std.view(1, -1, 1, 1, 1)
        torch.testing.assert_close((mu - mean) / std, z, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(vae.vae.decode(z * std + mean).sample, x, rtol=1e-4, atol=1e-5)


def test_wan_encoder_with_taehv_decoder(vae):
    torch.manual_seed(0)
    taehv = build_codec(CodecConfig(kind="taehv", width=8, image_size=32)).eval()
    both = ComposedCodec(vae, taehv)
    with torch.no_grad():
        z = both.encode(video(9))
        assert z.shape[2] == 3 and both.decode(z).shape == (1, 3, 9, 32, 32)
        dec = both.stream_decoder()
        assert dec.push(z[:, :, :1]).shape[2] == 1 and dec.push(z[:, :, 1:]).shape[2] == 8
