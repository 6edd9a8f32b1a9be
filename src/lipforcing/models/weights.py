"""One way to name weights: a base layout plus adapters, mapped onto our (Wan 2.1) names.

``--checkpoint PATH [--adapter PATH ...]`` (:class:`WeightsSpec`) names a model as:

- our checkpoint (safetensors + JSON / header preset), or any layout of
  :mod:`lipforcing.models.sources`: the released merged student ``lipforcing_14b.pth`` (flat,
  plain or ``_core.`` keys), Wan 2.1 T2V as one file or shards + index, a diffusers
  ``transformer/`` folder, a training checkpoint (``{"model": {"net": ...}}``, PEFT-wrapped), a
  ``torch.distributed.checkpoint`` folder;
- plus adapters applied in order (OmniAvatar / OmniAvatar-LS: LoRA + audio modules + patch
  embedding; the release's Stage-2 delta). As in the release's loader (``load_state_dict`` of
  each source on top of the last), a later source replaces an earlier one key by key, LoRA pairs
  included: the Stage-2 delta's LoRA replaces the teacher adapter's (the student's LoRA was
  initialised from it), it is not added to it. Each kept pair is folded once at the end:
  ``W += (alpha / rank) B A``, rank read from the tensors, alpha from a ``.alpha`` key or
  :data:`LORA_ALPHA` (the releases: rank 128, alpha 64).

Key names, by rule (:func:`parse_key`): a wrapper prefix common to the DiT's keys (``_core.``,
``model.``, ``module.``, ``_orig_mod.``, ``net.``, ``diffusion_model.``, ``base_model.model.``,
nested) is stripped, keys outside it are reported as ignored (a training wrapper's extra
heads); diffusers ``WanTransformer3DModel`` names are renamed (:data:`DIFFUSERS_TO_WAN`); LoRA
keys in every naming the releases use (``lora_A.weight``, ``lora_A.default.weight``,
``lora_A.<adapter>.weight``, ``lora_down/lora_up.weight`` + ``.alpha``) and PEFT's
``base_layer`` infix. A patch embedding with fewer input channels (Wan's 16, OmniAvatar's 33, 49)
fills our first channels, the rest start at zero.

The architecture (width, depth, FFN, text width, input channels, audio layers) is read from the
tensors' shapes (:func:`infer_model`) and checked against the preset family (same width, FFN and
text/audio widths; any depth), so reduced-depth stand-ins load as they are. Every tensor's shape
is checked against a model built on the meta device BEFORE anything is allocated; loading then
streams tensor by tensor onto the target device and dtype (LoRA folded there), refusing
non-finite values. Bad input: one :class:`CheckpointError` naming the file, the key and the shapes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from lipforcing.config import PRESETS, ModelConfig, PresetConfig, get_preset
from lipforcing.errors import CheckpointError
from lipforcing.models.dit import LipSyncDiT, build_model, is_lipsync_param
from lipforcing.models.sources import TensorSource, open_source

LORA_ALPHA = 64.0  # OmniAvatar-LS / Lip Forcing LoRA: rank 128, alpha 64
WRAPPERS = ("_orig_mod.", "module.", "_core.", "model.", "net.", "diffusion_model.",
            "base_model.model.", "transformer.")  # fmt: skip
DIT_ROOTS = re.compile(
    r"(patch_embedding\.|blocks\.\d+\.|head\.|audio_proj\.|audio_cond_projs\.|text_embedding\."
    r"|time_embedding\.|time_projection\.|condition_embedder\.|proj_out\.|scale_shift_table"
    r"|null_context)"
)
DIFFUSERS_TO_WAN = [  # (diffusers regex, Wan replacement), applied in order
    (r"^condition_embedder\.time_embedder\.linear_1\.", "time_embedding.0."),
    (r"^condition_embedder\.time_embedder\.linear_2\.", "time_embedding.2."),
    (r"^condition_embedder\.time_proj\.", "time_projection.1."),
    (r"^condition_embedder\.text_embedder\.linear_1\.", "text_embedding.0."),
    (r"^condition_embedder\.text_embedder\.linear_2\.", "text_embedding.2."),
    (r"\.attn1\.", ".self_attn."),
    (r"\.attn2\.", ".cross_attn."),
    (r"\.to_q\.", ".q."),
    (r"\.to_k\.", ".k."),
    (r"\.to_v\.", ".v."),
    (r"\.to_out\.0\.", ".o."),
    (r"\.ffn\.net\.0\.proj\.", ".ffn.0."),
    (r"\.ffn\.net\.2\.", ".ffn.2."),
    (r"^(blocks\.\d+)\.norm2\.", r"\1.norm3."),
    (r"^(blocks\.\d+)\.scale_shift_table$", r"\1.modulation"),
    (r"^proj_out\.", "head.head."),
    (r"^scale_shift_table$", "head.modulation"),
]
LORA_KEY = re.compile(
    r"^(?P<module>.+?)\.(?P<role>lora_A|lora_B|lora_down|lora_up)(?:\.(?P<adapter>[^.]+))?"
    r"\.weight$"
)
ROLE = {"lora_A": "A", "lora_down": "A", "lora_B": "B", "lora_up": "B"}


# ----------------------------------------------------------------------------- naming


@dataclass(frozen=True)
class WeightsSpec:
    """What the user named: a base and adapters applied on top, in order."""

    path: Path
    adapters: tuple[Path, ...] = ()
    family: str | None = None  # preset family the architecture must belong to (None: by width)
    lora_alpha: float | None = None  # alpha of LoRA pairs without an .alpha key (default 64)

    @classmethod
    def of(cls, path: str | Path | WeightsSpec, adapters=(), **kw) -> WeightsSpec:
        if isinstance(path, WeightsSpec):
            return path
        return cls(Path(path), tuple(Path(a) for a in adapters), **kw)


@dataclass(frozen=True)
class Ref:
    """Where one tensor comes from."""

    source: TensorSource
    key: str

    @property
    def file(self) -> Path:
        return self.source.file_of(self.key)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.source.shape(self.key)


@dataclass
class LoraPair:
    source: TensorSource  # the source the pair came from (a later source replaces it whole)
    a: Ref | None = None  # (rank, in)
    b: Ref | None = None  # (out, rank)
    alpha: Ref | None = None  # scalar


@dataclass
class Plan:
    """The tensors to load under our names, the LoRA pairs to fold, and what was ignored."""

    tensors: dict[str, Ref] = field(default_factory=dict)
    loras: dict[str, LoraPair] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # one line per source: what it contributed
    sources: list[TensorSource] = field(default_factory=list)  # in the order laid


def dit_prefix(keys: list[str]) -> str:
    """The wrapper prefix in front of the DiT's keys (most common over DiT-looking keys)."""
    found = Counter()
    for key in keys:
        m = DIT_ROOTS.search(key)
        if m and (m.start() == 0 or key[m.start() - 1] == "."):
            found[key[: m.start()]] += 1
    if not found:
        return ""
    prefix = found.most_common(1)[0][0]
    rest = prefix
    while rest:  # only known wrapper names (nested) count as a prefix
        for w in WRAPPERS:
            if rest.startswith(w):
                rest = rest[len(w) :]
                break
        else:
            return ""
    return prefix


def is_diffusers(names: list[str]) -> bool:
    return any(n.startswith("condition_embedder.") or ".attn1." in n for n in names)


def to_wan_name(name: str, diffusers: bool) -> str:
    name = name.replace(".base_layer.", ".")
    if diffusers:
        for pattern, repl in DIFFUSERS_TO_WAN:
            name = re.sub(pattern, repl, name)
    return name


def parse_key(name: str, diffusers: bool) -> tuple[str, str]:
    """(our name, role): role ``tensor``, ``A``, ``B`` or ``alpha`` (LoRA module name then)."""
    m = LORA_KEY.match(name)
    if m:
        module = to_wan_name(m["module"] + ".x", diffusers)[: -len(".x")]
        return module, ROLE[m["role"]]
    if name.endswith(".alpha"):
        return to_wan_name(name[: -len(".alpha")] + ".x", diffusers)[: -len(".x")], "alpha"
    return to_wan_name(name, diffusers), "tensor"


def add_source(plan: Plan, source: TensorSource) -> None:
    """Lay ``source``'s tensors over ``plan`` (later sources replace earlier ones)."""
    plan.sources.append(source)
    keys = source.keys()
    prefix = dit_prefix(keys)
    own = [k for k in keys if k.startswith(prefix)]
    ignored = sorted(set(keys) - set(own))
    plan.ignored += [f"{source.path.name}:{k}" for k in ignored]
    names = [k[len(prefix) :] for k in own]
    names = [n[len("base_model.model.") :] if n.startswith("base_model.model.") else n
             for n in names]  # fmt: skip
    diffusers = is_diffusers(names)
    counts = Counter()
    for key, name in zip(own, names):
        if name.startswith("rope.") or name == "freqs":  # recomputed buffers, never weights
            plan.ignored.append(f"{source.path.name}:{key}")
            continue
        target, role = parse_key(name, diffusers)
        ref = Ref(source, key)
        counts[role] += 1
        if role == "tensor":
            plan.tensors[target] = ref
            continue
        pair = plan.loras.get(target)
        if pair is None or pair.source is not source:
            pair = plan.loras[target] = LoraPair(source)  # replaces an earlier source's pair
        setattr(pair, {"A": "a", "B": "b", "alpha": "alpha"}[role], ref)
    loras = counts["A"]
    kind = "diffusers names, " if diffusers else ""
    wrap = f"prefix {prefix!r}, " if prefix else ""
    plan.notes.append(
        f"{source.path} ({source.layout}, {kind}{wrap}{counts['tensor']} tensors"
        + (f", {loras} LoRA pairs" if loras else "")
        + (f", {len(ignored)} keys outside the DiT ignored" if ignored else "")
        + ")"
    )


def plan_weights(spec: WeightsSpec) -> tuple[Plan, TensorSource]:
    """Open every source of ``spec`` and lay them over each other."""
    base = open_source(spec.path)
    plan = Plan()
    add_source(plan, base)
    for adapter in spec.adapters:
        add_source(plan, open_source(adapter))
    for module, pair in plan.loras.items():
        if pair.a is None or pair.b is None:
            have = pair.a or pair.b
            raise CheckpointError(f"{have.file}: LoRA {module} has only one of lora_A / lora_B")
    return plan, base


# ----------------------------------------------------------------------------- architecture


def _shape(plan: Plan, name: str) -> tuple[int, ...] | None:
    ref = plan.tensors.get(name)
    return ref.shape if ref is not None else None


def infer_model(plan: Plan, family: PresetConfig, config_json: dict | None = None) -> ModelConfig:
    """The family's ModelConfig with depth and audio layers read from the tensors; every width
    is checked against the family."""
    fm = family.model
    pe = _shape(plan, "patch_embedding.weight")
    if pe is None:
        raise _no_patch_embedding(plan)
    expect = {
        "patch_embedding.weight": (fm.dim, None, *fm.patch_size),
        "blocks.0.ffn.0.weight": (fm.ffn_dim, fm.dim),
        "text_embedding.0.weight": (fm.dim, fm.text_dim),
        "time_embedding.0.weight": (fm.dim, fm.freq_dim),
        "head.head.weight": (fm.latent_channels * math.prod(fm.patch_size), fm.dim),
    }
    for name, want in expect.items():
        got = _shape(plan, name)
        if got is None:
            continue
        if len(got) != len(want) or any(w is not None and g != w for g, w in zip(got, want)):
            raise _mismatch(plan, name, got, want, family.name)
    if pe[1] > fm.in_channels:
        raise _mismatch(plan, "patch_embedding.weight", pe, (fm.dim, fm.in_channels), family.name)
    layers = sorted({int(n.split(".")[1]) for n in plan.tensors if n.startswith("blocks.")})
    if not layers:
        raise CheckpointError(
            f"{_first_file(plan)} holds no DiT blocks ({len(plan.loras)} LoRA pairs): an adapter; "
            "pass the base with --checkpoint and this file with --adapter"
        )
    if layers != list(range(len(layers))):
        gap = next((i for i, k in enumerate(layers) if i != k), len(layers))
        raise CheckpointError(
            f"{_first_file(plan)}: block {gap} is missing (blocks {layers[:6]}...)"
        )
    audio = sorted(
        {int(n.split(".")[1]) for n in plan.tensors if n.startswith("audio_cond_projs.")}
    )
    updates: dict = {"num_layers": len(layers)}
    if audio:
        updates["audio_layers"] = len(audio)
        proj = _shape(plan, "audio_proj.proj.weight")
        want = (fm.audio_pack_dim, fm.audio_pack_frames * fm.audio_feature_dim)
        if proj is not None and proj != want:
            raise _mismatch(plan, "audio_proj.proj.weight", proj, want, family.name)
    elif fm.audio_layers is not None:
        updates["audio_layers"] = min(fm.audio_layers, max(len(layers) - fm.audio_first_layer, 0))
    heads = (config_json or {}).get("num_heads", (config_json or {}).get("num_attention_heads"))
    if heads is not None and heads != fm.num_heads:
        raise CheckpointError(
            f"{_first_file(plan)}: config.json says {heads} heads, {family.name} has {fm.num_heads}"
        )
    try:
        return dataclasses.replace(fm, **updates)
    except ValueError as e:
        raise CheckpointError(f"{_first_file(plan)}: {e}") from None


def family_for(plan: Plan, name: str | None) -> PresetConfig:
    """The named preset family, or the one whose width matches the patch embedding."""
    if name is not None:
        try:
            return get_preset(name)
        except ValueError as e:
            raise CheckpointError(str(e)) from None
    pe = _shape(plan, "patch_embedding.weight")
    if pe is None:
        raise _no_patch_embedding(plan)
    for preset_name in PRESETS:
        preset = get_preset(preset_name)
        if preset.model.dim == pe[0]:
            return preset
    widths = {n: get_preset(n).model.dim for n in PRESETS}
    raise CheckpointError(
        f"{_first_file(plan)}: patch_embedding.weight has shape {tuple(pe)}: width {pe[0]} is "
        f"no preset family's ({widths})"
    )


def _no_patch_embedding(plan: Plan) -> CheckpointError:
    return CheckpointError(
        f"{_first_file(plan)}: no patch_embedding.weight (not a DiT, or an adapter given "
        "without its base: pass the base with --checkpoint and this file with --adapter)"
    )


def _mismatch(plan: Plan, name: str, got, want, family: str) -> CheckpointError:
    ref = plan.tensors[name]
    want_s = "(" + ", ".join("*" if w is None else str(w) for w in want) + ")"
    return CheckpointError(
        f"{ref.file}: {ref.key} has shape {tuple(got)}, the {family} family needs {want_s} "
        "(a checkpoint of another family or size?)"
    )


def _first_file(plan: Plan) -> Path:
    ref = next(iter(plan.tensors.values()), None)
    if ref is None:
        pair = next(iter(plan.loras.values()), None)
        return pair.a.file if pair and pair.a else Path("?")
    return ref.file


# ----------------------------------------------------------------------------- checking


@dataclass
class LoadReport:
    """What a load did."""

    source: str
    files: list[str] = field(default_factory=list)  # one line per source
    missing: list[str] = field(default_factory=list)  # model parameters left at their init
    unexpected: list[str] = field(default_factory=list)
    reshaped: list[str] = field(default_factory=list)  # patch-embedding channels expanded
    merged: list[str] = field(default_factory=list)  # LoRA modules folded
    ignored: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.source}: {len(self.missing)} missing, {len(self.unexpected)} unexpected, "
            f"{len(self.reshaped)} reshaped ({', '.join(self.reshaped) or '-'}), "
            f"{len(self.merged)} LoRA merged, {len(self.ignored)} ignored"
        )


def check_plan(
    plan: Plan, expected: dict[str, tuple[int, ...]], *, allow_missing: bool
) -> LoadReport:
    """Compare the plan with the model's parameter shapes (from a meta-device model)."""
    report = LoadReport("plan", files=list(plan.notes), ignored=list(plan.ignored))
    unexpected = sorted(set(plan.tensors) - set(expected))
    if unexpected:
        ref = plan.tensors[unexpected[0]]
        raise CheckpointError(
            f"{ref.file}: unknown key {ref.key} (shape {tuple(ref.shape)}) - not a parameter of "
            f"this model ({len(unexpected)} such keys)"
        )
    for name, ref in plan.tensors.items():
        want = expected[name]
        if tuple(ref.shape) != want:
            if not _grows(name, ref.shape, want):
                raise CheckpointError(
                    f"{ref.file}: {ref.key} has shape {tuple(ref.shape)}, the model needs {want}"
                )
            report.reshaped.append(name)
    for module, pair in plan.loras.items():
        weight = module + ".weight"
        if weight not in expected:
            raise CheckpointError(
                f"{pair.a.file}: LoRA {pair.a.key} targets {weight}, which the model does not have"
            )
        out_dim, in_dim = expected[weight]
        (ra, ia), (ob, rb) = pair.a.shape, pair.b.shape
        if ra != rb:
            raise CheckpointError(
                f"{pair.b.file}: LoRA rank mismatch at {module}: {pair.a.key} {tuple(pair.a.shape)}"
                f" vs {pair.b.key} {tuple(pair.b.shape)}"
            )
        if (ob, ia) != (out_dim, in_dim):
            raise CheckpointError(
                f"{pair.b.file}: LoRA {pair.b.key} {tuple(pair.b.shape)} / {pair.a.key} "
                f"{tuple(pair.a.shape)} does not fit {weight} {(out_dim, in_dim)} (an adapter "
                "for another model size?)"
            )
        if weight not in plan.tensors:
            raise CheckpointError(f"{pair.a.file}: LoRA {module} has no base weight {weight}")
        report.merged.append(module)
    report.missing = sorted(set(expected) - set(plan.tensors))
    allowed = [k for k in report.missing if allow_missing and is_lipsync_param(k)]
    bad = [k for k in report.missing if k not in allowed]
    if bad:
        raise CheckpointError(
            f"{_first_file(plan)} does not match the model: {len(bad)} parameters are missing "
            f"(e.g. {bad[:3]}); another size, or a base without its adapter (--adapter FILE)?"
        )
    return report


def _grows(name: str, got: tuple[int, ...], want: tuple[int, ...]) -> bool:
    """Patch-embedding input channels may grow (16 / 33 / 49 -> 65)."""
    return (
        name == "patch_embedding.weight"
        and len(got) == len(want) == 5
        and got[0] == want[0]
        and got[2:] == want[2:]
        and got[1] < want[1]
    )


# ----------------------------------------------------------------------------- loading


@dataclass
class Loaded:
    model: LipSyncDiT
    preset: PresetConfig
    report: LoadReport
    unmerged: dict[str, LoraPair] = field(default_factory=dict)  # ``keep_lora``: module -> pair


def read_native_preset(source: TensorSource) -> PresetConfig | None:
    """The preset our checkpoints carry (JSON beside, or the safetensors header), else None."""
    side = source.path.with_suffix(".json") if source.path.is_file() else None
    try:
        if side is not None and side.is_file():
            data = json.loads(side.read_text())
            if isinstance(data, dict) and "preset" in data:
                return PresetConfig.from_dict(data["preset"])
        if "preset" in source.metadata:
            return PresetConfig.from_dict(json.loads(source.metadata["preset"]))
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{source.path}: unreadable stored config ({e})") from None
    return None


def _config_json(source: TensorSource) -> dict | None:
    folder = source.path if source.path.is_dir() else source.path.parent
    path = folder / "config.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except ValueError:
        return None


def resolve(
    spec: WeightsSpec,
    *,
    attention: str | None = None,
    allow_missing: bool = False,
    default_attention: str | None = None,
) -> tuple[Plan, PresetConfig, LoadReport]:
    """Plan, preset and checked report of ``spec``; nothing is allocated."""
    plan, base = plan_weights(spec)
    native = read_native_preset(base)
    if native is not None:
        if spec.family is not None and spec.family != native.name:
            raise CheckpointError(
                f"{spec.path} holds a {native.name} model, not {spec.family} (--preset)"
            )
        preset = native
        model_cfg = native.model
    else:
        preset = family_for(plan, spec.family)
        model_cfg = infer_model(plan, preset, _config_json(base))
        attention = attention or default_attention  # foreign layouts store no attention
    if attention is not None:
        model_cfg = dataclasses.replace(model_cfg, attention=attention)
    try:
        preset = dataclasses.replace(preset, model=model_cfg)
    except ValueError as e:
        raise CheckpointError(f"{spec.path}: {e}") from None
    meta = build_model(preset.model, device="meta")
    expected = {k: tuple(v.shape) for k, v in meta.state_dict().items()}
    report = check_plan(plan, expected, allow_missing=allow_missing)
    report.source = base.layout if native is None else "lipforcing checkpoint"
    return plan, preset, report


def load_model(
    spec: WeightsSpec | str | Path,
    *,
    attention: str | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    allow_missing: bool = False,
    default_attention: str | None = None,
    keep_lora: bool = False,
) -> Loaded:
    """Build the model ``spec`` names and stream its weights in.

    Args:
        spec: a :class:`WeightsSpec` or a path.
        attention: override the stored attention (``"block_causal"`` turns a teacher into a
            student initialisation).
        device, dtype: where the parameters live; nothing larger than one tensor is held on
            the host besides (memory-mapped) file data.
        allow_missing: lip-sync parameters (audio modules, null context) absent from the
            weights keep their initialisation (a plain Wan base); otherwise missing is an error.
        default_attention: the attention of a foreign layout (which stores none; the family's
            default is the bidirectional teacher): a streaming pipeline asks for the student.
        keep_lora: the LoRA pairs that the LAST adapter of ``spec`` contributes (those no later
            source replaced: all of its own) are not folded; they come back in
            ``Loaded.unmerged`` for a trainable LoRA to start from (:func:`lora_factors`), and
            the weights under them stay the base's exactly. Earlier sources' pairs that the last
            adapter replaces are dropped (the release's ``merge_lora=False`` trainee).
    """
    spec = WeightsSpec.of(spec)
    plan, preset, report = resolve(
        spec, attention=attention, allow_missing=allow_missing, default_attention=default_attention
    )
    unmerged = _take_last_pairs(plan, spec, report) if keep_lora else {}
    model = build_model(preset.model, device="meta").to(dtype)
    model = model.to_empty(device=device)
    if report.missing:
        model.init_weights()
    fill(model, plan, report, LORA_ALPHA if spec.lora_alpha is None else spec.lora_alpha)
    return Loaded(model, preset, report, unmerged)


def _take_last_pairs(plan: Plan, spec: WeightsSpec, report: LoadReport) -> dict[str, LoraPair]:
    """Remove the last adapter's LoRA pairs from ``plan`` (and the report's merged list)."""
    if not spec.adapters:
        return {}
    last = plan.sources[-1]
    taken = {m: pair for m, pair in plan.loras.items() if pair.source is last}
    for module in taken:
        del plan.loras[module]
    report.merged = [m for m in report.merged if m not in taken]
    return taken


def lora_factors(
    pair: LoraPair, default_alpha: float = LORA_ALPHA, device: torch.device | str = "cpu"
) -> tuple[Tensor, Tensor, float]:
    """(A, B, alpha) of one pair in float32 on ``device`` (alpha from its ``.alpha`` key, else
    ``default_alpha``), checked finite."""
    device = torch.device(device)
    a = _fetch(pair.a, device).float()
    b = _fetch(pair.b, device).float()
    alpha = default_alpha
    if pair.alpha is not None:
        alpha = float(_fetch(pair.alpha, device).float().reshape(-1)[0])
    return a, b, alpha


@torch.no_grad()
def fill(model: torch.nn.Module, plan: Plan, report: LoadReport, alpha: float = LORA_ALPHA) -> None:
    """Copy a checked plan into ``model``'s parameters, one tensor at a time."""
    own = model.state_dict()
    for name, ref in plan.tensors.items():
        value = _fetch(ref, own[name].device)
        if name in report.reshaped:
            value = _expand_channels(value, own[name].shape)
        pair = plan.loras.get(name[: -len(".weight")]) if name.endswith(".weight") else None
        if pair is not None:
            value = _fold(value, pair, alpha, own[name].device)
        own[name].copy_(value)


def load_into(
    model: torch.nn.Module, source: TensorSource, *, allow_missing: bool, alpha: float = LORA_ALPHA
) -> LoadReport:
    """Load one source into an existing ``model`` (checked against its shapes first)."""
    plan = Plan()
    add_source(plan, source)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    report = check_plan(plan, expected, allow_missing=allow_missing)
    report.source = source.layout
    fill(model, plan, report, alpha)
    return report


def _fetch(ref: Ref, device: torch.device) -> Tensor:
    """One source tensor on ``device``, checked finite."""
    value = ref.source.get(ref.key).to(device)
    if value.is_floating_point() and not bool(torch.isfinite(value).all()):
        bad = int((~torch.isfinite(value)).sum())
        raise CheckpointError(
            f"{ref.file}: tensor {ref.key} has {bad} non-finite values (NaN or inf); refusing "
            "weights that would paint garbage"
        )
    return value


def _fold(weight: Tensor, pair: LoraPair, alpha: float, device: torch.device) -> Tensor:
    """W + (alpha / rank) B A, in float32 on ``device``."""
    a, b, alpha = lora_factors(pair, alpha, device)
    return weight.float() + (alpha / a.shape[0]) * (b @ a)


def _expand_channels(value: Tensor, shape: torch.Size) -> Tensor:
    out = torch.zeros(shape, dtype=value.dtype, device=value.device)
    out[:, : value.shape[1]] = value
    return out


__all__ = [
    "DIFFUSERS_TO_WAN",
    "LORA_ALPHA",
    "LoadReport",
    "Loaded",
    "LoraPair",
    "Plan",
    "WeightsSpec",
    "add_source",
    "check_plan",
    "dit_prefix",
    "infer_model",
    "fill",
    "load_into",
    "load_model",
    "lora_factors",
    "parse_key",
    "plan_weights",
    "resolve",
]
