"""lipforcing.models: the lip-sync DiT, its attention, KV cache, audio modules and checkpoints."""

from lipforcing.models.dit import LipSyncDiT, build_model, count_params
from lipforcing.models.kv_cache import KVCache

__all__ = ["KVCache", "LipSyncDiT", "build_model", "count_params"]
