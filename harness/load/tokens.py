"""Token counting for the workload: the engine's tokenizer or a local `tokenizer.json`.

A tokenizer counts the text only; the server's `usage.prompt_tokens` adds what it puts around
it (BOS, the chat template). `measure_offset` sends one probe request and takes the difference,
so `PromptCounter` returns what the server will report. Nothing is ever downloaded: a local
tokenizer is a file path (the `tokenizers` package reads Hugging Face `tokenizer.json` files).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.client.aio import cancel_on_abort
from harness.client.http1 import direct
from harness.client.openai_stream import RequestSpec, StreamClient
from harness.engines.process import abortable
from harness.records import RequestRecord

Count = Callable[[str], int | None]
PROBE_TEXT = "The quick brown fox jumps over the lazy dog while the band plays on"
# two one-message chats whose texts differ from their first character: their common start is the template's
HEAD_PROBES = ("Context: 1", "Zebra 2")


class TokenizerError(Exception):
    pass


def local_tokenizer(path: str) -> Count:
    """Count with a local `tokenizer.json` (no special tokens: the probe measures those)."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise TokenizerError("workload.tokenizer needs: pip install tokenizers") from None
    try:
        tok = Tokenizer.from_file(path)
    except Exception as e:  # the Rust side raises plain Exception subclasses
        raise TokenizerError(f"{path}: cannot load tokenizer: {e}") from None

    def count(text: str) -> int | None:
        return len(tok.encode(text, add_special_tokens=False).ids)

    return count


def text_counter(tokenizer_path: str | None, engine: Any) -> tuple[Count | None, str]:
    """(count, source): the local tokenizer if given, else the engine's, else none."""
    if tokenizer_path:
        return local_tokenizer(tokenizer_path), f"tokenizer.json {tokenizer_path}"
    if engine is not None and hasattr(engine, "tokenize"):
        probe = abortable(lambda: engine.tokenize("hello"), "the tokenizer probe")
        if probe is not None:
            return engine.tokenize, f"engine {getattr(engine, 'name', '?')} tokenize"
    return None, "none (prompt lengths approximate: about one token per word)"


async def measure_offset(client: StreamClient, count: Count) -> tuple[int | None, dict[str, Any]]:
    """Server prompt tokens minus tokenizer count of one probe prompt (1 output token asked). A server
    whose streams carry no usage (llama-cpp-python) is asked once more without streaming, whose answer
    has it: without, its BOS and chat template went uncounted and every prompt was that much longer
    than asked."""
    n_text = count(PROBE_TEXT)
    rec = RequestRecord(-1, "probe", 0, warmup=True)
    spec = RequestSpec(PROBE_TEXT, 1)
    await client.send(rec, spec)
    info: dict[str, Any] = {"probe_text_tokens": n_text, "probe_prompt_tokens": rec.prompt_tokens}
    prompt_tokens = rec.prompt_tokens
    if rec.ok and prompt_tokens is None and n_text is not None:
        prompt_tokens = await unstreamed_prompt_tokens(client, spec)
        if prompt_tokens is not None:
            info.update(probe_prompt_tokens=prompt_tokens, probe_usage="a request without streaming")
    if n_text is None or prompt_tokens is None or not rec.ok:
        info["probe_error"] = rec.error or "no usage.prompt_tokens in the response"
        return None, info
    return prompt_tokens - n_text, info


async def unstreamed_prompt_tokens(client: StreamClient, spec: RequestSpec) -> int | None:
    """`usage.prompt_tokens` of `spec` sent without streaming, or None where the answer has none."""
    import httpx

    body = {k: v for k, v in client.body(spec).items() if k not in ("stream", "stream_options")}
    try:
        async with httpx.AsyncClient(timeout=min(60.0, client.timeout_s), **direct()) as http:
            r = await http.post(client.base_url + client.path, json=body, headers=client.headers)
        n = r.json()["usage"]["prompt_tokens"] if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None


@dataclass
class PromptCounter:
    """Server-side prompt length of a text: tokenizer count + the measured offset. `tail`: of that count,
    the tokens that come after the text (a chat template's end), which prompts sharing a prefix do not
    share."""

    count_text: Count
    offset: int
    source: str
    tail: int = 0

    def __call__(self, text: str) -> int | None:
        n = self.count_text(text)
        return None if n is None else n + self.offset


def prepare_counter(
    tokenizer_path: str | None, engine: Any, client: StreamClient, run: Callable[[Any], Any] = asyncio.run
) -> tuple[PromptCounter | None, Count | None, dict[str, Any]]:
    """(prompt counter, plain text counter, manifest info) for one engine.

    The plain counter (no offset) is the one for streamed output text.
    """
    count, source = text_counter(tokenizer_path, engine)
    info: dict[str, Any] = {"source": source}
    if count is None:
        return None, None, info
    prompt_count = count  # a prompt as the server counts it, less the offset the probe measures
    chat = getattr(engine, "tokenize_chat", None) if client.api == "chat" and not tokenizer_path else None
    if chat is not None and abortable(lambda: chat(PROBE_TEXT), "the tokenizer probe") is not None:
        prompt_count, info["source"] = chat, f"{source} (chat template applied)"

    async def probe() -> tuple[int | None, dict[str, Any]]:
        from harness.engines.process import abort_reason

        async with client:
            # a Ctrl-C must not wait out request_timeout_s
            sent = asyncio.ensure_future(measure_offset(client, prompt_count))
            if why := await cancel_on_abort(sent, abort_reason, 0.2):
                await asyncio.gather(sent, return_exceptions=True)
                raise TokenizerError(f"the probe request was stopped: {why}")
            return sent.result()

    offset, details = run(probe())
    info.update(details)
    info["offset"] = offset
    if offset is None:
        info["note"] = "server did not report prompt_tokens: planned lengths count the text only"
    tail = template_tail(engine, count) if client.api == "chat" else None
    if tail is not None:
        info["template_tail_tokens"] = tail
    return PromptCounter(prompt_count, offset or 0, info["source"], tail or 0), count, info


def common_start(a: list[int], b: list[int]) -> int:
    """How many tokens `a` and `b` have in common from their start."""
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def template_tail(engine: Any, count: Count) -> int | None:
    """Tokens a chat template puts after a user message's text (`<|im_end|>` and the assistant's turn):
    the tokens of a one-message chat less its head (the start it has in common with a chat of another
    text) less its text's own. None where the engine does not give a chat's tokens."""
    ids = getattr(engine, "chat_prompt_ids", None)
    if ids is None:
        return None
    a = abortable(lambda: ids(HEAD_PROBES[0]), "the chat template probe")
    b = abortable(lambda: ids(HEAD_PROBES[1]), "the chat template probe")
    n_text = count(HEAD_PROBES[0])
    if a is None or b is None or n_text is None:
        return None
    return max(0, len(a) - common_start(a, b) - n_text)
