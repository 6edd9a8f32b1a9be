"""LoRA on a tiny DiT: exactly the right parameters train, and a fresh adapter changes nothing."""

from __future__ import annotations

import re

import torch
from distill_helpers import toy_batch, toy_model

from lipforcing.distill.lora import add_lora, trainable_names


def test_trainable_set_is_lora_plus_audio_and_patch_embedding():
    base = toy_model()
    names_before = {n for n, _ in base.named_parameters()}
    batch = toy_batch(1, 3)
    t = torch.full((1,), 0.5)
    before = base(batch["x0"], t, batch["cond"]).detach()
    model = add_lora(base, rank=4, alpha=2.0)
    trainable = set(trainable_names(model))
    linear = re.compile(r"blocks\.\d+\.(self_attn|cross_attn)\.(q|k|v|o)|blocks\.\d+\.ffn\.(0|2)")
    expected = set()
    for n in names_before:
        if n.startswith(("audio_proj.", "audio_cond_projs.", "patch_embedding.")):
            expected.add(n)
        elif linear.match(n) and n.endswith(".weight"):
            stem = n[: -len(".weight")]
            expected |= {f"{stem}.lora_A.default.weight", f"{stem}.lora_B.default.weight"}
    assert trainable == expected
    assert any(n.startswith("audio_cond_projs.") for n in trainable)
    n_layers = 2 * 4 * len(model.blocks) + 2 * len(model.blocks)  # q k v o x2 attn, ffn 0/2
    assert sum("lora_A" in n for n in trainable) == n_layers
    # lora_B starts at zero: the adapted model equals the base model
    after = model(batch["x0"], t, batch["cond"]).detach()
    torch.testing.assert_close(after, before)
    lora_a = dict(model.named_parameters())["blocks.0.self_attn.q.lora_A.default.weight"]
    assert lora_a.shape == (4, 32)
