"""Write random-weight stand-ins of every file the official Lip Forcing release uses, in the exact
released layouts (file names, sharding, key names, prefixes, dtypes), at reduced depth.

``python -m lipforcing.conformance.standins --out DIR [--width 1.3b|14b] [--layers 4]
[--vae-width 96]`` writes::

    DIR/Wan2.1-T2V/diffusion_pytorch_model-0000k-of-0000n.safetensors + .index.json + config.json
                   Wan2.1_VAE.pth  models_t5_umt5-xxl-enc-bf16.pth  google/umt5-xxl/ (tokenizer)
    DIR/Wan2.1-T2V-Diffusers/transformer/ (diffusers' own save_pretrained, sharded)
                            text_encoder/ (UMT5EncoderModel)  tokenizer/
    DIR/omniavatar_ls.pt           OmniAvatar-LS adapter: LoRA (lora_A.weight) + audio + patch
    DIR/stage2/0000600.pth         the trainer's Stage-2 delta {"model": {"net": {"_core." ...}}}
    DIR/stage2/0000600.net_model/  the same delta as FSDP writes it (torch.distributed.checkpoint)
    DIR/lipforcing_student.pth     the merged student (flat bf16, plain keys, LoRA folded)
    DIR/wav2vec2-base-960h/        Wav2Vec2ForCTC, the base config (12 layers x 768)
    DIR/taew2_1.pth  DIR/syncnet_v2.model  DIR/mask.png  DIR/manifest.json

The merged student is computed here independently of the loader: base + the adapter's audio and
patch embedding, overridden by the delta's, with the delta's LoRA folded
(``W + alpha / rank * B A``, rank 16 here, alpha 64), which is what the release's export does.
The umT5 encoder keeps the 4096 output width the DiT needs with a small vocabulary and two
layers; the tokenizer is trained here (``tokenizers`` Unigram). Weights are random: these files
prove that every command reads the layouts and runs end to end, nothing about quality.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from lipforcing.codecs.wan_vae import RELEASED_BASE_DIM
from lipforcing.config import ModelConfig, get_preset
from lipforcing.conformance.layouts import (
    UMT5_TO_WAN,
    lora_shapes,
    omniavatar_audio_shapes,
    wan_t2v_shapes,
)

LORA_RANK = 128  # the releases' rank (read from the tensors; the release recipes train 128)
LORA_ALPHA = 64.0
WAN_SHARDS = 3  # Wan 2.1 14B ships 6 shards; any count exercises the index
TOKENIZER_VOCAB = 200  # the trained stand-in tokenizer (umT5-XXL: 256384)
FAMILIES = {"1.3b": "wan-1.3b", "14b": "wan-14b"}


def model_config(width: str, layers: int) -> ModelConfig:
    return dataclasses.replace(get_preset(FAMILIES[width]).model, num_layers=layers)


def random_tensors(table: dict, seed: int, dtype=torch.float32) -> dict[str, torch.Tensor]:
    """Wan-like magnitudes: norm gains 1, everything else N(0, 0.02^2)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in table.items():
        if "norm" in name and name.endswith("weight"):
            out[name] = torch.ones(shape, dtype=dtype)
        else:
            out[name] = (0.02 * torch.randn(*shape, generator=g)).to(dtype)
    return out


def save_safetensors(path: Path, tensors: dict, metadata: dict | None = None) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)


# ----------------------------------------------------------------------------- DiT files


def write_wan_base(folder: Path, cfg: ModelConfig, seed: int) -> dict[str, torch.Tensor]:
    """Wan 2.1 T2V: float32 shards + index + Wan's config.json."""
    base = random_tensors(wan_t2v_shapes(cfg, 16), seed)
    keys = sorted(base)
    parts = np.array_split(np.arange(len(keys)), WAN_SHARDS)
    weight_map, total = {}, 0
    for k, idx in enumerate(parts, 1):
        name = f"diffusion_pytorch_model-{k:05d}-of-{WAN_SHARDS:05d}.safetensors"
        shard = {keys[i]: base[keys[i]] for i in idx}
        save_safetensors(folder / name, shard, {"format": "pt"})
        weight_map |= {key: name for key in shard}
        total += sum(v.numel() * v.element_size() for v in shard.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(index))
    config = {
        "_class_name": "WanModel", "dim": cfg.dim, "eps": cfg.eps, "ffn_dim": cfg.ffn_dim,
        "freq_dim": cfg.freq_dim, "in_dim": 16, "model_type": "t2v", "num_heads": cfg.num_heads,
        "num_layers": cfg.num_layers, "out_dim": cfg.latent_channels, "text_len": cfg.text_len,
    }  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return base


def write_diffusers_transformer(folder: Path, cfg: ModelConfig, seed: int) -> None:
    """A diffusers ``transformer/`` folder written by diffusers itself (one block, sharded)."""
    from diffusers import WanTransformer3DModel

    torch.manual_seed(seed)
    net = WanTransformer3DModel(
        patch_size=cfg.patch_size, num_attention_heads=cfg.num_heads,
        attention_head_dim=cfg.head_dim, in_channels=16, out_channels=cfg.latent_channels,
        text_dim=cfg.text_dim, freq_dim=cfg.freq_dim, ffn_dim=cfg.ffn_dim, num_layers=1,
        cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=cfg.eps,
    )  # fmt: skip
    net.save_pretrained(folder, max_shard_size="100MB")


def lora_pairs(cfg: ModelConfig, seed: int) -> dict[str, torch.Tensor]:
    """Plain-named pairs ``<module>.lora_A.weight`` (rank, in) / ``lora_B.weight`` (out, rank)."""
    return random_tensors(lora_shapes(cfg, LORA_RANK, "omniavatar"), seed)


def lip_sync_modules(cfg: ModelConfig, seed: int) -> dict[str, torch.Tensor]:
    """Audio modules and the 65-channel patch embedding (trained in full by both stages)."""
    table = omniavatar_audio_shapes(cfg)
    table["patch_embedding.weight"] = (cfg.dim, cfg.in_channels, *cfg.patch_size)
    table["patch_embedding.bias"] = (cfg.dim,)
    return random_tensors(table, seed)


def write_adapter(path: Path, cfg: ModelConfig, seed: int) -> dict[str, torch.Tensor]:
    """OmniAvatar-LS: LoRA in OmniAvatar's naming + audio + patch embedding, bf16, torch.save."""
    state = lora_pairs(cfg, seed) | lip_sync_modules(cfg, seed + 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.bfloat16() for k, v in state.items()}, path)
    return state


def peft_name(key: str) -> str:
    return key.replace(".lora_A.weight", ".lora_A.default.weight").replace(
        ".lora_B.weight", ".lora_B.default.weight"
    )


def write_stage2_delta(folder: Path, cfg: ModelConfig, seed: int) -> dict[str, torch.Tensor]:
    """The trainer's trainable-only delta: ``.pth`` and its FSDP ``.net_model/`` twin."""
    import torch.distributed.checkpoint as dcp

    delta = lora_pairs(cfg, seed) | lip_sync_modules(cfg, seed + 1)
    net = {"_core." + peft_name(k): v.bfloat16() for k, v in delta.items()}
    critic = {"_core.head.modulation": torch.zeros(1, 2, cfg.dim, dtype=torch.bfloat16)}
    folder.mkdir(parents=True, exist_ok=True)
    save = {"model": {"net": net, "fake_score": critic}, "optimizer": None, "scheduler": None,
            "grad_scaler": None, "callbacks": None, "iteration": 600}  # fmt: skip
    torch.save(save, folder / "0000600.pth")
    fsdp = folder.parent / (folder.name + "_fsdp")
    fsdp.mkdir(parents=True, exist_ok=True)
    dcp.save(dict(net), checkpoint_id=str(fsdp / "0000600.net_model"))
    torch.save({"iteration": 600}, fsdp / "0000600.pth")
    return delta


def merged_student(base: dict, delta: dict) -> dict[str, torch.Tensor]:
    """What the release's export writes: base, the delta's trained modules, LoRA folded."""
    out = dict(base)
    out |= {k: v for k, v in delta.items() if ".lora_" not in k}
    for key in [k for k in delta if k.endswith(".lora_A.weight")]:
        module = key[: -len(".lora_A.weight")]
        a = delta[key].bfloat16().float()  # the delta is stored in bf16
        b = delta[module + ".lora_B.weight"].bfloat16().float()
        out[module + ".weight"] = base[module + ".weight"] + (LORA_ALPHA / LORA_RANK) * (b @ a)
    for key in ("audio_proj", "audio_cond_projs", "patch_embedding"):
        for name in [k for k in out if k.startswith(key)]:
            out[name] = out[name].bfloat16().float()
    return {k: v.bfloat16() for k, v in out.items()}


# ----------------------------------------------------------------------------- text


def train_tokenizer(folders: list[Path]) -> None:
    """A small Unigram tokenizer with umT5's special tokens (<pad> 0, </s> 1, <unk> 2)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    corpus = [
        "a person talking", "a woman speaks to the camera in a bright room",
        "a man talking, close-up, natural light", "blurry, static, low quality, jpeg artifacts",
        "worst quality, deformed face, extra fingers, messy background",
    ] * 40  # fmt: skip
    trainer = trainers.UnigramTrainer(
        vocab_size=TOKENIZER_VOCAB, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>"
    )
    tok.train_from_iterator(corpus, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", 1)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    for folder in folders:
        fast.save_pretrained(str(folder))


def write_text_encoders(root: Path, diffusers_root: Path, text_dim: int, seed: int) -> None:
    """umT5 with the DiT's text width: diffusers ``text_encoder/`` (bf16) and Wan's ``.pth``."""
    from transformers import UMT5Config, UMT5EncoderModel

    cfg = UMT5Config(
        vocab_size=TOKENIZER_VOCAB, d_model=text_dim, d_kv=64, d_ff=256, num_layers=2,
        num_heads=4, relative_attention_num_buckets=32, relative_attention_max_distance=128,
        feed_forward_proj="gated-gelu", is_encoder_decoder=False, use_cache=False,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = UMT5EncoderModel(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.ones_like(p) if "layer_norm" in name else 0.05 * torch.randn_like(p))
    model = model.to(torch.bfloat16)
    model.save_pretrained(diffusers_root / "text_encoder")
    wan = {"token_embedding.weight": model.shared.weight.detach(),
           "norm.weight": model.encoder.final_layer_norm.weight.detach()}  # fmt: skip
    for i, block in enumerate(model.encoder.block):
        for ours, theirs in UMT5_TO_WAN.items():
            wan[f"blocks.{i}.{theirs}"] = block.get_parameter(ours).detach().clone()
    torch.save(wan, root / "models_t5_umt5-xxl-enc-bf16.pth")
    train_tokenizer([diffusers_root / "tokenizer", root / "google" / "umt5-xxl"])


def write_wav2vec2(folder: Path, seed: int) -> None:
    """``facebook/wav2vec2-base-960h``'s config (Wav2Vec2ForCTC, 12 x 768), random weights."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC

    torch.manual_seed(seed)
    config = Wav2Vec2Config(vocab_size=32, feat_extract_norm="group", do_stable_layer_norm=False)
    Wav2Vec2ForCTC(config).eval().save_pretrained(folder)
    Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
        return_attention_mask=False,
    ).save_pretrained(folder)  # fmt: skip


# ----------------------------------------------------------------------------- codecs etc.


def write_codecs(root: Path, seed: int, vae_width: int = RELEASED_BASE_DIM) -> None:
    """``Wan2.1_VAE.pth`` (original names, float32; ``vae_width`` base channels, the release's
    96 or fewer: the names stay, the loader reads the width) and ``taew2_1.pth`` (TAEHV,
    float32)."""
    from lipforcing.codecs import build_codec
    from lipforcing.codecs.wan_vae import build_wan_vae, original_keys, original_to_diffusers
    from lipforcing.config import CodecConfig

    torch.manual_seed(seed)
    vae = build_wan_vae(CodecConfig(kind="wan_vae"), {"base_dim": vae_width})
    own = vae.vae.state_dict()
    original = {k: own[original_to_diffusers(k)].clone() for k in original_keys(vae_width)}
    torch.save(original, root / "Wan2.1_VAE.pth")
    tae = build_codec(CodecConfig(kind="taehv", width=64))
    state = {k: v for k, v in tae.state_dict().items() if not k.startswith("latent_")}
    torch.save(state, root / "taew2_1.pth")


def write_syncnet_v2(path: Path, seed: int) -> None:
    from lipforcing.evaluation.syncnet import SyncNetV2

    torch.manual_seed(seed)
    torch.save(SyncNetV2().state_dict(), path)


def write_mask(path: Path) -> None:
    """A LatentSync-style mask image: 256 px RGB, white = keep (our drawing of its shape)."""
    import cv2

    from lipforcing.media.mask import latentsync_mask

    keep = ((1 - latentsync_mask(256)) * 255).astype(np.uint8)
    cv2.imwrite(str(path), np.stack([keep] * 3, -1))


# ----------------------------------------------------------------------------- all


def write_all(
    out: str | Path,
    width: str = "1.3b",
    layers: int = 4,
    seed: int = 0,
    vae_width: int = RELEASED_BASE_DIM,
) -> dict:
    """Write every stand-in under ``out``; returns (and writes) the manifest of paths.
    ``vae_width``: base channels of the Wan VAE stand-in (96 = the release's; fewer keep every
    name and make its encode cheap on a CPU)."""
    out = Path(out)
    cfg = model_config(width, layers)
    wan, diffusers = out / "Wan2.1-T2V", out / "Wan2.1-T2V-Diffusers"
    base = write_wan_base(wan, cfg, seed)
    write_diffusers_transformer(diffusers / "transformer", cfg, seed + 1)
    write_adapter(out / "omniavatar_ls.pt", cfg, seed + 2)
    delta = write_stage2_delta(out / "stage2", cfg, seed + 4)
    torch.save(merged_student(base, delta), out / "lipforcing_student.pth")
    write_text_encoders(wan, diffusers, cfg.text_dim, seed + 6)
    write_wav2vec2(out / "wav2vec2-base-960h", seed + 7)
    write_codecs(wan, seed + 8, vae_width)
    (out / "taew2_1.pth").write_bytes((wan / "taew2_1.pth").read_bytes())
    (wan / "taew2_1.pth").unlink()
    write_syncnet_v2(out / "syncnet_v2.model", seed + 9)
    write_mask(out / "mask.png")
    manifest = {
        "family": FAMILIES[width], "layers": layers, "lora_rank": LORA_RANK,
        "vae_width": vae_width,
        "student": "lipforcing_student.pth", "base": "Wan2.1-T2V",
        "base_index": "Wan2.1-T2V/diffusion_pytorch_model.safetensors.index.json",
        "diffusers": "Wan2.1-T2V-Diffusers", "adapter": "omniavatar_ls.pt",
        "delta": "stage2/0000600.pth", "delta_fsdp": "stage2_fsdp/0000600.pth",
        "t5": "Wan2.1-T2V/models_t5_umt5-xxl-enc-bf16.pth", "vae": "Wan2.1-T2V/Wan2.1_VAE.pth",
        "taehv": "taew2_1.pth", "wav2vec2": "wav2vec2-base-960h",
        "syncnet_v2": "syncnet_v2.model", "mask": "mask.png",
    }  # fmt: skip
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return resolve_manifest(out)


def resolve_manifest(out: str | Path) -> dict:
    """The manifest with every file entry as an absolute path."""
    out = Path(out)
    manifest = json.loads((out / "manifest.json").read_text())
    keep = {"family", "layers", "lora_rank", "vae_width"}
    return {k: v if k in keep else str(out / v) for k, v in manifest.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder to write the stand-ins into")
    parser.add_argument("--width", choices=sorted(FAMILIES), default="1.3b")
    parser.add_argument("--layers", type=int, default=4, help="DiT blocks (>= 4: audio blocks)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--vae-width", type=int, default=RELEASED_BASE_DIM, help="Wan VAE base channels"
    )
    args = parser.parse_args(argv)
    manifest = write_all(args.out, args.width, args.layers, args.seed, args.vae_width)
    print(json.dumps(manifest, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
