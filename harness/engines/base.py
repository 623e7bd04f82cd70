"""The `Engine` protocol (the registry that maps scenario engine types to it is `harness.engines`), and
the redaction of secrets in what goes into manifests."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from harness.scenario import Workload


class Engine(Protocol):
    """An inference server the harness drives over HTTP.

    `start()` launches it (or connects to it) and returns the base URL, after it is healthy; the
    OpenAI routes are under `api_prefix` there (`/v1`). `stop()` must be safe to call at any time and
    more than once.
    """

    name: str
    model_name: str
    api_prefix: str

    def start(self) -> str: ...

    def stop(self) -> None: ...

    def alive(self) -> bool: ...

    def version(self) -> str | None: ...

    def log_path(self) -> Path | None: ...

    def describe(self) -> dict[str, Any]:
        """What goes into the manifest: launcher, command line, model file, precision, options."""
        ...

    def request_extras(self, workload: Workload) -> dict[str, Any]:
        """Extra JSON fields for every request of `workload` (e.g. ignore_eos, cache_prompt)."""
        ...

    def usage_in_stream(self) -> bool:
        """Whether the final stream chunk carries `usage` (else output tokens are counted by tokenizing)."""
        ...

    def tokenize(self, text: str) -> int | None:
        """Token count of `text` according to the served model, if the engine can tell."""
        ...

    def metrics_url(self) -> str | None: ...


SECRET_WORDS = frozenset(
    {
        "key", "keys", "apikey", "apikeys", "token", "secret", "secrets", "password", "passwords", "passwd",
        "passphrase", "auth", "authorization", "bearer", "credential", "credentials", "cookie", "pat",
    }
)  # fmt: skip


def looks_secret(name: str) -> bool:
    """A flag, variable or attribute name with a secret-looking word in it (`--api-key`, `HF_TOKEN`,
    `api_key`), as a whole word: `--max-num-batched-tokens`, `--tokenizer`, `TOKENIZERS_PARALLELISM`
    are not."""
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)  # camelCase: apiKeys -> api_Keys
    return any(part in SECRET_WORDS for part in re.split(r"[^a-z0-9]+", words.lower()))


# what a secret-looking value is written as in a manifest
REDACTED = "***"
# the scenario fields whose values `redact_scenario` redacts: a command line, and mappings by their keys
REDACTED_ARGS = "extra_args"
REDACTED_MAPS = ("env", "extra_body")
REDACTED_IN = (REDACTED_ARGS, *REDACTED_MAPS)


def redact_scenario(dump: Any) -> Any:
    """A scenario's JSON dump for the manifest with secrets out: `extra_args` lists through `redact`,
    and values of `env` and `extra_body` entries whose names look secret (HF_TOKEN, api_key) as ***."""
    if isinstance(dump, list):
        return [redact_scenario(x) for x in dump]
    if not isinstance(dump, dict):
        return dump
    out: dict[str, Any] = {}
    for k, v in dump.items():
        if k == REDACTED_ARGS and isinstance(v, list):
            out[k] = redact([str(a) for a in v])
        elif k in REDACTED_MAPS and isinstance(v, dict):
            out[k] = redact_keys(v)
        else:
            out[k] = redact_scenario(v)
    return out


def redact_keys(d: dict[str, Any]) -> dict[str, Any]:
    """`d` with the values of secret-looking keys as ***, at any depth; lists of ids (`stop_token_ids`) are
    not secrets."""

    def secret(name: str) -> bool:
        return looks_secret(name) and not re.search(r"(^|[_-])ids?$", name, re.I)

    return {n: REDACTED if secret(n) else redact_keys(x) if isinstance(x, dict) else x for n, x in d.items()}


def redact(argv: list[str]) -> list[str]:
    """Command line with values of secret-looking flags (`--api-key X`, `--hf-token=X`) and of
    secret-looking `attr=value` items (xllamacpp's `--set api_key=X`) replaced by ***."""
    out: list[str] = []
    hide_next = False
    for i, a in enumerate(argv):
        if hide_next and not a.startswith("-"):  # a switch (`--allow-credentials`) takes no value
            out.append(REDACTED)
            hide_next = False
            continue
        hide_next = False
        name, eq, _ = a.partition("=")
        setting = eq and i > 0 and argv[i - 1] == "--set"  # xllamacpp attr=value, not other key=value args
        if looks_secret(name) and (a.startswith("-") or setting):
            if eq:
                out.append(f"{name}={REDACTED}")
            else:
                out.append(a)
                hide_next = True
            continue
        out.append(a)
    return out
