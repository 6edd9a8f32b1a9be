"""Codecs: strides and shapes, streaming == whole clip, official key names, checkpoints."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from lipforcing.codecs import build_codec, load_codec, save_codec
from lipforcing.codecs.taehv import TGrow, TPool
from lipforcing.config import CodecConfig, get_preset
from lipforcing.errors import CheckpointError

TINY = get_preset("tiny").codec
SMALL_TAEHV = CodecConfig(kind="taehv", width=8, image_size=64)


def perturbed(cfg: CodecConfig, seed: int = 0):
    """A codec with every weight random (the tiny codec's zero-initialised output layers too)."""
    torch.manual_seed(seed)
    codec = build_codec(cfg).eval()
    with torch.no_grad():
        for p in codec.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return codec


def video(t: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, t, size, size, generator=g) * 2 - 1


def test_tpool_tgrow_equal_the_reference_reshape_convolutions():
    """Our channels-last matmul forms equal TAEHV's reshape + 1x1 convolution definitions."""
    x = torch.randn(2, 6, 8, 5, 7)
    pool, grow = TPool(8, 2), TGrow(8, 2)
    ref_pool = pool.conv(x.reshape(6, 16, 5, 7)).reshape(2, 3, 8, 5, 7)
    ref_grow = grow.conv(x.reshape(12, 8, 5, 7)).reshape(2, 12, 8, 5, 7)
    torch.testing.assert_close(pool(x), ref_pool, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grow(x), ref_grow, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cfg", [TINY, SMALL_TAEHV], ids=["tiny", "taehv"])
@pytest.mark.parametrize("frames", [1, 5, 9, 81])
def test_strides_4x8x8(cfg, frames):
    codec = perturbed(cfg)
    with torch.no_grad():
        z = codec.encode(video(frames, 16))
        assert z.shape == (1, 16, 1 + (frames - 1) // 4, 2, 2)
        assert codec.decode(z).shape == (1, 3, frames, 16, 16)


def test_tiny_streaming_equals_whole_clip():
    codec = perturbed(TINY)
    v = video(33)
    with torch.no_grad():
        z = codec.encode(v)
        enc = codec.stream_encoder()
        parts = [enc.push(v[:, :, :9]), enc.push(v[:, :, 9:21]), enc.push(v[:, :, 21:33])]
        torch.testing.assert_close(torch.cat(parts, 2), z, rtol=1e-5, atol=1e-5)
        x = codec.decode(z)
        dec = codec.stream_decoder()
        frames = [dec.push(z[:, :, i : i + 1]) for i in range(z.shape[2])]  # one latent at a time
        assert [f.shape[2] for f in frames] == [1] + [4] * (z.shape[2] - 1)
        torch.testing.assert_close(torch.cat(frames, 2), x, rtol=1e-4, atol=5e-4)
        dec.reset()
        torch.testing.assert_close(dec.push(z[:, :, :3]), x[:, :, :9], rtol=1e-4, atol=5e-4)


def test_taehv_streaming_equals_whole_clip():
    """The official layout: decoder one latent at a time; encoder in groups of 4 frames (the
    reference pads the end, so a whole multiple of 4 frames streams exactly)."""
    codec = perturbed(SMALL_TAEHV)
    v = video(16)
    with torch.no_grad():
        z = codec.encode(v)
        enc = codec.stream_encoder()
        torch.testing.assert_close(
            torch.cat([enc.push(v[:, :, :8]), enc.push(v[:, :, 8:])], 2), z, rtol=1e-5, atol=1e-5
        )
        with pytest.raises(ValueError, match="4k"):
            codec.stream_encoder().push(v[:, :, :9])
        x = codec.decode(z)
        dec = codec.stream_decoder()
        frames = torch.cat([dec.push(z[:, :, i : i + 1]) for i in range(z.shape[2])], 2)
        torch.testing.assert_close(frames, x, rtol=1e-5, atol=1e-5)
        # 9 frames (Wan layout): end padded to 12, 3 latents, 9 frames back.
        assert codec.decode(codec.encode(video(9))).shape[2] == 9


def official_taehv_keys(latent_channels: int = 16) -> dict[str, tuple[int, ...]]:
    """Key names and shapes of taew2_1 from the published TAEHV layout (nn.Sequential
    indices: encoder conv 0, TPool 2/7/12, strided convs 3/8/13, MemBlocks 4-6/9-11/14-16,
    final conv 17; decoder conv 1, MemBlocks 3-5/9-11/15-17, TGrow 7/13/19, convs 8/14/20, 22)."""
    keys: dict[str, tuple[int, ...]] = {}

    def conv3(name, n_in, n_out, bias=True):
        keys[f"{name}.weight"] = (n_out, n_in, 3, 3)
        if bias:
            keys[f"{name}.bias"] = (n_out,)

    def mem(name, n):
        conv3(f"{name}.conv.0", 2 * n, n)
        conv3(f"{name}.conv.2", n, n)
        conv3(f"{name}.conv.4", n, n)

    conv3("encoder.0", 3, 64)
    for pool, strided, blocks, stride in (
        (2, 3, (4, 5, 6), 2),
        (7, 8, (9, 10, 11), 2),
        (12, 13, (14, 15, 16), 1),
    ):
        keys[f"encoder.{pool}.conv.weight"] = (64, 64 * stride, 1, 1)
        conv3(f"encoder.{strided}", 64, 64, bias=False)
        for b in blocks:
            mem(f"encoder.{b}", 64)
    conv3("encoder.17", 64, latent_channels)
    n = (256, 128, 64, 64)
    conv3("decoder.1", latent_channels, n[0])
    for level, (blocks, grow, proj, stride) in enumerate(
        (((3, 4, 5), 7, 8, 1), ((9, 10, 11), 13, 14, 2), ((15, 16, 17), 19, 20, 2))
    ):
        for b in blocks:
            mem(f"decoder.{b}", n[level])
        keys[f"decoder.{grow}.conv.weight"] = (n[level] * stride, n[level], 1, 1)
        conv3(f"decoder.{proj}", n[level], n[level + 1], bias=False)
    conv3("decoder.22", n[3], 3)
    return keys


def test_official_taehv_state_dict_loads_by_name(tmp_path):
    from safetensors.torch import save_file

    expected = official_taehv_keys()
    g = torch.Generator().manual_seed(0)
    state = {k: torch.randn(shape, generator=g) * 0.05 for k, shape in expected.items()}
    path = tmp_path / "taew2_1.safetensors"
    save_file(state, str(path))
    codec = load_codec(path)  # recognised as a TAEHV by its keys; no missing/unexpected keys
    assert codec.cfg.kind == "taehv"
    own = {k: tuple(v.shape) for k, v in codec.state_dict().items()}
    assert {k: v for k, v in own.items() if not k.startswith("latent_")} == expected
    torch.testing.assert_close(codec.decoder[22].weight, state["decoder.22.weight"])
    pth = tmp_path / "taew2_1.pth"
    torch.save(state, pth)
    assert load_codec(pth).cfg.kind == "taehv"
    assert torch.equal(codec.latent_std, torch.ones(16))  # TAEHV works on normalised latents


def test_save_load_round_trip(tmp_path):
    codec = perturbed(TINY)
    codec.latent_mean.uniform_(-1, 1)
    codec.latent_std.uniform_(0.5, 2)
    path = save_codec(tmp_path / "codec.safetensors", codec)
    loaded = load_codec(path).eval()
    assert loaded.cfg == TINY
    v = video(9)
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(v), codec.encode(v))
        torch.testing.assert_close(loaded.decode(codec.encode(v)), codec.decode(codec.encode(v)))


def test_bad_checkpoints_are_one_line_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no codec checkpoint"):
        load_codec(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_codec(junk)
    from lipforcing.models import build_model
    from lipforcing.models.checkpoints import save_checkpoint

    preset = get_preset("tiny")
    student = tmp_path / "student.safetensors"
    save_checkpoint(student, build_model(preset.model), preset)
    with pytest.raises(CheckpointError, match="not a codec"):
        load_codec(student)
    wide = dataclasses.replace(TINY, width=16)
    path = save_codec(tmp_path / "narrow.safetensors", build_codec(wide))
    from lipforcing.codecs import load_weights

    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_weights(build_codec(TINY), path)


def test_latent_statistics_normalise_the_data():
    from lipforcing.codecs.train import set_latent_stats

    codec = perturbed(TINY)
    videos = [video(9, 32, seed=s) for s in range(3)]
    set_latent_stats(codec, videos)
    with torch.no_grad():
        z = torch.cat([codec.encode(v).transpose(0, 1).flatten(1) for v in videos], 1)
    torch.testing.assert_close(z.mean(1), torch.zeros(16), atol=1e-4, rtol=0)
    torch.testing.assert_close(z.std(1), torch.ones(16), atol=1e-4, rtol=0)


def test_separate_decoder_file_composes(tmp_path):
    """``load_codec(encoder_file, decoder=other_file)``: encode with one, decode with the other."""
    a, b = perturbed(TINY, 0), perturbed(TINY, 1)
    pa = save_codec(tmp_path / "a.safetensors", a)
    pb = save_codec(tmp_path / "b.safetensors", b)
    both = load_codec(pa, decoder=pb).eval()
    v = video(9)
    with torch.no_grad():
        z = both.encode(v)
        torch.testing.assert_close(z, a.encode(v))
        torch.testing.assert_close(both.decode(z), b.decode(z))
        dec = both.stream_decoder()
        torch.testing.assert_close(dec.push(z), b.decode(z))
