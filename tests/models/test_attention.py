"""Attention backends against a hand-written softmax oracle; RoPE and audio packing facts."""

from __future__ import annotations

import logging

import pytest
import torch
from einops import rearrange

from lipforcing.models.attention import BlockCausal, attention, choose_backend
from lipforcing.models.audio import AudioPack
from lipforcing.models.rope import apply_rope, rope_tables
from lipforcing.models.sink_window import SinkWindow


def _oracle(q, k, v, visible):
    """softmax(q k^T / sqrt(d)) v over the visible keys, one head at a time, in float64."""
    q, k, v = (x.double() for x in (q, k, v))
    scores = torch.einsum("blhd,bmhd->bhlm", q, k) / q.shape[-1] ** 0.5
    scores = scores.masked_fill(~visible, float("-inf"))
    return torch.einsum("bhlm,bmhd->blhd", scores.softmax(-1), v).float()


@pytest.mark.parametrize("window", [None, (1, 6)])
def test_block_causal_matches_oracle(window):
    g = torch.Generator().manual_seed(0)
    mask = BlockCausal(12, 5, 3, window and SinkWindow(*window, 3))
    q, k, v = (torch.randn(2, 60, 2, 8, generator=g) for _ in range(3))
    out = attention(q, k, v, mask)
    assert torch.allclose(out, _oracle(q, k, v, mask.token_mask()), atol=1e-5)
    full = attention(q, k, v)
    assert torch.allclose(full, _oracle(q, k, v, torch.ones(60, 60, dtype=torch.bool)), atol=1e-5)


def test_backend_is_logged_once_with_reason(caplog):
    choose_backend.cache_clear()
    with caplog.at_level(logging.INFO, logger="lipforcing.models.attention"):
        assert choose_backend("cpu", True) == "sdpa_mask"
        choose_backend("cpu", True)
    assert len(caplog.records) == 1 and "boolean mask" in caplog.records[0].getMessage()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_flex_equals_masked_sdpa_on_gpu():
    g = torch.Generator().manual_seed(0)
    mask = BlockCausal(9, 16, 3, SinkWindow(1, 6, 3))
    q, k, v = (torch.randn(1, 144, 2, 64, generator=g).cuda() for _ in range(3))
    assert choose_backend("cuda", True) == "flex"
    out = attention(q, k, v, mask)
    assert torch.allclose(
        out.cpu(), _oracle(q.cpu(), k.cpu(), v.cpu(), mask.token_mask()), atol=1e-4
    )


def test_rope_is_a_rotation_that_depends_on_relative_position():
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(1, 16, 1, 12, generator=g), torch.randn(1, 16, 1, 12, generator=g)
    a = rope_tables(torch.tensor([0, 1, 2, 3]), (2, 2), 12)  # 4 frames of 2 x 2 patches
    b = rope_tables(torch.tensor([5, 6, 7, 8]), (2, 2), 12)
    assert torch.allclose(apply_rope(q, a).norm(dim=-1), q.norm(dim=-1), atol=1e-5)
    # shifting every frame position by 5 leaves every q.k dot product unchanged
    dots_a = torch.einsum("blhd,bmhd->lm", apply_rope(q, a), apply_rope(k, a))
    dots_b = torch.einsum("blhd,bmhd->lm", apply_rope(q, b), apply_rope(k, b))
    assert torch.allclose(dots_a, dots_b, atol=1e-4)
    assert not torch.allclose(dots_a, torch.einsum("blhd,bmhd->lm", q, k), atol=1e-2)


def test_audio_pack_matches_omniavatar_layout():
    """OmniAvatar permutes (B, T, A) -> (B, A, T, 1, 1) and rearranges 'b c (T t) h w ->
    b T h w (t h w c)' with t = 4; our packing of (B, 4F, A) must give the same vectors."""
    g = torch.Generator().manual_seed(2)
    audio = torch.randn(2, 12, 5, generator=g)  # 3 latent frames x 4 rows, 5 features
    pack = AudioPack(5, 4, 7)
    ref = rearrange(
        audio.permute(0, 2, 1)[..., None, None],
        "b c (T t) (H h) (W w) -> b T H W (t h w c)",
        t=4,
        h=1,
        w=1,
    )
    ref = torch.nn.functional.layer_norm(
        pack.proj(ref[:, :, 0, 0]), (7,), pack.norm_out.weight, pack.norm_out.bias
    )
    assert torch.allclose(pack(audio), ref, atol=1e-6)


@pytest.mark.filterwarnings("ignore")
def test_flex_block_mask_matches_boolean_mask_on_cpu():
    """The BlockMask the CUDA path uses, run through eager flex attention on the CPU."""
    from torch.nn.attention.flex_attention import flex_attention

    from lipforcing.models.attention import _block_mask

    g = torch.Generator().manual_seed(3)
    mask = BlockCausal(9, 16, 3, SinkWindow(1, 6, 3))
    q, k, v = (torch.randn(1, 2, 144, 16, generator=g) for _ in range(3))
    out = flex_attention(q, k, v, block_mask=_block_mask(mask, "cpu"))
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask.token_mask())
    assert (out - ref).abs().max() < 1e-5
