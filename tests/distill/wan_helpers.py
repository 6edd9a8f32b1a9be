"""Wan-width stand-ins at reduced depth for the Stage-2 proof on the CPU: random-weight models
of the real widths (14B: dim 5120, 40 heads, FFN 13824; 1.3B: dim 1536), one block each, on
64 x 64 crops (8 x 8 latents) with a 16-token text context; a random-weight SyncNet-v2 (the
real architecture) and a random TAEHV decoder for the reward."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from lipforcing.config import (
    DMDConfig,
    LoraConfig,
    OptimConfig,
    PresetConfig,
    RewardConfig,
    get_preset,
)
from lipforcing.models import build_model
from lipforcing.models.checkpoints import save_checkpoint
from lipforcing.models.text import Context

CROP, TEXT = 64, 16


def wan_preset(name: str, layers: int = 1) -> PresetConfig:
    p = get_preset(name)
    model = dataclasses.replace(
        p.model, num_layers=layers, audio_first_layer=0, audio_layers=1, text_len=TEXT
    )
    codec = dataclasses.replace(p.codec, image_size=CROP)
    media = dataclasses.replace(p.media, crop_size=CROP)
    return dataclasses.replace(p, model=model, codec=codec, media=media)


def standin(preset: PresetConfig, attention: str, path: Path, seed: int) -> Path:
    """Random weights (every tensor, incl. the zero-initialised gates and head) in our format."""
    if path.is_file():
        return path
    torch.manual_seed(seed)
    model = build_model(preset.with_attention(attention).model)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.02)
    return save_checkpoint(path, model, preset.with_attention(attention))


def wan_cache(preset: PresetConfig, n: int = 4, frames: int = 6) -> dict:
    g = torch.Generator().manual_seed(0)
    h, w = preset.latent_hw
    lat = (n, 16, frames, h, w)
    t = 1 + 4 * (frames - 1)
    mask = torch.zeros(CROP, CROP)
    mask[CROP // 2 :, CROP // 4 : 3 * CROP // 4] = 1
    return {
        "x0": torch.randn(lat, generator=g),
        "masked": torch.randn(lat, generator=g),
        "ref": torch.randn(n, 16, 1, h, w, generator=g),
        "ref_seq": torch.randn(lat, generator=g),
        "audio": torch.randn(n, t, preset.audio.feature_dim, generator=g),
        "mask": mask,
        "wave": 0.1 * torch.randn(n, t * 640, generator=g),
        "samples_per_frame": 640,
    }


def context(preset: PresetConfig) -> Context:
    """A random text context and negative prompt as a context file holds them."""
    g = torch.Generator().manual_seed(1)
    text, negative = (torch.randn(1, TEXT, preset.model.text_dim, generator=g) for _ in range(2))
    return Context(text, negative, "random context")


def syncnet_v2_file(path: Path) -> Path:
    """syncnet_python's state-dict layout, random weights."""
    from lipforcing.evaluation.syncnet import SyncNetV2

    if not path.is_file():
        torch.manual_seed(2)
        torch.save(SyncNetV2().state_dict(), path)
    return path


def reward_codec():
    from lipforcing.codecs import build_codec
    from lipforcing.config import CodecConfig

    torch.manual_seed(3)
    return build_codec(CodecConfig(kind="taehv", image_size=CROP, decoder="same")).eval()


def stage2_config(lora: LoraConfig | None, steps: int = 2) -> DMDConfig:
    """Two updates (student, then critic) in the release's order, batch 2 by accumulation."""
    optim = OptimConfig(
        lr=2e-6, betas=(0.0, 0.999), warmup_steps=0, batch_size=2, micro_batch=1, steps=steps
    )
    return DMDConfig(
        optim=optim,
        steps_unit="iteration",
        critic_steps=1,
        critic_loss="x0_exit",
        num_chunks=2,
        lora=lora,
        reward=RewardConfig(vshift=15),
    )


def files(root: Path, student: str, teacher: str = "wan-14b") -> dict:
    """Teacher, student and critic (``student`` width) stand-ins and SyncNet-v2."""
    root.mkdir(parents=True, exist_ok=True)
    t, s = wan_preset(teacher), wan_preset(student)
    return {
        "teacher": standin(t, "bidirectional", root / f"teacher_{teacher}.safetensors", 0),
        "student": standin(s, "block_causal", root / f"student_{student}.safetensors", 1),
        "critic": standin(s, "bidirectional", root / f"critic_{student}.safetensors", 4),
        "syncnet": syncnet_v2_file(root / "syncnet_v2.model"),
        "preset": s,
    }


def run(
    root: Path,
    out: Path,
    student: str,
    lora: LoraConfig | None,
    steps: int = 2,
    teacher: str = "wan-14b",
    save_every: int = 1,
):
    """One Stage-2 run through the library entry point with the SyncNet-v2 reward."""
    from lipforcing.distill.reward import check_reward_inputs, load_reward_syncnet, syncnet_reward
    from lipforcing.distill.stages import run_stage2

    f = files(root, student, teacher)
    cache, cfg = wan_cache(f["preset"]), stage2_config(lora, steps)
    syncnet = load_reward_syncnet(f["syncnet"])
    check_reward_inputs(syncnet, cache)
    reward = syncnet_reward(reward_codec(), syncnet, cfg.reward)
    return run_stage2(
        cache,
        f["student"],
        f["teacher"],
        cfg,
        out,
        reward_fn=reward,
        critic_path=f["critic"],
        context=context(f["preset"]),
        save_every=save_every,
    )


def worker(
    rank: int, world: int, init_file: str, root: str, out: str, steps: int, student: str
) -> None:
    """One of the gloo processes of a run (LoRA on for the 14B-width student)."""
    import torch.distributed as dist

    from lipforcing.distill.distributed import finish_distributed

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    lora = LoraConfig() if student == "wan-14b" else None
    run(Path(root), Path(out), student, lora, steps)
    finish_distributed()


def available_gib() -> float:
    """Memory available to new processes (Linux /proc/meminfo), GiB."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 2**20
    return 0.0
