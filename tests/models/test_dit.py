"""The DiT against Wan 2.1: parameter counts, names, and diffusers' forward as an oracle."""

from __future__ import annotations

import pytest
import torch
from model_helpers import random_cond, randomized, small_config

from lipforcing.config import get_preset
from lipforcing.models import build_model, count_params
from lipforcing.models.checkpoints import load_weights
from lipforcing.models.rope import axis_dims


@pytest.mark.parametrize(("name", "expected"), [("wan-1.3b", 1.419e9), ("wan-14b", 14.29e9)])
def test_base_params_match_wan(name, expected):
    counts = count_params(get_preset(name).model)
    print(name, counts)
    assert abs(counts["base"] - expected) / expected < 0.005
    assert counts["total"] == counts["base"] + counts["lipsync"]
    assert 0 < counts["lipsync"] < 0.01 * counts["base"]


def test_tiny_is_a_few_million_params():
    counts = count_params(get_preset("tiny").model)
    assert 1e6 < counts["total"] < 1e7


def test_wan_scale_forward_shapes_on_meta():
    cfg = get_preset("wan-1.3b").with_attention("block_causal").model
    model = build_model(cfg, device="meta")
    cond = random_cond(cfg, 6, (8, 8)).to("meta")
    x = torch.empty(1, 16, 6, 8, 8, device="meta")
    assert model(x, torch.empty(1, 6, device="meta"), cond).shape == x.shape


def test_rope_split_matches_wan():
    assert axis_dims(128) == (44, 42, 42)  # Wan 1.3B / 14B head size
    assert sum(axis_dims(64)) == 64


def test_fresh_model_is_zero_and_per_frame_t_equals_batch_t():
    cfg = small_config()
    fresh = build_model(cfg)
    cond = random_cond(cfg, 3)
    x = torch.randn(1, 16, 3, 4, 4)
    assert fresh(x, torch.full((1,), 0.5), cond).abs().max() == 0  # zero-initialised head
    model = randomized(cfg)
    a = model(x, torch.full((1,), 0.3), cond)
    b = model(x, torch.full((1, 3), 0.3), cond)
    assert torch.allclose(a, b, atol=1e-6)
    c = model(x, torch.tensor([[0.3, 0.3, 0.9]]), cond)  # another time on frame 2 only
    assert not torch.allclose(a, c)


def test_block_causal_is_causal_and_bidirectional_is_not():
    cfg = small_config()
    model = randomized(cfg)
    cond = random_cond(cfg, 6)
    x = torch.randn(1, 16, 6, 4, 4)
    y = x.clone()
    y[:, :, 3:] += 1.0  # change the second chunk only
    t = torch.full((1,), 0.5)
    out_x, out_y = model(x, t, cond), model(y, t, cond)
    assert torch.equal(out_x[:, :, :3], out_y[:, :, :3])
    model.cfg = small_config(attention="bidirectional")
    assert not torch.allclose(model(x, t, cond)[:, :, :3], model(y, t, cond)[:, :, :3])


def _diffusers_wan(cfg):
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    net = diffusers.WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=cfg.num_heads,
        attention_head_dim=cfg.head_dim,
        in_channels=cfg.in_channels,
        out_channels=cfg.latent_channels,
        text_dim=cfg.text_dim,
        freq_dim=cfg.freq_dim,
        ffn_dim=cfg.ffn_dim,
        num_layers=cfg.num_layers,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        eps=cfg.eps,
    )
    with torch.no_grad():  # diffusers zero-inits nothing we rely on; randomise everything
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
    return net.eval()


@torch.no_grad()
def test_forward_matches_diffusers_wan():
    """Loaded with diffusers' weights (audio projections zero), our forward == diffusers'."""
    cfg = small_config(attention="bidirectional", use_text_context=True)
    net = _diffusers_wan(cfg)
    model = build_model(cfg)  # audio_cond_projs are zero-initialised: no audio contribution
    report = load_weights(model, net.state_dict(), strict=False)
    assert "diffusers names" in report.files[0] and not report.unexpected and not report.reshaped
    assert all(k.startswith(("audio_proj", "audio_cond_projs")) for k in report.missing)
    cond = random_cond(cfg, 5, (4, 6), batch=2)
    x = torch.randn(2, 16, 5, 4, 6)
    t = torch.tensor([0.25, 0.9])
    ours = model(x, t, cond)
    ref = net(
        hidden_states=cond.model_inputs(x),
        timestep=1000 * t,
        encoder_hidden_states=cond.context,
        return_dict=False,
    )[0]
    assert (ours - ref).abs().max() < 1e-4 * ref.abs().max()


@torch.no_grad()
@pytest.mark.parametrize("text", [True, False])
def test_precomputed_context_kv_gives_identical_outputs(text):
    """Cross-attention keys/values computed once per stream == recomputed on every call."""
    import dataclasses

    from lipforcing.config import CausalConfig
    from lipforcing.models.kv_cache import KVCache

    cfg = small_config(attention="block_causal", use_text_context=text)
    model = randomized(cfg)
    cond = random_cond(cfg, 3)
    fixed = dataclasses.replace(cond, context_kv=model.context_kv(cond.context))
    x, t = torch.randn(1, 16, 3, 4, 4), torch.full((1,), 0.6)
    assert torch.equal(model(x, t, cond), model(x, t, fixed))
    both, both_fixed = cond.cat(cond.drop("audio")), fixed.cat(fixed.drop("audio"))
    xx, tt = torch.cat([x, x]), torch.cat([t, t])
    assert torch.equal(model(xx, tt, both), model(xx, tt, both_fixed))
    causal = CausalConfig(chunk_frames=3, sink_frames=1, window_frames=6)
    outs = []
    for c in (cond, fixed):  # a cached stream: write one chunk, then read it
        cache = KVCache.allocate(cfg, 1, (4, 4), causal)
        model(x, torch.zeros(1), c, cache, update_cache=True)
        outs.append(model(x, t, c, cache))
    assert torch.equal(*outs)
