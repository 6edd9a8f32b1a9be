"""UMT5 text conditioning: a tokenizer trained here, an encoder folder and Wan's .pth layout
give the same embeddings; context files are checked against the model's text width."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from lipforcing.cli.main import main
from lipforcing.config import get_preset
from lipforcing.errors import CheckpointError, UserError
from lipforcing.models.text import TextEncoder, load_context

transformers = pytest.importorskip("transformers")

WAN_NAMES = {  # UMT5EncoderModel name -> Wan umT5 name (wan/modules/t5.py), written out here
    "layer.0.layer_norm.weight": "norm1.weight",
    "layer.0.SelfAttention.q.weight": "attn.q.weight",
    "layer.0.SelfAttention.k.weight": "attn.k.weight",
    "layer.0.SelfAttention.v.weight": "attn.v.weight",
    "layer.0.SelfAttention.o.weight": "attn.o.weight",
    "layer.0.SelfAttention.relative_attention_bias.weight": "pos_embedding.embedding.weight",
    "layer.1.layer_norm.weight": "norm2.weight",
    "layer.1.DenseReluDense.wi_0.weight": "ffn.gate.0.weight",
    "layer.1.DenseReluDense.wi_1.weight": "ffn.fc1.weight",
    "layer.1.DenseReluDense.wo.weight": "ffn.fc2.weight",
}


def train_tokenizer(folder):
    """A small Unigram tokenizer with T5's special tokens and a trailing </s>."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    corpus = ["a person talking", "a man speaks to the camera", "blurry, low quality, static"] * 20
    trainer = trainers.UnigramTrainer(
        vocab_size=60, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>"
    )
    tok.train_from_iterator(corpus, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", 1)]
    )
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    fast.save_pretrained(str(folder))
    return fast


def small_umt5():
    cfg = transformers.UMT5Config(
        vocab_size=64, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4,
        relative_attention_num_buckets=32, feed_forward_proj="gated-gelu",
        is_encoder_decoder=False, use_cache=False,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.UMT5EncoderModel(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    return model


def wan_layout(model):
    state = {"token_embedding.weight": model.shared.weight, "norm.weight":
             model.encoder.final_layer_norm.weight}  # fmt: skip
    for i, block in enumerate(model.encoder.block):
        for ours, wan in WAN_NAMES.items():
            state[f"blocks.{i}.{wan}"] = block.get_parameter(ours).detach().clone()
    return state


def test_encoder_folder_and_wan_pth_agree(tmp_path):
    model = small_umt5()
    pipe = tmp_path / "pipe"
    model.save_pretrained(pipe / "text_encoder")
    fast = train_tokenizer(pipe / "tokenizer")
    wan = tmp_path / "wan"
    (wan / "google" / "umt5-xxl").mkdir(parents=True)
    fast.save_pretrained(str(wan / "google" / "umt5-xxl"))
    torch.save(wan_layout(model), wan / "models_t5_umt5-xxl-enc-bf16.pth")
    a = TextEncoder.load(pipe).encode(["a person talking", "static"])
    b = TextEncoder.load(wan / "models_t5_umt5-xxl-enc-bf16.pth").encode(
        ["a person talking", "static"]
    )
    ids = fast("a person talking")["input_ids"]
    assert ids[-1] == 1 and a[0].shape == (len(ids), 32)  # real tokens only, </s> included
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    with torch.no_grad():  # the oracle: transformers' own forward on the unpadded ids
        ref = model(input_ids=torch.tensor([ids])).last_hidden_state[0]
    assert torch.allclose(a[0], ref, atol=1e-5)


def test_encode_prompt_cli_and_context_checks(tmp_path, capsys):
    model = small_umt5()
    model.save_pretrained(tmp_path / "pipe" / "text_encoder")
    n = len(train_tokenizer(tmp_path / "pipe" / "tokenizer")("a person talking")["input_ids"])
    out = tmp_path / "ctx.safetensors"
    argv = ["encode-prompt", "--text-encoder", str(tmp_path / "pipe"), "--out", str(out)]
    assert main([*argv, "--negative-prompt", "blurry, static"]) == 0
    assert "prompt + negative" in capsys.readouterr().out
    cfg = dataclasses.replace(get_preset("wan-1.3b").model, text_dim=32, text_len=16)
    ctx = load_context(out, cfg)
    assert ctx.context.shape == (1, 16, 32) and ctx.negative.shape == (1, 16, 32)
    assert ctx.context[0, n:].abs().sum() == 0 and ctx.context[0, n - 1].abs().sum() > 0
    with pytest.raises(
        CheckpointError,
        match=rf"context has shape \(1, {n}, 32\); the model needs \(1, <=512, 4096\)",
    ):
        load_context(out, get_preset("wan-1.3b").model)
    with pytest.raises(UserError, match="learned null context"):
        load_context(out, get_preset("tiny").model)
    torch.save({"context": torch.randn(1, 16, 32)}, tmp_path / "text_emb.pt")  # the release's
    assert load_context(tmp_path / "text_emb.pt", cfg).negative is None


def test_release_full_drop_keeps_references_and_swaps_the_text():
    from model_helpers import random_cond, small_config

    cfg = small_config(use_text_context=True)
    cond = random_cond(cfg, 3)
    default = cond.drop("release")  # no negative: the release's default, a zero embedding
    zero = dataclasses.replace(cond, negative=torch.zeros_like(cond.context)).drop("release")
    assert not default.context.any() and default.context.shape == cond.context.shape
    for name in ("context", "audio", "ref", "mask", "masked", "ref_seq"):
        assert torch.equal(getattr(default, name), getattr(zero, name))
    with pytest.raises(ValueError, match="--context"):
        dataclasses.replace(cond, context=None).drop("release")
    neg = torch.randn_like(cond.context)
    cond = dataclasses.replace(cond, negative=neg)
    rel, paper = cond.drop("release"), cond.drop("all")
    assert torch.equal(rel.context, neg) and not rel.audio.any()
    for name in ("ref", "mask", "masked", "ref_seq"):
        assert torch.equal(getattr(rel, name), getattr(cond, name))
    assert (
        not paper.ref.any() and not paper.ref_seq.any() and torch.equal(paper.context, cond.context)
    )
    assert torch.equal(cond.drop("audio").context, cond.context)
    both = cond.cat(rel)
    assert torch.equal(both.context[1], neg[0]) and both.negative.shape[0] == 2
