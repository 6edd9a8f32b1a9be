"""How the chunk runtime executes the student: one set of options, chosen once per pipeline.

Every option changes how the same computation runs, never what it computes; each is tested
against the plain path (``tests/streaming/test_engine_options.py``). The defaults are the
options that are *exact*: bitwise-equal outputs on every device, so they are on everywhere
(``sync``, ``serve``, ``demo``, the integrations, ``bench``, ``stream-smoke``):

- ``kv_after_decode``: a chunk is decoded and its frames handed out before its KV entries are
  written (the write is only needed by the next chunk's first call).
- ``kv_shortcut``: the KV write runs ``LipSyncDiT.write_kv``, which stops at the last block's
  keys/values instead of a whole forward whose output is discarded.
- ``paired_encode``: the mouth-masked crops and the reference-sequence crops go through one
  batch-2 stream encoder (the codec is batch-invariant: checked bitwise in the tests).

Off by default, because they are device-specific or change numerics:

- ``compile``: ``torch.compile`` of each block's cache-free halves (allclose, not bitwise).
- ``cuda_graphs``: steady-state chunk calls replayed as CUDA graphs (CUDA only).
- ``two_streams``: codec and DiT on two CUDA streams, so the codec of one chunk overlaps the
  DiT of another (CUDA only; exact by construction, unmeasured on a GPU so far).
- ``fp8``: e4m3 block Linears through ``torch._scaled_mm`` (CUDA sm89+ only; approximate).
- ``sdpa``: pin the SDPA backend (``auto`` lets PyTorch choose).
- ``stream_threads``: CPU only. With N > 1, the streams of a batched step are dealt into N
  parts stepped at once on N threads, and torch runs one intra-op thread (set for the whole
  process when the pipeline loads, :func:`single_threaded_torch`). On a few cores, small
  per-stream operations use a core each far better than two intra-op threads share one
  operation. A stream's frames are bitwise those of the plain path at ONE torch thread
  (``torch.set_num_threads(1)``), alone or batched (the model is batch-invariant); they differ
  in rounding from a run at several torch threads, so the library default stays 1. ``"auto"``
  (the default of ``serve`` and ``bench --sessions``): as many as the CPU threads torch was
  given (``--threads``, else torch's default), 1 on other devices.

:func:`resolve` turns the requested options into the ones the device can run, with one line
per option that cannot run as asked (what was asked, what runs instead, why). Those lines are
logged, printed by the CLI and recorded in the bench JSON: never a silent fallback.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import torch

SdpaBackend = Literal["auto", "flash", "cudnn", "efficient", "math"]
SDPA_BACKENDS: tuple[str, ...] = ("auto", "flash", "cudnn", "efficient", "math")
CPU_SDPA_BACKENDS = ("auto", "flash", "math")  # kernels the CPU build has
FP8_MIN_CAPABILITY = (8, 9)  # Ada / Hopper: FP8 tensor cores


@dataclass(frozen=True, kw_only=True)
class ExecutionOptions:
    """Execution options of the chunk runtime (see the module docstring)."""

    kv_after_decode: bool = True  # exact: decode and emit a chunk before its KV write
    kv_shortcut: bool = True  # exact: the KV write stops at the last block's keys/values
    paired_encode: bool = True  # exact: masked + reference-sequence crops in one encode
    compile: bool = False  # torch.compile of the blocks' cache-free halves
    cuda_graphs: bool = False  # CUDA: steady-state chunk calls replayed as graphs
    two_streams: bool = False  # CUDA: codec and DiT on separate CUDA streams
    fp8: bool = False  # CUDA sm89+: e4m3 block Linears (approximate)
    sdpa: SdpaBackend = "auto"  # scaled_dot_product_attention backend
    stream_threads: int | Literal["auto"] = 1  # CPU: a step's streams split across threads

    def __post_init__(self) -> None:
        if self.sdpa not in SDPA_BACKENDS:
            raise ValueError(f"unknown SDPA backend {self.sdpa!r}; choose from {SDPA_BACKENDS}")
        n = self.stream_threads
        if n != "auto" and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ValueError(f"stream_threads must be >= 1 or 'auto', got {n!r}")

    @classmethod
    def plain(cls) -> ExecutionOptions:
        """Every option off: the reference path the options are tested against."""
        return cls(kv_after_decode=False, kv_shortcut=False, paired_encode=False)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Resolved:
    """The options that run on a device, and one note per option that could not."""

    options: ExecutionOptions
    notes: tuple[str, ...] = ()


def resolve(requested: ExecutionOptions, device: torch.device | str) -> Resolved:
    """What ``requested`` becomes on ``device`` (see the module docstring)."""
    device = torch.device(device)
    changes, notes = {}, []

    def refuse(field: str, value, why: str) -> None:
        changes[field] = value
        notes.append(
            f"{_asked(field, getattr(requested, field))} runs as {_asked(field, value)}: {why}"
        )

    cuda = device.type == "cuda"
    if requested.cuda_graphs and not cuda:
        refuse("cuda_graphs", False, f"CUDA graphs need a CUDA device, this is {device.type}")
    if requested.two_streams and not cuda:
        refuse("two_streams", False, f"two CUDA streams need a CUDA device, this is {device.type}")
    if requested.fp8:
        if not cuda:
            refuse(
                "fp8", False, f"FP8 matmuls need a CUDA GPU of sm89 or newer, this is {device.type}"
            )
        elif (cap := torch.cuda.get_device_capability(device)) < FP8_MIN_CAPABILITY:
            refuse("fp8", False, f"FP8 matmuls need sm89 or newer, this GPU is sm{cap[0]}{cap[1]}")
    if requested.stream_threads == "auto":
        changes["stream_threads"] = cpu_threads() if device.type == "cpu" else 1
    elif requested.stream_threads > 1 and device.type != "cpu":
        refuse("stream_threads", 1, f"stream threads share out CPU cores, this is {device.type}")
    if not cuda and requested.sdpa not in CPU_SDPA_BACKENDS:
        refuse("sdpa", "auto", f"the {requested.sdpa} SDPA kernel exists only on CUDA")
    return Resolved(dataclasses.replace(requested, **changes), tuple(notes))


_threads_asked: list[int] = []  # torch's thread count when single_threaded_torch() set one


def cpu_threads() -> int:
    """The CPU threads torch was given (before :func:`single_threaded_torch` set one)."""
    return _threads_asked[0] if _threads_asked else torch.get_num_threads()


def single_threaded_torch() -> None:
    """One torch intra-op thread for the process (``stream_threads``: a core per part); the
    count it had is kept for later ``"auto"`` resolutions (:func:`cpu_threads`)."""
    if not _threads_asked:
        _threads_asked.append(torch.get_num_threads())
    torch.set_num_threads(1)


def restore_torch_threads() -> None:
    """Undo :func:`single_threaded_torch` (tests; a process done with stream threads)."""
    if _threads_asked:
        torch.set_num_threads(_threads_asked.pop())


def _asked(field: str, value) -> str:
    if isinstance(value, bool):
        return f"{field}={'on' if value else 'off'}"
    return f"{field}={value}"
