"""Tensor sources: every file layout a DiT's weights come in, read lazily, key by key.

A :class:`TensorSource` lists its keys with shapes and dtypes (from headers or metadata, without
reading the data) and returns one tensor at a time, so a 14B checkpoint streams onto its device
without a full copy in host memory. Layouts (:func:`open_source` picks one from the path):

- one ``.safetensors`` file (ours, Wan 2.1 1.3B, an adapter);
- sharded safetensors: ``*.safetensors.index.json`` (its ``weight_map``), a folder holding one
  index, or any one shard ``name-0000k-of-0000n.safetensors`` (the index beside it is used);
- a diffusers model folder (``transformer/`` inside a pipeline folder, or the folder itself:
  ``config.json`` + ``diffusion_pytorch_model*.safetensors``);
- ``.pth`` / ``.pt`` / ``.bin`` / ``.ckpt``: ``torch.load(weights_only=True, mmap=True)``; nested
  training checkpoints (``{"model": {"net": ...}}``, ``{"state_dict": ...}``) are unwrapped;
  a pickle needing more than tensors is refused with the global it asked for;
- a ``torch.distributed.checkpoint`` folder (``.metadata`` + ``*.distcp``, as FSDP writes it;
  also ``X.net_model/`` beside a ``X.pth``), read one tensor per load.

Every failure is one :class:`~lipforcing.errors.CheckpointError` naming the file.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lipforcing.errors import CheckpointError

TORCH_SUFFIXES = {".pth", ".pt", ".bin", ".ckpt", ".model"}
SHARD = re.compile(r"^(?P<stem>.+)-(?P<k>\d{5})-of-(?P<n>\d{5})\.safetensors$")
SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
NESTED = ("model", "net", "state_dict", "module", "model_state")  # training-checkpoint wrappers


class TensorSource:
    """Keys, shapes and dtypes of a weight layout, and its tensors one at a time."""

    path: Path  # what the user named (for messages)
    layout: str  # short description: "safetensors", "3 safetensors shards + index", ...
    metadata: dict[str, str]  # safetensors header metadata (empty for other layouts)

    def keys(self) -> list[str]:
        raise NotImplementedError

    def shape(self, key: str) -> tuple[int, ...]:
        raise NotImplementedError

    def dtype(self, key: str) -> torch.dtype:
        raise NotImplementedError

    def get(self, key: str) -> Tensor:
        """The tensor ``key`` on the CPU (memory-mapped where the format allows)."""
        raise NotImplementedError

    def file_of(self, key: str) -> Path:
        """The file holding ``key`` (a shard, for sharded layouts)."""
        return self.path


class SafetensorsFiles(TensorSource):
    """One or several safetensors files; headers are read up front, data on demand."""

    def __init__(self, path: Path, files: list[Path], layout: str) -> None:
        from safetensors import safe_open

        self.path, self.layout, self.metadata = path, layout, {}
        self._file: dict[str, Path] = {}
        self._info: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
        self._handles: dict[Path, Any] = {}
        for f in files:
            try:
                handle = safe_open(str(f), "pt")
                names = list(handle.keys())  # noqa: SIM118 (safe_open is not a dict)
                for key in names:
                    sl = handle.get_slice(key)
                    dtype = SAFETENSORS_DTYPES.get(sl.get_dtype(), torch.float32)
                    self._info[key] = (tuple(sl.get_shape()), dtype)
                    self._file[key] = f
                self.metadata.update(handle.metadata() or {})
            except Exception as e:  # truncated, not safetensors, bad header
                raise CheckpointError(
                    f"{f} is not a readable safetensors file ({_brief(e)})"
                ) from None
            self._handles[f] = handle

    def keys(self) -> list[str]:
        return list(self._info)

    def shape(self, key: str) -> tuple[int, ...]:
        return self._info[key][0]

    def dtype(self, key: str) -> torch.dtype:
        return self._info[key][1]

    def get(self, key: str) -> Tensor:
        f = self._file[key]
        try:
            return self._handles[f].get_tensor(key)
        except Exception as e:
            raise CheckpointError(f"{f}: cannot read tensor {key} ({_brief(e)})") from None

    def file_of(self, key: str) -> Path:
        return self._file[key]


class TensorDict(TensorSource):
    """An in-memory (or memory-mapped) flat dict of tensors: ``.pth`` files."""

    def __init__(self, path: Path, tensors: dict[str, Tensor], layout: str) -> None:
        self.path, self.layout, self.metadata = path, layout, {}
        self._t = tensors

    def keys(self) -> list[str]:
        return list(self._t)

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._t[key].shape)

    def dtype(self, key: str) -> torch.dtype:
        return self._t[key].dtype

    def get(self, key: str) -> Tensor:
        return self._t[key]


class DistributedCheckpoint(TensorSource):
    """A ``torch.distributed.checkpoint`` folder; each :meth:`get` loads just that tensor."""

    def __init__(self, path: Path) -> None:
        from torch.distributed.checkpoint import FileSystemReader
        from torch.distributed.checkpoint.metadata import TensorStorageMetadata

        self.path, self.layout, self.metadata = path, "torch.distributed.checkpoint folder", {}
        try:
            meta = FileSystemReader(str(path)).read_metadata()
        except Exception as e:
            raise CheckpointError(
                f"{path}: unreadable distributed checkpoint ({_brief(e)})"
            ) from None
        self._info = {
            key: (tuple(m.size), m.properties.dtype)
            for key, m in meta.state_dict_metadata.items()
            if isinstance(m, TensorStorageMetadata)
        }

    def keys(self) -> list[str]:
        return list(self._info)

    def shape(self, key: str) -> tuple[int, ...]:
        return self._info[key][0]

    def dtype(self, key: str) -> torch.dtype:
        return self._info[key][1]

    def get(self, key: str) -> Tensor:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint import FileSystemReader

        shape, dtype = self._info[key]
        out = {key: torch.empty(shape, dtype=dtype)}
        try:
            with warnings.catch_warnings():  # "assuming ... a single process": that is the intent
                warnings.simplefilter("ignore", UserWarning)
                dcp.load(out, storage_reader=FileSystemReader(str(self.path)), no_dist=True)
        except Exception as e:
            raise CheckpointError(f"{self.path}: cannot read tensor {key} ({_brief(e)})") from None
        return out[key]


# ----------------------------------------------------------------------------- opening


def open_source(path: str | Path) -> TensorSource:
    """The :class:`TensorSource` of whatever layout ``path`` names (see the module docstring)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no weights at {path}")
    if path.is_dir():
        return _open_folder(path)
    name = path.name
    if name.endswith(".safetensors.index.json"):
        return _open_index(path)
    if path.suffix == ".safetensors":
        if SHARD.match(name):
            return _open_shard(path)
        return SafetensorsFiles(path, [path], "safetensors")
    if path.suffix in TORCH_SUFFIXES:
        sibling = path.with_suffix(".net_model")  # the release's FSDP student beside its .pth
        if sibling.is_dir() and (sibling / ".metadata").is_file():
            return DistributedCheckpoint(sibling)
        return _open_torch(path)
    raise CheckpointError(
        f"{path}: unknown weights format (use .safetensors, a shard index, a diffusers folder, "
        ".pth/.pt, or a torch.distributed.checkpoint folder)"
    )


def _open_folder(path: Path) -> TensorSource:
    if (path / ".metadata").is_file():
        return DistributedCheckpoint(path)
    if (path / "transformer").is_dir():  # a diffusers pipeline folder
        return _open_folder(path / "transformer")
    indexes = sorted(path.glob("*.safetensors.index.json"))
    if len(indexes) == 1:
        return _open_index(indexes[0])
    files = sorted(path.glob("*.safetensors"))
    if len(indexes) > 1 or len(files) > 1 and not indexes:
        names = [p.name for p in (indexes or files)][:4]
        raise CheckpointError(
            f"{path}: several weight files and no single index ({names}); name one"
        )
    if len(files) == 1:
        return SafetensorsFiles(files[0], files, "safetensors")
    raise CheckpointError(f"{path}: no weights inside (no .safetensors, index or .metadata)")


def _open_index(index: Path) -> TensorSource:
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{index}: not a safetensors index ({_brief(e)})") from None
    files: dict[str, str] = {}
    for key, shard in weight_map.items():
        files.setdefault(shard, key)
    for shard, key in files.items():
        if not (index.parent / shard).is_file():
            raise CheckpointError(
                f"{index} names shard {shard} (for {key} and others), which is missing"
            )
    shards = [index.parent / s for s in sorted(files)]
    source = SafetensorsFiles(index, shards, f"{len(shards)} safetensors shards + index")
    listed, found = set(weight_map), set(source.keys())
    if listed != found:
        gone = sorted(listed - found)[:3] or sorted(found - listed)[:3]
        raise CheckpointError(f"{index}: the shards do not hold what the index lists ({gone})")
    return source


def _open_shard(shard: Path) -> TensorSource:
    for index in sorted(shard.parent.glob("*.safetensors.index.json")):
        if shard.name in index.read_text():
            return _open_index(index)
    m = SHARD.match(shard.name)
    assert m is not None
    n = int(m["n"])
    shards = [
        shard.with_name(f"{m['stem']}-{k:05d}-of-{n:05d}.safetensors") for k in range(1, n + 1)
    ]
    gone = [s.name for s in shards if not s.is_file()]
    if gone:
        raise CheckpointError(
            f"{shard}: shard {gone[0]} of {n} is missing (and no index beside it)"
        )
    return SafetensorsFiles(shard, shards, f"{n} safetensors shards")


def _open_torch(path: Path) -> TensorSource:
    obj = read_torch_file(path)
    tensors = unwrap_state(obj, path)
    return TensorDict(path, tensors, f"torch {path.suffix} file")


def read_torch_file(path: Path) -> Any:
    """``torch.load(weights_only=True)``, memory-mapped when the file allows it."""
    try:
        try:
            return torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            return torch.load(str(path), map_location="cpu", weights_only=True)  # legacy format
    except CheckpointError:
        raise
    except Exception as e:
        raise CheckpointError(refusal(path, e)) from None


def refusal(path: Path, e: BaseException) -> str:
    """One complete sentence for a ``torch.load`` failure: a pickle with code, or a bad file."""
    text = str(e)
    wanted = re.search(r"(?:Unsupported global|GLOBAL)[:\s]+(?:GLOBAL\s+)?([\w.]+)", text)
    if "weights_only" in text or wanted:
        what = f" ({wanted.group(1)})" if wanted else ""
        return (
            f"{path} is a pickle that needs more than tensors to load{what}; it is refused "
            "because loading it could run code. Re-save its state dict (tensors only) or "
            "convert it to safetensors."
        )
    return f"{path} is not a readable checkpoint ({_brief(e)})"


def unwrap_state(obj: Any, path: Path) -> dict[str, Tensor]:
    """The flat tensor dict inside a (possibly nested) training checkpoint."""
    for key in NESTED:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            inner = obj[key]
            obj = inner
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{path} holds no state dict of tensors")
    bad = [k for k, v in obj.items() if not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(f"{path}: entry {bad[0]!r} is not a tensor (not a flat state dict)")
    return obj


def _brief(e: BaseException) -> str:
    """The first line of an exception's message, whole."""
    lines = str(e).strip().splitlines()
    first = lines[0].strip() if lines else ""
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


__all__ = [
    "DistributedCheckpoint",
    "SafetensorsFiles",
    "TensorDict",
    "TensorSource",
    "open_source",
    "read_torch_file",
    "refusal",
    "unwrap_state",
]
