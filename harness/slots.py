"""How many requests an engine configuration decodes at once, where it says: one source for the roofline
(its batch is capped there) and `validate` (a concurrency above it measures queueing)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def engine_slots(cfg: Mapping[str, Any]) -> tuple[str, int] | None:
    """(the field that sets it, the number of requests) for an engine configuration (a scenario's, or a
    manifest's dump of one): llama.cpp's `parallel` slots, llama-cpp-python's one (its server serves a
    request at a time; said by `launcher`), vLLM's `max_num_seqs` where set; None where not known."""
    if cfg.get("type") == "llamacpp":
        if cfg.get("launcher") == "llama-cpp-python":
            return "launcher", 1
        return ("parallel", int(cfg["parallel"])) if cfg.get("parallel") else None
    if cfg.get("type") == "vllm" and cfg.get("max_num_seqs"):
        return "max_num_seqs", int(cfg["max_num_seqs"])
    return None
