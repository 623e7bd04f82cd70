"""An OpenAI-compatible endpoint that is already running: no lifecycle, only a health check."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx

from harness.engines.process import EngineError
from harness.scenario import ExternalEngine


class ExternalServer:
    name = "external"

    def __init__(self, cfg: ExternalEngine, log_file: Path | None = None) -> None:
        self.cfg = cfg
        self.base_url = cfg.base_url.rstrip("/").removesuffix("/v1")
        self.model_name = cfg.model.name if cfg.model is not None and hasattr(cfg.model, "name") else ""
        self.server_version: str | None = None

    def headers(self) -> dict[str, str]:
        if self.cfg.api_key_env:
            key = os.environ.get(self.cfg.api_key_env)
            if not key:
                raise EngineError(f"environment variable {self.cfg.api_key_env} (api_key_env) is not set")
            return {"Authorization": f"Bearer {key}"}
        return {}

    def start(self) -> str:
        url = self.base_url + (self.cfg.health_path or "/v1/models")
        try:
            r = httpx.get(url, headers=self.headers(), timeout=10)
        except httpx.HTTPError as e:
            raise EngineError(f"external endpoint {url} unreachable: {type(e).__name__}: {e}") from None
        if r.status_code != 200:
            raise EngineError(f"external endpoint {url} answered HTTP {r.status_code}: {r.text[:200]}")
        if not self.model_name:
            try:
                m = httpx.get(self.base_url + "/v1/models", headers=self.headers(), timeout=10).json()
                self.model_name = m["data"][0]["id"]
            except (httpx.HTTPError, ValueError, KeyError, IndexError):
                raise EngineError(
                    f"{self.base_url}/v1/models did not name a model; set engine.model.name in the scenario"
                ) from None
        return self.base_url

    def stop(self) -> None:
        return None

    def alive(self) -> bool:
        return True

    def log_path(self) -> Path | None:
        return None

    def version(self) -> str | None:
        return self.server_version

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "base_url": self.base_url,
            "model": {"name": self.model_name},
            "launcher": "external",
            "version": None,
            "command": None,
        }

    def request_extras(self, ignore_eos: bool = True) -> dict[str, Any]:
        return {}

    def usage_in_stream(self) -> bool:
        return True

    def tokenize(self, text: str) -> int | None:
        return None

    def metrics_url(self) -> str | None:
        return None
