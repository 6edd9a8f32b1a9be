"""Per-GPU memory of a Stage-2 run under FSDP2, on paper (``docs/TRAINING.md``'s table).

Counts come from the model configs (exact parameter counts of the meta-device model, LoRA by
:func:`lipforcing.distill.lora.expected_trainable`); the rest is arithmetic, stated here once:

- Trainees (student, critic) are FSDP2-sharded over ``gpus``: fp32 master parameters, fp32
  gradients of the trainable ones (``reduce_dtype`` fp32), AdamW's two fp32 moments, and the
  student's fp32 EMA, each divided by ``gpus``. Frozen LoRA base weights are sharded too, fp32.
- The frozen teacher is never wrapped: bf16, whole, on every GPU.
- During compute FSDP2 all-gathers one block (bf16) at a time, two with prefetch.
- Activations of one micro-batch (bf16 unless stated), with T tokens per latent frame:
  * student: only call j* of each chunk keeps a graph, 3 frames of tokens per chunk, all
    chunks of the rollout; per token per block ~ (16 dim + 2 ffn) bf16 values saved by the
    linears, norms and SDPA plus 4 fp32 values of dim on the fp32 residual stream, and the
    keys / values each call attends to (cache + chunk); no recomputation (the calls read a
    KV cache later chunks change);
  * critic: the whole sequence; with per-block recomputation only each block's fp32 input is
    kept, plus one block's activations during its backward;
  * the rollout's KV cache: (sink + window) frames of keys and values per layer, bf16.
These are estimates (allocator fragmentation, SDPA workspace, CUDA context not counted).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from lipforcing.config import LoraConfig, PresetConfig, get_preset

GIB = 2**30
FP32, BF16 = 4, 2


@dataclass(frozen=True)
class StageTwoRun:
    """What sizes a Stage-2 run: the three models, the batch split and the clip length."""

    name: str
    student: str  # preset names
    teacher: str
    critic: str
    lora: LoraConfig | None  # on student and critic
    gpus: int = 4
    micro_batch: int = 1
    latent_frames: int = 21  # 81 video frames, 7 chunks


def param_count(preset: PresetConfig) -> int:
    from lipforcing.models import build_model

    return sum(p.numel() for p in build_model(preset.model, device="meta").parameters())


def trainable_count(preset: PresetConfig, lora: LoraConfig | None) -> int:
    from lipforcing.distill.lora import expected_trainable

    return param_count(preset) if lora is None else expected_trainable(preset.model, lora)


def act_per_token_block(preset: PresetConfig) -> int:
    """Bytes saved for the backward per token per block (see the module docstring)."""
    m = preset.model
    return (16 * m.dim + 2 * m.ffn_dim) * BF16 + 4 * m.dim * FP32


def trainee_bytes(preset: PresetConfig, lora: LoraConfig | None, gpus: int) -> dict[str, float]:
    """Sharded parameters, gradients and AdamW moments of one trainee, per GPU."""
    total, trainable = param_count(preset), trainable_count(preset, lora)
    return {
        "params": total * FP32 / gpus,
        "grads": trainable * FP32 / gpus,
        "adam": 2 * trainable * FP32 / gpus,
    }


def estimate(run: StageTwoRun) -> dict[str, float]:
    """Bytes per GPU by item (see the module docstring)."""
    s, t, c = (get_preset(n) for n in (run.student, run.teacher, run.critic))
    tokens_frame = s.tokens_per_frame
    student, critic = trainee_bytes(s, run.lora, run.gpus), trainee_bytes(c, run.lora, run.gpus)
    grad_tokens = run.latent_frames * tokens_frame * run.micro_batch  # call j* of every chunk
    seq_tokens = run.latent_frames * tokens_frame * run.micro_batch
    cm = c.model
    return {
        "student params (fp32, sharded)": student["params"],
        "student grads (fp32, sharded)": student["grads"],
        "student AdamW moments (fp32, sharded)": student["adam"],
        "student EMA (fp32, sharded)": trainable_count(s, run.lora) * FP32 / run.gpus,
        "critic params (fp32, sharded)": critic["params"],
        "critic grads (fp32, sharded)": critic["grads"],
        "critic AdamW moments (fp32, sharded)": critic["adam"],
        "teacher (bf16, whole, frozen)": param_count(t) * BF16,
        "gathered blocks (bf16, 2 in flight)": 2 * _largest_block(s, t, c) * BF16,
        "student activations (call j*, no recomputation)": grad_tokens
        * s.model.num_layers
        * act_per_token_block(s),
        "student keys/values attended by call j* (bf16)": _attended_kv(s, run),
        "critic activations (per-block recomputation)": seq_tokens * cm.num_layers * cm.dim * FP32
        + seq_tokens * act_per_token_block(c),
        "rollout KV cache (bf16)": 2
        * s.model.num_layers
        * s.causal.cache_frames
        * tokens_frame
        * s.model.dim
        * BF16
        * run.micro_batch,
    }


def _attended_kv(s: PresetConfig, run: StageTwoRun) -> float:
    """Each chunk's call j* saves the keys and values it attends to: the cached frames plus its
    own, up to sink + window frames, per layer."""
    chunks = run.latent_frames // s.causal.chunk_frames
    kv = 2 * s.causal.cache_frames * s.tokens_per_frame * s.model.dim * BF16
    return chunks * s.model.num_layers * kv * run.micro_batch


def _largest_block(*presets: PresetConfig) -> int:
    def block(p: PresetConfig) -> int:
        m = p.model
        return 8 * m.dim * m.dim + 2 * m.dim * m.ffn_dim  # attention linears + FFN

    return max(block(p) for p in presets)


RUNS = (
    StageTwoRun("1.3B student, full fine-tune", "wan-1.3b", "wan-14b", "wan-1.3b", None),
    StageTwoRun("14B student, LoRA 128/64", "wan-14b", "wan-14b", "wan-14b", LoraConfig()),
)


def table(runs: tuple[StageTwoRun, ...] = RUNS) -> str:
    """The markdown table of :func:`estimate` for ``runs`` (GiB per GPU)."""
    est = [estimate(r) for r in runs]
    head = "| per GPU (GiB) | " + " | ".join(r.name for r in runs) + " |"
    rows = [head, "|---|" + "---:|" * len(runs)]
    for key in est[0]:
        rows.append(f"| {key} | " + " | ".join(f"{e[key] / GIB:.1f}" for e in est) + " |")
    rows.append(
        "| **total** | " + " | ".join(f"**{sum(e.values()) / GIB:.1f}**" for e in est) + " |"
    )
    counts = [
        f"{param_count(get_preset(r.student)) / 1e9:.2f}B params, "
        f"{trainable_count(get_preset(r.student), r.lora) / 1e6:.0f}M trainable"
        for r in runs
    ]
    rows.append("| student size | " + " | ".join(counts) + " |")
    return "\n".join(rows)


def with_gpus(run: StageTwoRun, gpus: int) -> StageTwoRun:
    return dataclasses.replace(run, gpus=gpus)


def options(run: StageTwoRun) -> dict[str, float]:
    """Totals per GPU as implemented and with two changes not implemented here: recomputing
    the student's calls from a snapshot of the cache each read (the saved activations become
    each block's fp32 input plus one chunk-call's activations; the saved keys / values become
    one whole-cache snapshot per chunk), then also sharding the frozen teacher (FSDP2 without
    an optimiser) over the GPUs."""
    est = estimate(run)
    s = get_preset(run.student)
    total = sum(est.values())
    chunks = run.latent_frames // s.causal.chunk_frames
    tokens = run.latent_frames * s.tokens_per_frame * run.micro_batch
    inputs = tokens * s.model.num_layers * s.model.dim * FP32
    one_call = tokens // chunks * act_per_token_block(s)
    snapshots = chunks * est["rollout KV cache (bf16)"]
    student_act = est["student activations (call j*, no recomputation)"]
    kv = est["student keys/values attended by call j* (bf16)"]
    recompute = total - student_act - kv + inputs + one_call + snapshots
    teacher = est["teacher (bf16, whole, frozen)"]
    return {
        "as implemented": total,
        "+ student recomputation from cache snapshots": recompute,
        "+ frozen teacher sharded too": recompute - teacher + teacher / run.gpus,
    }


def options_table(runs: tuple[StageTwoRun, ...] = RUNS) -> str:
    opts = [options(r) for r in runs]
    rows = ["| total per GPU (GiB) | " + " | ".join(r.name for r in runs) + " |"]
    rows.append("|---|" + "---:|" * len(runs))
    for key in opts[0]:
        rows.append(f"| {key} | " + " | ".join(f"{o[key] / GIB:.1f}" for o in opts) + " |")
    return "\n".join(rows)
