"""llama.cpp engine: the native C++ server (via xllamacpp or a `llama-server` binary) or llama-cpp-python.

`n_gpu_layers` is the CPU-offload knob: 0 keeps every layer on the CPU, -1 puts all on the GPU,
anything between splits the model (the rest of the layers run on the CPU).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from harness import models
from harness.client.http1 import direct
from harness.engines.base import redact
from harness.engines.chat_tokens import llamacpp_chat_ids
from harness.engines.identity import build_digest
from harness.engines.process import (
    TOKENIZE_TIMEOUT_S,
    EngineError,
    ManagedProcess,
    answers_health,
    free_port,
    http_url,
    port_taken,
)
from harness.extras import installed_version, pip_install
from harness.fileio import user_path
from harness.offload import no_weights_on_gpu
from harness.scenario import LlamaCppEngine, Workload


def native_ngl(n_gpu_layers: int) -> str:
    """`--n-gpu-layers` for llama.cpp's own server: -1 (all) as 999, since recent builds read -1 as
    "auto" (fit to free memory) and older ones take no "all"; any count above the layers means all."""
    return "999" if n_gpu_layers < 0 else str(n_gpu_layers)


VERBOSITY_FLAGS = frozenset({"-lv", "--verbosity", "--log-verbosity", "-v", "--verbose", "--log-verbose"})
IGNORED_GPU_LAYERS = "no usable GPU found, --gpu-layers option will be ignored"
_OFFLOADED = re.compile(r"offloaded (\d+)/(\d+) layers to GPU")
_BUFFER = re.compile(r"(\S+) (?:model )?buffer size =\s*([\d.]+) MiB")


def on_gpu(buffer: str) -> bool:
    """Whether a llama.cpp model buffer (CUDA0, Vulkan1, MTL0, CPU_Mapped, CUDA_Host) is GPU memory:
    CPU buffers and pinned host buffers (`*_Host`) are not."""
    return not buffer.upper().startswith("CPU") and not buffer.endswith("_Host")


def load_placement(log_text: str) -> dict[str, Any]:
    """Where llama.cpp put the model, from its log: `gpu_layers_ignored` when it said it has no usable
    GPU; from the `load_tensors:` lines (info level in older builds, trace level in recent ones, which
    the harness starts at verbosity 4 for them, llama-server and xllamacpp alike) `model_buffers_mib` per
    buffer (CUDA0, CPU_Mapped, ...), their sums `gpu_weights_mib` / `host_weights_mib`, and
    `offloaded_layers` / `offloadable_layers` where the build prints them (a CPU build with RPC support
    does too, so the buffers are what tells). The last load in the text counts."""
    out: dict[str, Any] = {}
    if IGNORED_GPU_LAYERS in log_text:  # printed at start-up by builds without a usable GPU backend
        out["gpu_layers_ignored"] = True
    loads = log_text.split("loading model tensors")
    text = loads[-1] if len(loads) > 1 else log_text
    if found := _OFFLOADED.findall(text):
        done, total = found[-1]
        out["offloaded_layers"], out["offloadable_layers"] = int(done), int(total)
    buffers: dict[str, float] = {}
    for line in text.splitlines():
        if "load_tensors" in line and (m := _BUFFER.search(line)):
            # a model in split files has one mapped buffer per file, all named alike: summed
            buffers[m.group(1)] = round(buffers.get(m.group(1), 0.0) + float(m.group(2)), 2)
    if buffers:
        out["model_buffers_mib"] = buffers
        out["gpu_weights_mib"] = round(sum(v for k, v in buffers.items() if on_gpu(k)), 2)
        out["host_weights_mib"] = round(sum(v for k, v in buffers.items() if not on_gpu(k)), 2)
    return out


def placement_warning(n_gpu_layers: int, placement: dict[str, Any]) -> str | None:
    """A warning when llama.cpp put no weights on a GPU though `n_gpu_layers` asked it to (None when it
    did, or the log could not tell)."""
    if n_gpu_layers == 0 or not no_weights_on_gpu(placement):
        return None
    if placement.get("gpu_layers_ignored"):
        return (
            f"n_gpu_layers {n_gpu_layers} asked for the GPU, but llama.cpp found no usable GPU and ignored "
            "it: every layer ran on the CPU (a build without a GPU backend, or no GPU visible)"
        )
    held = ", ".join(f"{k} {v:.1f} MiB" for k, v in placement["model_buffers_mib"].items())
    return (
        f"n_gpu_layers {n_gpu_layers} asked for the GPU, but llama.cpp put no weights on one ({held}): "
        "every layer ran on the CPU (a build without a GPU backend, or no GPU visible)"
    )


class LlamaCppServer:
    """Launches and owns one llama.cpp server process."""

    name = "llamacpp"
    api_prefix = "/v1"

    def __init__(self, cfg: LlamaCppEngine, log_file: Path) -> None:
        self.cfg = cfg
        self._log = log_file
        self.model = models.resolve(cfg.model)
        self.model_name = self.model.name
        self.port = 0
        self.base_url = ""
        self.argv: list[str] = []
        self.proc: ManagedProcess | None = None
        self.props: dict[str, Any] = {}
        self.build: dict[str, Any] | None = None  # digests of a llama-server's files (build_digest)
        self.health_wait_s: float | None = None
        self._bos_tokens: int | None = None
        self._client: httpx.Client | None = None
        self.placement: dict[str, Any] = {}
        self.warnings: list[str] = []

    # -- command lines
    def build_argv(self, port: int) -> list[str]:
        c, path = self.cfg, str(self.model.path)
        if c.launcher in ("xllamacpp", "llama-server"):
            # the same llama.cpp server options, through xllamacpp's embedded server or the native binary
            head = [sys.executable, "-m", "harness.engines.xllamacpp_server"]
            if c.launcher == "llama-server":
                head = [self.server_binary()]
            argv = [
                *head,
                "--model",
                path,
                "--host",
                c.host,
                "--port",
                str(port),
                "--ctx-size",
                str(c.ctx_size),
                "--parallel",
                str(c.parallel),
                "--n-gpu-layers",
                native_ngl(c.n_gpu_layers),
            ]
            if c.launcher == "llama-server":
                argv += ["--metrics", "--cont-batching"]
                if not any(a.split("=", 1)[0] in VERBOSITY_FLAGS for a in c.extra_args):
                    # recent builds log where the weights went (load_tensors: buffer sizes) at level 4 only;
                    # it adds some 40 lines a request, none a token
                    argv += ["--verbosity", "4"]
            if c.threads:
                argv += ["--threads", str(c.threads)]
            if c.batch_size:
                argv += ["--batch-size", str(c.batch_size)]
            if c.flash_attn is not None:
                argv += ["--flash-attn", "on" if c.flash_attn else "off"]
            if c.launcher == "xllamacpp":  # its own server takes extra llama.cpp options as --set KEY=VALUE
                return argv + [x for item in c.extra_args for x in ("--set", item)]
            return argv + list(c.extra_args)
        # llama-cpp-python: one model, requests handled one at a time
        argv = [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            path,
            "--host",
            c.host,
            "--port",
            str(port),
            "--n_ctx",
            str(c.ctx_size),
            "--n_gpu_layers",
            str(c.n_gpu_layers),
            "--interrupt_requests",
            "False",
        ]
        if c.threads:  # for prompt batches too, as llama.cpp's own -t sets both
            argv += ["--n_threads", str(c.threads), "--n_threads_batch", str(c.threads)]
        if c.batch_size:
            argv += ["--n_batch", str(c.batch_size)]
        if c.flash_attn is not None:
            argv += ["--flash_attn", str(c.flash_attn)]
        return argv + list(c.extra_args)

    def server_binary(self) -> str:
        """The llama-server executable: `binary:` as given, else `llama-server` on PATH."""
        if self.cfg.binary:
            return str(user_path(self.cfg.binary))
        return shutil.which("llama-server") or "llama-server"

    @property
    def health_path(self) -> str:
        return "/v1/models" if self.cfg.launcher == "llama-cpp-python" else "/health"

    # -- lifecycle
    def start(self) -> str:
        if self.cfg.launcher == "llama-cpp-python" and installed_version("llama-cpp-python") is None:
            raise EngineError(f"launcher llama-cpp-python needs: {pip_install('llama-cpp-python')}")
        if self.cfg.launcher == "xllamacpp" and installed_version("xllamacpp") is None:
            raise EngineError(f"launcher xllamacpp needs: {pip_install('llamacpp')}")
        if self.cfg.launcher == "llama-server":
            exe = self.server_binary()
            if not (Path(exe).is_file() and os.access(exe, os.X_OK)):
                where = f"binary {self.cfg.binary!r}" if self.cfg.binary else "`llama-server` on PATH"
                raise EngineError(
                    f"launcher llama-server: no executable at {where}; build llama.cpp's server "
                    "(cmake --build build --target llama-server) and name it in `binary:`"
                )
        log_from = self._log.stat().st_size if self._log.exists() else 0
        for attempt in range(3):
            self.port = free_port(self.cfg.host)
            self.argv = self.build_argv(self.port)
            self.base_url = http_url(self.cfg.host, self.port)
            self.proc = ManagedProcess(self.argv, self._log)
            self.proc.start()
            try:
                self.health_wait_s = self.proc.wait_healthy(
                    self.base_url + self.health_path,
                    self.cfg.health_timeout_s,
                    what=f"llama.cpp ({self.cfg.launcher})",
                )
                break
            except EngineError as e:
                self.proc.stop()
                # another process took the port between our check and the server's bind: try a new one
                if attempt < 2 and port_taken(str(e)):
                    continue
                raise
        if self.cfg.launcher != "llama-cpp-python":
            try:
                self.props = httpx.get(self.base_url + "/props", timeout=10, **direct()).json()
            except (httpx.HTTPError, ValueError):
                self.props = {}
        if self.cfg.launcher == "llama-server":  # its version says `b0-unknown` for any build from a tree
            self.build = build_digest(self.argv[0], self.proc.pid if self.proc else None)
        try:
            with open(self._log, "rb") as f:
                f.seek(log_from)
                self.placement = load_placement(f.read().decode("utf-8", "replace"))
        except OSError:
            self.placement = {}
        if why := placement_warning(self.cfg.n_gpu_layers, self.placement):
            self.warnings.append(why)
        return self.base_url

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.proc is not None:
            self.proc.stop()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive()

    def healthy(self) -> bool | None:
        """Whether the server's health check answers now (asked after requests timed out, failed to
        connect or were cut: a process can be alive and hung). None for llama-cpp-python: its only
        route that could tell (/v1/models) waits for the model lock, so a busy server looks hung."""
        if self.cfg.launcher == "llama-cpp-python":
            return None
        return answers_health(self.base_url + self.health_path)

    def log_path(self) -> Path | None:
        return self._log

    def version(self) -> str | None:
        if self.cfg.launcher == "xllamacpp":
            v = installed_version("xllamacpp")
            return f"xllamacpp {v}" if v else None
        if self.cfg.launcher == "llama-cpp-python":
            v = installed_version("llama-cpp-python")
            return f"llama-cpp-python {v}" if v else None
        if self.props.get("build_info"):
            return f"llama-server {self.props['build_info']}"
        try:
            out = subprocess.run([self.argv[0], "--version"], capture_output=True, text=True, timeout=10)
            lines = (out.stdout + out.stderr).strip().splitlines()
            return lines[0] if lines else None
        except (OSError, subprocess.TimeoutExpired, IndexError):
            return None

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "launcher": self.cfg.launcher,
            "version": self.version(),
            "command": redact(self.argv),
            "n_gpu_layers": self.cfg.n_gpu_layers,
            "offload": "all layers on CPU"
            if self.cfg.n_gpu_layers == 0
            else (
                "all layers on GPU"
                if self.cfg.n_gpu_layers == -1
                else f"{self.cfg.n_gpu_layers} layers on GPU"
            ),
            # what the server says it has (/props), else what it was asked for
            "parallel_slots": self.props.get("total_slots")
            or (self.cfg.parallel if self.cfg.launcher != "llama-cpp-python" else 1),
            "precision": self.model.gguf_type,
            "model": self.model.manifest(),
            "health_wait_s": self.health_wait_s,
        }
        if self.cfg.launcher == "llama-cpp-python":
            d["notes"] = [
                "llama-cpp-python's server handles one request at a time: concurrency > 1 queues",
                "no ignore_eos and no usage in streams: output tokens counted by tokenizing the text",
            ]
        if self.props:
            d["server_props"] = {
                k: self.props[k] for k in ("build_info", "total_slots", "model_path") if k in self.props
            }
        if self.build is not None:
            d["build"] = self.build
        if self.placement:
            d["placement"] = dict(self.placement)
            if self.cfg.n_gpu_layers != 0 and no_weights_on_gpu(self.placement):
                d["offload"] = (
                    f"all layers on CPU (n_gpu_layers {self.cfg.n_gpu_layers} asked; none on a GPU)"
                )
        if self.warnings:
            d["warnings"] = list(self.warnings)
        return d

    def request_extras(self, workload: Workload) -> dict[str, Any]:
        if self.cfg.launcher == "llama-cpp-python":
            return {}
        # llama.cpp reuses a slot's cached prompt prefix: off, so every prompt is prefilled, unless the
        # workload shares a prefix between prompts, which is then there to be reused
        return {"ignore_eos": workload.ignore_eos, "cache_prompt": workload.shared_prefix_tokens > 0}

    def usage_in_stream(self) -> bool:
        return self.cfg.launcher != "llama-cpp-python"

    def tokenize(self, text: str) -> int | None:
        """Tokens in `text` by the served model's tokenizer, without BOS (as llama.cpp's /tokenize)."""
        try:
            if self.cfg.launcher == "llama-cpp-python":
                # /extras/tokenize/count adds BOS when the model does: subtract what "" counts
                if self._bos_tokens is None:
                    self._bos_tokens = self._lcp_count("")
                n = self._lcp_count(text)
                return None if n is None or self._bos_tokens is None else n - self._bos_tokens
            r = self._http().post(self.base_url + "/tokenize", json={"content": text})
            return len(r.json()["tokens"]) if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError, KeyError):
            return None

    def chat_prompt_ids(self, text: str) -> list[int] | None:
        """The token ids the server prefills for `text` sent as one user message to the chat API: rendered
        in the model's chat template (/apply-template) and tokenized with its BOS and special tokens;
        None where the server does not say (llama-cpp-python has neither endpoint)."""
        if self.cfg.launcher == "llama-cpp-python":
            return None
        return llamacpp_chat_ids(self._http(), self.base_url, text)

    def _http(self) -> httpx.Client:
        """One keep-alive connection for tokenizer calls (prompt fitting makes many of them)."""
        if self._client is None:
            self._client = httpx.Client(timeout=TOKENIZE_TIMEOUT_S, **direct())
        return self._client

    def _lcp_count(self, text: str) -> int | None:
        r = self._http().post(self.base_url + "/extras/tokenize/count", json={"input": text})
        return int(r.json()["count"]) if r.status_code == 200 else None

    def metrics_url(self) -> str | None:
        return None if self.cfg.launcher == "llama-cpp-python" else self.base_url + "/metrics"
