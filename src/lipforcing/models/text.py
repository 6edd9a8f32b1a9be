"""Text conditioning: the UMT5 encoder (transformers' ``UMT5EncoderModel``) and context files.

Wan 2.1 conditions its cross-attention on umT5-XXL embeddings of the prompt (up to 512 tokens x
4096); the lip-sync models keep that path with a fixed prompt, so the embeddings are computed
once (``lipforcing encode-prompt``) and stored in a small safetensors file that every command
reads with ``--context FILE``.

Encoder weights, loaded from local paths only:
- a diffusers pipeline folder (``text_encoder/`` + ``tokenizer/``) or a ``text_encoder/``
  folder itself (with ``--tokenizer DIR``);
- Wan's ``models_t5_umt5-xxl-enc-bf16.pth`` (``wan/modules/t5.py`` names), converted by rule to
  ``UMT5EncoderModel`` names (:func:`wan_t5_to_hf`), its tokenizer folder beside it
  (``google/umt5-xxl/``) or given.

As Wan does, the prompt is tokenized with special tokens, the encoder runs with the padding
mask, and the embedding keeps only the real tokens; the DiT pads the context to ``text_len``
with zeros (:func:`load_context` pads on load, so prompt and negative prompt batch together).

Context file: keys ``context`` (L, D) and optionally ``negative`` (L', D), metadata ``prompt``,
``negative_prompt``, ``encoder``. The release's ``text_emb.pt`` (a (1, 512, 4096) tensor or
``{"context": ...}``) loads too.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from lipforcing.config import ModelConfig
from lipforcing.errors import CheckpointError, UserError

MAX_TOKENS = 512  # Wan's text_len
WAN_T5 = [  # (Wan umT5 encoder regex, UMT5EncoderModel name)
    (r"^token_embedding\.weight$", "shared.weight"),
    (r"^blocks\.(\d+)\.norm1\.weight$", r"encoder.block.\1.layer.0.layer_norm.weight"),
    (
        r"^blocks\.(\d+)\.attn\.([qkvo])\.weight$",
        r"encoder.block.\1.layer.0.SelfAttention.\2.weight",
    ),
    (
        r"^blocks\.(\d+)\.pos_embedding\.embedding\.weight$",
        r"encoder.block.\1.layer.0.SelfAttention.relative_attention_bias.weight",
    ),
    (r"^blocks\.(\d+)\.norm2\.weight$", r"encoder.block.\1.layer.1.layer_norm.weight"),
    (
        r"^blocks\.(\d+)\.ffn\.gate\.0\.weight$",
        r"encoder.block.\1.layer.1.DenseReluDense.wi_0.weight",
    ),
    (r"^blocks\.(\d+)\.ffn\.fc1\.weight$", r"encoder.block.\1.layer.1.DenseReluDense.wi_1.weight"),
    (r"^blocks\.(\d+)\.ffn\.fc2\.weight$", r"encoder.block.\1.layer.1.DenseReluDense.wo.weight"),
    (r"^norm\.weight$", "encoder.final_layer_norm.weight"),
]


def wan_t5_to_hf(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Wan's umT5 encoder state dict -> ``UMT5EncoderModel`` names (every key must map)."""
    out = {}
    for key, value in state.items():
        for pattern, repl in WAN_T5:
            if re.match(pattern, key):
                out[re.sub(pattern, repl, key)] = value
                break
        else:
            raise CheckpointError(f"unknown key {key} in a Wan umT5 encoder file")
    out["encoder.embed_tokens.weight"] = out["shared.weight"]
    return out


def wan_t5_config(state: dict[str, Tensor]):
    """The ``UMT5Config`` of a Wan umT5 encoder, read from its tensor shapes."""
    from transformers import UMT5Config

    vocab, dim = state["token_embedding.weight"].shape
    buckets, heads = state["blocks.0.pos_embedding.embedding.weight"].shape
    layers = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    return UMT5Config(
        vocab_size=vocab,
        d_model=dim,
        d_kv=state["blocks.0.attn.q.weight"].shape[0] // heads,
        d_ff=state["blocks.0.ffn.fc1.weight"].shape[0],
        num_layers=layers,
        num_heads=heads,
        relative_attention_num_buckets=buckets,
        relative_attention_max_distance=128,
        feed_forward_proj="gated-gelu",
        layer_norm_epsilon=1e-6,
        is_encoder_decoder=False,
        use_cache=False,
    )


class TextEncoder:
    """A UMT5 encoder and its tokenizer, from local files."""

    def __init__(self, model, tokenizer, name: str, device: torch.device) -> None:
        self.model, self.tokenizer, self.name, self.device = model, tokenizer, name, device

    @classmethod
    def load(
        cls,
        path: str | Path,
        tokenizer: str | Path | None = None,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> TextEncoder:
        path = Path(path)
        if not path.exists():
            raise UserError(f"no text encoder at {path}")
        model, tok_dir = _load_model(path, tokenizer)
        tok = _load_tokenizer(tok_dir)
        model = model.to(device=device, dtype=dtype).eval().requires_grad_(False)
        return cls(model, tok, str(path), torch.device(device))

    @torch.inference_mode()
    def encode(self, prompts: list[str]) -> list[Tensor]:
        """One (L_i, D) float32 embedding per prompt, real tokens only (L_i <= 512)."""
        batch = self.tokenizer(
            prompts,
            padding="max_length",
            truncation=True,
            max_length=MAX_TOKENS,
            add_special_tokens=True,
            return_tensors="pt",
        )
        ids = batch["input_ids"].to(self.device)
        mask = batch["attention_mask"].to(self.device)
        states = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        lengths = mask.sum(1).tolist()
        return [s[:n].float().cpu() for s, n in zip(states, lengths)]


def _load_model(path: Path, tokenizer: str | Path | None):
    from transformers import UMT5EncoderModel

    if path.is_dir():
        enc = path / "text_encoder" if (path / "text_encoder").is_dir() else path
        tok = Path(tokenizer) if tokenizer else _tokenizer_beside(path, enc)
        try:
            model = UMT5EncoderModel.from_pretrained(str(enc), local_files_only=True)
        except (OSError, ValueError) as e:
            raise CheckpointError(f"{enc}: not a UMT5 encoder folder ({_first(e)})") from None
        return model, tok
    from lipforcing.models.sources import read_torch_file, unwrap_state

    state = unwrap_state(read_torch_file(path), path)
    if "token_embedding.weight" not in state:
        raise CheckpointError(f"{path}: not a Wan umT5 encoder (no token_embedding.weight)")
    model = UMT5EncoderModel(wan_t5_config(state))
    missing, unexpected = model.load_state_dict(wan_t5_to_hf(state), strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{path}: umT5 keys do not fit ({missing[:2]}, {unexpected[:2]})")
    tok = Path(tokenizer) if tokenizer else _tokenizer_beside(path.parent, path.parent)
    return model, tok


def _tokenizer_beside(root: Path, enc: Path) -> Path:
    for cand in (root / "tokenizer", root / "google" / "umt5-xxl", enc):
        if (cand / "tokenizer_config.json").is_file() or (cand / "tokenizer.json").is_file():
            return cand
    raise UserError(
        f"no tokenizer found beside {root} (tokenizer/ or google/umt5-xxl/); pass --tokenizer DIR"
    )


def _load_tokenizer(path: Path):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: cannot load the tokenizer ({_first(e)})") from None


def _first(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


# ----------------------------------------------------------------------------- context files


@dataclass(frozen=True)
class Context:
    """The fixed cross-attention context of a stream or a training run.

    As read from a file (:func:`read_context`) the tensors keep their own length; :meth:`fit`
    checks them against a model and pads them to its ``text_len`` (what the DiT receives).
    """

    context: Tensor  # (1, L, text_dim)
    negative: Tensor | None  # (1, L', text_dim): the negative prompt (release full drop)
    source: str

    def fit(self, cfg: ModelConfig) -> Context:
        """Checked against ``cfg`` (width, length, finite) and zero-padded to ``text_len``."""
        if not cfg.use_text_context:
            raise UserError(
                f"--context {Path(self.source).name}: this model uses a learned null context "
                "and takes no text context"
            )
        context = _fit(self.source, "context", self.context, cfg)
        negative = self.negative
        if negative is not None:
            negative = _fit(self.source, "negative", negative, cfg)
        return Context(context, negative, self.source)


def save_context(
    path: str | Path, context: Tensor, negative: Tensor | None = None, meta: dict | None = None
) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise UserError(f"{path}: context files are written as .safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {"context": context.float().contiguous()}
    if negative is not None:
        tensors["negative"] = negative.float().contiguous()
    metadata = {k: json.dumps(v) if not isinstance(v, str) else v for k, v in (meta or {}).items()}
    save_file(tensors, str(path), metadata={"format": "lipforcing-context", **metadata})
    return path


def read_context(path: str | Path) -> Context:
    """A context file (ours or the release's ``text_emb.pt``), unpadded (:meth:`Context.fit`)."""
    from lipforcing.models.sources import open_source

    path = Path(path)
    source = open_source(path)
    keys = source.keys()
    main = next((k for k in ("context", "text_emb", "prompt_emb") if k in keys), None)
    main = main or (keys[0] if len(keys) == 1 else None)
    if main is None:
        raise CheckpointError(f"{path}: no 'context' tensor (keys {keys[:4]})")
    negative = source.get("negative") if "negative" in keys else None
    return Context(_as_batch(source.get(main)), _as_batch(negative), str(path))


def load_context(path: str | Path, cfg: ModelConfig) -> Context:
    """:func:`read_context` checked and padded for ``cfg``."""
    if not cfg.use_text_context:
        raise UserError(
            f"--context {Path(path).name}: this model uses a learned null context and takes no "
            "text context"
        )
    return read_context(path).fit(cfg)


def _as_batch(x: Tensor | None) -> Tensor | None:
    return x[None] if x is not None and x.dim() == 2 else x


def _fit(path: str | Path, key: str, x: Tensor, cfg: ModelConfig) -> Tensor:
    """(1, L, D) -> (1, text_len, D) float32, zero-padded, checked."""
    if x.dim() != 3 or x.shape[0] != 1 or x.shape[2] != cfg.text_dim or x.shape[1] > cfg.text_len:
        raise CheckpointError(
            f"{path}: {key} has shape {tuple(x.shape)}; the model needs (1, <={cfg.text_len}, "
            f"{cfg.text_dim}) (a text embedding of the wrong width?)"
        )
    if not bool(torch.isfinite(x).all()):
        raise CheckpointError(f"{path}: {key} has non-finite values")
    return F.pad(x.float(), (0, 0, 0, cfg.text_len - x.shape[1]))


__all__ = [
    "Context",
    "TextEncoder",
    "load_context",
    "read_context",
    "save_context",
    "wan_t5_config",
    "wan_t5_to_hf",
]
