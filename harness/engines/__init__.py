"""Inference engines the harness launches (or connects to); `ENGINES` maps scenario types to them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.engines.base import Engine
from harness.engines.external import ExternalServer
from harness.engines.llamacpp import LlamaCppServer
from harness.engines.vllm import VllmServer

# typed so that mypy checks every engine class against the `Engine` protocol
ENGINES: dict[str, Callable[[Any, Path], Engine]] = {
    "llamacpp": LlamaCppServer,
    "vllm": VllmServer,
    "external": ExternalServer,
}


def make_engine(cfg: Any, log_file: Path) -> Engine:
    try:
        cls = ENGINES[cfg.type]
    except KeyError:
        raise ValueError(f"engine type {cfg.type!r} is not available (have: {', '.join(ENGINES)})") from None
    return cls(cfg, log_file)
