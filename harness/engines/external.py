"""An OpenAI-compatible endpoint that is already running: no lifecycle, only a health check."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from functools import lru_cache
from pathlib import Path
from typing import Any, get_args
from urllib.parse import urlsplit, urlunsplit
from urllib.request import getproxies_environment, proxy_bypass

import httpx
import psutil

from harness.client.http1 import direct
from harness.engines.chat_tokens import llamacpp_chat_ids, vllm_chat_ids
from harness.engines.identity import VERSION_TIMEOUT_S, version_in, version_routes
from harness.engines.process import TOKENIZE_TIMEOUT_S, EngineError, abortable
from harness.scenario import ExternalEngine, Workload
from harness.scenario.engines import SERVED_BY


@lru_cache(maxsize=1)
def _own_addresses() -> frozenset[str]:
    """Addresses of this machine's network interfaces."""
    out = set()
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family in (socket.AF_INET, socket.AF_INET6):
                out.add(a.address.split("%", 1)[0])
    return frozenset(out)


def is_this_machine(host: str) -> bool | None:
    """Whether `host` names this machine (loopback, or an address of one of its interfaces);
    None when the name does not resolve."""
    try:
        infos = socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError):
        return None
    addrs = {str(info[4][0]).split("%", 1)[0] for info in infos}
    return any(ipaddress.ip_address(a).is_loopback or a in _own_addresses() for a in addrs)


def proxy_for(url: str) -> str | None:
    """The proxy the environment names for `url` (HTTP_PROXY, HTTPS_PROXY or ALL_PROXY, in either case,
    not bypassed by NO_PROXY), which the harness does not take: its timed streams connect directly, and
    its health checks, tokenizer calls and /metrics scrapes go the same way. None where none applies."""
    u = urlsplit(url)
    proxies = getproxies_environment()
    proxy = proxies.get(u.scheme) or proxies.get("all")
    if not proxy or proxy_bypass(u.hostname or ""):
        return None
    return proxy


def proxy_note(url: str) -> str | None:
    """Why a proxy in the environment is not used to reach `url`, where one would be; None where none
    applies."""
    proxy = proxy_for(url)
    if proxy is None:
        return None
    return (
        f"the environment names a proxy for {url} ({without_password(proxy)}), which the harness does not "
        "use: it connects directly, as its timed streams do (set NO_PROXY to silence this)"
    )


def without_password(url: str) -> str:
    """`url` without its user and password (`http://u:pw@proxy:3128` as `http://proxy:3128`, and the
    `u:pw@proxy:3128` that curl and httpx take without a scheme); as it is where it has none. A password
    may hold a '/': the host is what follows the last '@' where one comes before the path, or after a
    `user:password`."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    userinfo, at, host = rest.rpartition("@")
    if at and ("/" not in userinfo or ":" in userinfo):
        rest = host
    return f"{scheme}{sep}{rest}"


_VERSION_SEGMENT = re.compile(r"v\d+(?:(?:alpha|beta)\d*)?", re.IGNORECASE)


def split_base_url(base_url: str) -> tuple[str, str]:
    """`base_url` as (server root, API prefix). OpenAI's clients append the routes (`/completions`) to a
    base URL that ends with the API's path; which part of that path is the API's is found by its version
    segment: the last segment where the path ends with one (`http://host:8000/v1` for vLLM, llama.cpp
    and SGLang, Groq's `…/openai/v1`, a gateway's `…/team-a/vllm/v1`), else the first (Gemini's
    `…/v1beta/openai`, DeepInfra's `…/v1/openai`). A URL with none is the server's root, with the API at
    `/v1` under it (`http://host:8000`, a proxy's `http://host/vllm`). The root is where `/health`,
    `/metrics` and `/tokenize` are asked."""
    u = urlsplit(base_url.rstrip("/"))
    parts = u.path.split("/")
    versions = [i for i, part in enumerate(parts) if _VERSION_SEGMENT.fullmatch(part)]
    if not versions:
        return urlunsplit(u), "/v1"
    i = versions[-1] if versions[-1] == len(parts) - 1 else versions[0]
    return urlunsplit(u._replace(path="/".join(parts[:i]))), "/" + "/".join(parts[i:])


def owned_by(models: httpx.Response, model: str) -> str | None:
    """What an OpenAI-compatible /models answer says owns `model` (its entry's `owned_by`, else the first
    entry's): vLLM says `vllm`, SGLang `sglang`, llama-server `llamacpp`, OpenAI's own API `openai` or
    `system`. None where the answer is not a model list or names no owner."""
    if models.status_code != 200:
        return None
    try:
        entries = [e for e in models.json()["data"] if isinstance(e, dict)]
    except (ValueError, KeyError, TypeError):
        return None
    mine = [e for e in entries if e.get("id") == model] or entries[:1]
    owner = mine[0].get("owned_by") if mine else None
    return owner if isinstance(owner, str) and owner else None


def has_metrics(base_url: str, headers: dict[str, str]) -> bool:
    """Whether `base_url`/metrics answers with Prometheus text (vLLM, SGLang, llama-server --metrics)."""
    try:
        r = httpx.get(base_url + "/metrics", headers=headers, timeout=5, **direct())
    except httpx.HTTPError:
        return False
    kind = r.headers.get("content-type", "")
    return r.status_code == 200 and (kind.startswith("text/plain") or "openmetrics" in kind)


class ExternalServer:
    """`local`: whether the endpoint runs on this machine. Only then do this machine's GPUs and CPUs
    (NVML, RAPL, host load) belong to the engine being measured; for a remote endpoint the runner
    leaves that telemetry out and tables take the GPU from the scenario's `hardware.gpu`."""

    name = "external"

    def __init__(self, cfg: ExternalEngine, log_file: Path | None = None) -> None:
        self.cfg = cfg
        self.base_url, self.api_prefix = split_base_url(cfg.base_url)
        self.model_name = cfg.model.name if cfg.model is not None and hasattr(cfg.model, "name") else ""
        self.server_version: str | None = None
        self.version_from: str | None = None  # the route the version was read from
        self.owned_by: str | None = None  # what the API's /models says owns the model
        self.host = urlsplit(self.base_url).hostname or ""
        self.local = bool(is_this_machine(self.host))
        self._metrics = False
        self._tokenize_form: str | None = None  # "vllm" | "llamacpp" | "none", found on the first call
        self._http: httpx.Client | None = None

    def headers(self) -> dict[str, str]:
        if self.cfg.api_key_env:
            key = os.environ.get(self.cfg.api_key_env)
            if not key:
                raise EngineError(f"environment variable {self.cfg.api_key_env} (api_key_env) is not set")
            return {"Authorization": f"Bearer {key}"}
        return {}

    @property
    def models_url(self) -> str:
        return f"{self.base_url}{self.api_prefix}/models"

    @property
    def health_url(self) -> str:
        return self.base_url + self.cfg.health_path if self.cfg.health_path else self.models_url

    def start(self) -> str:
        url = self.health_url
        try:
            r = self._get(url)
        except httpx.HTTPError as e:
            proxy = f" ({why})" if (why := proxy_note(self.base_url)) else ""
            raise EngineError(
                f"external endpoint {url} unreachable: {type(e).__name__}: {e}{proxy}"
            ) from None
        if r.status_code in (401, 403):
            raise EngineError(self._refused(r))
        if r.status_code != 200:
            raise EngineError(self._answered(r, url == self.models_url))
        models = r if url == self.models_url else None
        if url != self.models_url:
            # a health check answers without a key (vLLM's and llama-server's /health do), the API's
            # model list asks for it: a wrong key is said now, not as every request's HTTP 401
            try:
                r = models = self._get(self.models_url)
            except httpx.HTTPError:
                if not self.model_name:
                    raise EngineError(
                        f"{self.models_url} did not name a model; set engine.model.name in the scenario"
                    ) from None
            else:
                if r.status_code in (401, 403):
                    raise EngineError(self._refused(r))
        if not self.model_name:
            if r.status_code == 404:
                raise EngineError(self._answered(r, True))
            try:
                self.model_name = r.json()["data"][0]["id"]
            except (ValueError, KeyError, IndexError, TypeError):
                raise EngineError(
                    f"{self.models_url} did not name a model; set engine.model.name in the scenario"
                ) from None
        self.owned_by = owned_by(models, self.model_name) if models is not None else None
        self._ask_version()
        headers = self.headers()
        self._metrics = abortable(lambda: has_metrics(self.base_url, headers), "reaching the endpoint")
        return self.base_url

    def _get(self, url: str, timeout_s: float = 10.0) -> httpx.Response:
        """GET `url` with the key, for at most `timeout_s`, and no longer than a stop (Ctrl-C) waits."""
        headers = self.headers()
        return abortable(
            lambda: httpx.get(url, headers=headers, timeout=timeout_s, **direct()), "reaching the endpoint"
        )

    def _ask_version(self) -> None:
        """The engine's version where the endpoint says it (`version_routes`), as the launched engines
        record theirs (`vllm 0.32.0`, `llama-server b4589-1a2b3c4`): best effort, each route for at most
        VERSION_TIMEOUT_S, and nothing where none answers."""
        for route, field, engine in version_routes(self.owned_by, self.cfg.served_by):
            try:
                v = version_in(self._get(self.base_url + route, VERSION_TIMEOUT_S), field)
            except httpx.HTTPError:
                continue
            if v is not None:
                self.server_version = f"{engine} {v}" if engine else v
                self.version_from = f"GET {route}"
                return

    def _answered(self, r: httpx.Response, model_list: bool) -> str:
        """An answer other than 200 to the health check or (`model_list`) the API's model list, with what
        to change on a 404: hosted APIs have no /health (the API's /models, which every OpenAI-compatible
        server has, does), and some have their API under a path of their own."""
        url, hint = str(r.request.url), ""
        if r.status_code == 404 and not model_list:
            hint = f" (engine.health_path: null asks {self.api_prefix}/models instead)"
        elif r.status_code == 404:
            hint = (
                f" (engine.base_url: the API is asked under {self.api_prefix}; where it has a path of its"
                " own, base_url names it, as in https://host/v1beta/openai)"
            )
        return f"external endpoint {url} answered HTTP {r.status_code}{hint}: {r.text[:200]}"

    def _refused(self, r: httpx.Response) -> str:
        key = (
            f"the key in ${self.cfg.api_key_env}"
            if self.cfg.api_key_env
            else "no API key (engine.api_key_env)"
        )
        return f"external endpoint {r.request.url} answered HTTP {r.status_code} to {key}: {r.text[:200]}"

    def stop(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def alive(self) -> bool:
        return True  # polled from the event loop while requests stream: no network call here

    def healthy(self, timeout_s: float = 5.0) -> bool:
        """Whether the endpoint's health check answers 200 now (asked after a point whose requests failed
        to connect or were cut)."""
        url = self.health_url
        try:
            return httpx.get(url, headers=self.headers(), timeout=timeout_s, **direct()).status_code == 200
        except (httpx.HTTPError, OSError):  # OSError: out of file descriptors, say
            return False

    def log_path(self) -> Path | None:
        return None

    def version(self) -> str | None:
        return self.server_version

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "base_url": self.base_url,
            "api_prefix": self.api_prefix,
            "model": {"name": self.model_name},
            "launcher": "external",
            "version": self.server_version,
            "version_from": self.version_from,
            "command": None,
            "host": self.host,
            "local": self.local,
            "owned_by": self.owned_by,
            **({"warnings": warnings} if (warnings := self._warnings()) else {}),
        }

    def _warnings(self) -> list[str]:
        """A proxy the harness does not take; an engine the scenario declares (`served_by`) that the
        endpoint's own /models names another (`owned_by` one of the engines `served_by` allows)."""
        out = [why] if (why := proxy_note(self.base_url)) else []
        declared, owner = self.cfg.served_by, self.owned_by
        if declared and owner != declared and owner in get_args(SERVED_BY):
            out.append(
                f"engine.served_by is {declared}, but {self.models_url} says owned_by {owner}: claims about "
                f"{declared} are set beside this run as declared, and say what the endpoint said"
            )
        return out

    def request_extras(self, workload: Workload) -> dict[str, Any]:
        """The scenario's `engine.extra_body`, as it is: an endpoint of unknown kind may refuse fields it
        does not know (OpenAI's own API does), so ignore_eos is sent only where the scenario names it."""
        return dict(self.cfg.extra_body)

    def usage_in_stream(self) -> bool:
        return True

    def tokenize(self, text: str) -> int | None:
        """Tokens in `text` by the endpoint's own tokenizer, without special tokens, where it has one:
        `/tokenize` as vLLM (and SGLang) serve it (`prompt` in, `count` out), else as llama.cpp serves
        it (`content` in, `tokens` out). Which one works is found on the first call; with neither,
        None (prompt lengths are then approximate, and the manifest says so)."""
        if self._tokenize_form == "none":
            return None
        http = self._tokenizer_http()
        forms = [self._tokenize_form] if self._tokenize_form else ["vllm", "llamacpp"]
        transient = False
        for form in forms:
            body: dict[str, Any] = (
                {"model": self.model_name, "prompt": text, "add_special_tokens": False}
                if form == "vllm"
                else {"content": text}
            )
            try:
                r = http.post(self.base_url + "/tokenize", json=body)
            except httpx.HTTPError:
                transient = True  # timeout, reset: try again next time
                continue
            if r.status_code == 429 or r.status_code >= 500:
                transient = True
                continue
            try:
                data = r.json() if r.status_code == 200 else {}
                n = int(data["count"]) if form == "vllm" else len(data["tokens"])
            except (ValueError, KeyError, TypeError):
                continue
            self._tokenize_form = form
            return n
        if self._tokenize_form is None and not transient:  # answered, but not as a tokenizer
            self._tokenize_form = "none"
        return None

    def tokenize_chat(self, text: str) -> int | None:
        """Tokens of `text` as the chat API sends it, where the endpoint's /tokenize is vLLM's (which takes
        the chat's messages: `chat_prompt_ids`); None elsewhere, where a chat prompt is counted as its
        text plus the template's tokens measured on a probe request, as on llama.cpp (an offset that misses
        where a text's end merges with the template's)."""
        if self._tokenize_form is None:
            self.tokenize(text)  # which /tokenize the endpoint has
        if self._tokenize_form != "vllm":
            return None
        ids = self.chat_prompt_ids(text)
        return None if ids is None else len(ids)

    def chat_prompt_ids(self, text: str) -> list[int] | None:
        """The token ids the endpoint prefills for `text` sent as one user message to the chat API, asked
        in the form of its /tokenize (`tokenize`): vLLM's with `messages`, llama.cpp's after its
        /apply-template; None with neither. With them the template's tail, which prompts sharing a prefix
        do not share, is measured (`harness.load.tokens.template_tail`)."""
        if self._tokenize_form is None:
            self.tokenize(text)
        body = self.cfg.extra_body  # its chat_template_kwargs render the template as the requests do
        if self._tokenize_form == "vllm":
            return vllm_chat_ids(self._tokenizer_http(), self.base_url, self.model_name, text, body)
        if self._tokenize_form == "llamacpp":
            return llamacpp_chat_ids(self._tokenizer_http(), self.base_url, text, body)
        return None

    def _tokenizer_http(self) -> httpx.Client:
        """One keep-alive connection, with the key, for tokenizer calls."""
        if self._http is None:
            self._http = httpx.Client(timeout=TOKENIZE_TIMEOUT_S, headers=self.headers(), **direct())
        return self._http

    def metrics_url(self) -> str | None:
        return self.base_url + "/metrics" if self._metrics else None
