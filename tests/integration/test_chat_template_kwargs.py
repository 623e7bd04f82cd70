"""A chat request's `extra_body.chat_template_kwargs` through a real llama.cpp server measured as an external
endpoint: its template renders more with them (as Qwen3's `enable_thinking: false` adds an empty think
block after the user's turn), so the prompts are counted with them too, in /apply-template, and come out
as long as asked, sharing exactly `shared_prefix_tokens`."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from harness.client.openai_stream import StreamClient
from harness.engines.external import ExternalServer
from harness.engines.llamacpp import LlamaCppServer
from harness.load.tokens import common_start, prepare_counter
from harness.load.workload import build_specs
from harness.scenario import ExternalEngine, LlamaCppEngine, Workload

from .conftest import SMALL_MODEL, llama_server_binary

pytestmark = pytest.mark.slow

# ChatML, with an empty think block in the assistant's turn where the request's kwargs say `no_think`
TEMPLATE = """{%- for m in messages %}<|im_start|>{{ m.role }}
{{ m.content }}<|im_end|>
{% endfor %}{%- if add_generation_prompt %}<|im_start|>assistant
{%- if no_think is defined and no_think %}
<think>

</think>
{% endif %}
{%- endif %}"""
KWARGS = {"chat_template_kwargs": {"no_think": True}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaCppServer]:
    exe = llama_server_binary()
    if exe is None:
        pytest.skip("no llama-server binary (scripts/gpu_bench.sh build; set HARNESS_LLAMA_SERVER)")
    tmp = tmp_path_factory.mktemp("kwargs")
    (tmp / "chat.jinja").write_text(TEMPLATE)
    spec = {
        "type": "llamacpp",
        "launcher": "llama-server",
        "binary": exe,
        "model": SMALL_MODEL,
        "parallel": 2,
        "threads": 2,
        "extra_args": ["--jinja", "--chat-template-file", str(tmp / "chat.jinja")],
    }
    engine = LlamaCppServer(LlamaCppEngine.model_validate(spec), tmp / "engine.log")
    engine.start()
    yield engine
    engine.stop()


def _external(server: LlamaCppServer) -> ExternalServer:
    cfg = {
        "type": "external",
        "base_url": server.base_url + "/v1",
        "extra_body": {"ignore_eos": True, **KWARGS},
    }
    ext = ExternalServer(ExternalEngine.model_validate(cfg))
    ext.start()
    return ext


def _prompt_tokens(url: str, text: str, extra: dict) -> int:
    """What the server's chat API says it prefilled for `text` sent with the fields `extra`."""
    body = {"messages": [{"role": "user", "content": text}], "max_tokens": 1, **extra}
    return int(
        httpx.post(url + "/v1/chat/completions", json=body, timeout=30).json()["usage"]["prompt_tokens"]
    )


def _prefilled(url: str, text: str) -> list[int]:
    """The token ids the server prefills for `text` sent to its chat API with the kwargs."""
    body = {"messages": [{"role": "user", "content": text}], **KWARGS}
    prompt = httpx.post(url + "/apply-template", json=body, timeout=10).json()["prompt"]
    full = {"content": prompt, "add_special": True, "parse_special": True}
    return httpx.post(url + "/tokenize", json=full, timeout=10).json()["tokens"]


def test_chat_tokens_are_counted_with_the_requests_template_kwargs(server: LlamaCppServer) -> None:
    url, text = server.base_url, "hello there friend"
    with_kwargs, without = _prompt_tokens(url, text, KWARGS), _prompt_tokens(url, text, {})
    assert with_kwargs > without  # the think block the kwargs add, as the server itself counts it
    assert len(_external(server).chat_prompt_ids(text) or []) == with_kwargs


def test_prompts_sent_with_template_kwargs_share_exactly_the_prefix_asked(server: LlamaCppServer) -> None:
    ext = _external(server)
    w = Workload(api="chat", input_tokens=256, output_tokens=4, shared_prefix_tokens=64)
    client = StreamClient(ext.base_url, ext.model_name, api="chat", extra_body=ext.request_extras(w))
    count, _, info = prepare_counter(None, ext, client)
    assert count is not None and info["offset"] is not None
    specs = build_specs(w, 3, 100, count, 0, salt=5)
    ids = [_prefilled(server.base_url, s.prompt) for s in specs]
    assert [len(i) for i in ids] == [s.input_tokens for s in specs] == [256] * 3
    assert [common_start(ids[0], other) for other in ids[1:]] == [64, 64]
