"""A chat prompt's token ids as the server prefills them, asked of the server itself: `text` as one user
message, in the model's chat template with the generation prompt (the assistant's turn), as the chat API
renders a request. vLLM's /tokenize takes the messages; llama.cpp's renders them with /apply-template first.
Both take the chat request's `chat_template_kwargs` (Qwen3's `enable_thinking: false`), which change what
the template renders: a request that sends them is counted with them.

The ids give a template's tail (`harness.load.tokens.template_tail`); their number, a chat prompt's length.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx


def template_kwargs(extra_body: Mapping[str, Any]) -> dict[str, Any]:
    """What of a request's extra JSON fields the tokenizer routes render its template with, as they take it:
    `chat_template_kwargs` where it is a mapping (vLLM's TokenizeChatRequest in
    vllm/entrypoints/serve/tokenize/protocol.py has the field; llama-server's /apply-template parses its
    body as a chat request, oaicompat_chat_params_parse in tools/server/server-common.cpp)."""
    kwargs = extra_body.get("chat_template_kwargs")
    return {"chat_template_kwargs": dict(kwargs)} if isinstance(kwargs, Mapping) else {}


def _ids(tokens: Any) -> list[int]:
    """A /tokenize answer's `tokens` as ints (TypeError where they are not a list of numbers)."""
    if not isinstance(tokens, list):
        raise TypeError(f"tokens: {type(tokens).__name__}, not a list")
    return [int(t) for t in tokens]


def vllm_chat_ids(
    http: httpx.Client, root_url: str, model: str, text: str, extra_body: Mapping[str, Any] | None = None
) -> list[int] | None:
    """vLLM's /tokenize with `messages` (its TokenizeChatRequest, in vllm/entrypoints/serve/tokenize/
    protocol.py): the chat template rendered with `add_generation_prompt` and the `chat_template_kwargs`
    of the requests' `extra_body`, tokenized with no special tokens beyond the template's own
    (`add_special_tokens` false by default there, as in the chat API); the answer's `tokens` are the ids.
    None where the server answers otherwise (no /tokenize, one that takes no messages)."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": text}],
        "add_generation_prompt": True,
        **template_kwargs(extra_body or {}),
    }
    try:
        r = http.post(root_url + "/tokenize", json=body)
        return _ids(r.json()["tokens"]) if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None


def llamacpp_chat_ids(
    http: httpx.Client, root_url: str, text: str, extra_body: Mapping[str, Any] | None = None
) -> list[int] | None:
    """llama-server's: the message rendered in the model's chat template (/apply-template, with the
    `chat_template_kwargs` of the requests' `extra_body`) and tokenized with its BOS and special tokens
    (/tokenize); None where the server does not say."""
    try:
        body = {"messages": [{"role": "user", "content": text}], **template_kwargs(extra_body or {})}
        r = http.post(root_url + "/apply-template", json=body)
        if r.status_code != 200:
            return None
        full = {"content": r.json()["prompt"], "add_special": True, "parse_special": True}
        r = http.post(root_url + "/tokenize", json=full)
        return _ids(r.json()["tokens"]) if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None
