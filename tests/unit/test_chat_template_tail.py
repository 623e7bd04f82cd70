"""Chat prompts on vLLM and on external endpoints, against the synthetic server answering /tokenize as vLLM
does, with a ChatML template (`harness.testing.fake_tokenizer`: a word a token, two template tokens before a
one-message chat's text, three after it). The prompts as the server prefills them have the length asked,
and a shared prefix has exactly `shared_prefix_tokens` in common: the template's tail, which follows each
prompt's own text, is measured and the prefix fitted past it, as on llama.cpp."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.client.openai_stream import RequestSpec, StreamClient
from harness.engines.external import ExternalServer
from harness.engines.vllm import VllmServer
from harness.load.tokens import common_start, prepare_counter, template_tail
from harness.load.workload import build_specs
from harness.records import RequestRecord
from harness.scenario import ExternalEngine, Workload, parse_scenario
from harness.testing.fake_server import FakeScript, FakeServer
from harness.testing.fake_tokenizer import chat_ids


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeServer]:
    srv = FakeServer(FakeScript(ttft_s=0.0, itl_s=0.0, tokenize=True, chat_template=True)).start_in_thread()
    yield srv
    srv.stop()


def _vllm(fake: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> VllmServer:
    """A VllmServer (not started) whose server is the synthetic one."""
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    eng = {"type": "vllm", "model": {"source": "catalog", "name": "tiny-llama", "weights": "dummy"}}
    srv = VllmServer(parse_scenario({"name": "t", "engine": eng}).engine, tmp_path / "engine.log")
    srv.base_url, srv.model_name = fake.base_url, "fake"
    return srv


def _external(fake: FakeServer) -> ExternalServer:
    ext = ExternalServer(ExternalEngine(type="external", base_url=fake.base_url + "/v1"))
    ext.start()
    return ext


def _engine(kind: str, fake: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    return _vllm(fake, tmp_path, monkeypatch) if kind == "vllm" else _external(fake)


def _prefilled(text: str) -> list[int]:
    """The ids the synthetic server prefills for `text` sent to its chat API."""
    return chat_ids([{"role": "user", "content": text}], template=True)


def test_the_synthetic_servers_chat_usage_counts_its_template(fake: FakeServer) -> None:
    """`<|im_start|> user four words here now <|im_end|> <|im_start|> assistant`: 4 words and 5 template
    tokens, in a chat's usage and in /tokenize with its messages; a text alone is its 4 words."""
    msgs = [{"role": "user", "content": "four words here now"}]
    tok = httpx.post(fake.base_url + "/tokenize", json={"model": "fake", "messages": msgs}).json()
    assert tok["count"] == len(tok["tokens"]) == 9
    special = [tok["tokens"][i] for i in (0, 6, 7)]  # <|im_start|>, <|im_end|>, <|im_start|>
    assert special == [1, 2, 1]
    text = httpx.post(fake.base_url + "/tokenize", json={"prompt": "four words here now"}).json()
    assert text["tokens"] == tok["tokens"][2:6]

    async def usage() -> int | None:
        async with StreamClient(fake.base_url, "fake", api="chat") as c:
            rec = await c.send(RequestRecord(0, "p", 0), RequestSpec("four words here now", 1))
        return rec.prompt_tokens

    assert asyncio.run(usage()) == 9


@pytest.mark.parametrize("kind", ["vllm", "external"])
def test_the_template_tail_is_measured(
    kind: str, fake: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """7 ids for "Context: 1" in the chat, 2 in common with "Zebra 2"'s (`<|im_start|>`, `user`), 2 for
    the text: a tail of 7 - 2 - 2 = 3 (`<|im_end|>`, `<|im_start|>`, `assistant`)."""
    engine = _engine(kind, fake, tmp_path, monkeypatch)
    assert len(engine.chat_prompt_ids("Context: 1")) == 7
    assert engine.tokenize_chat("Context: 1") == 7
    assert template_tail(engine, engine.tokenize) == 3
    engine.stop()


@pytest.mark.parametrize("kind", ["vllm", "external"])
@pytest.mark.parametrize("shared", [0, 16, 40])
def test_chat_prompts_have_the_asked_length_and_share_exactly_the_prefix(
    kind: str, shared: int, fake: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the tail the prefix was fitted to `shared` tokens of the whole chat, the tail's 3 among
    them, and prompts had `shared` - 3 in common (13 of 16, 37 of 40). With none asked the prompts have the
    template's head (2) in common, and their own number after it."""
    engine = _engine(kind, fake, tmp_path, monkeypatch)
    client = StreamClient(fake.base_url, "fake", api="chat")
    count, _, info = prepare_counter(None, engine, client)
    w = Workload(api="chat", input_tokens=64, output_tokens=4, shared_prefix_tokens=shared)
    specs = build_specs(w, 3, 100, count, 0, salt=5)
    ids = [_prefilled(s.prompt) for s in specs]
    assert [len(i) for i in ids] == [s.input_tokens for s in specs] == [64] * 3
    assert [common_start(ids[0], other) for other in ids[1:]] == [max(shared, 2)] * 2
    # every chat prompt counted in the template: nothing left for a probe to measure
    assert count is not None and info["source"].endswith("(chat template applied)")
    assert (info["offset"], info["template_tail_tokens"], count.tail) == (0, 3, 3)
    engine.stop()


def test_an_endpoint_whose_tokenize_takes_no_messages_counts_the_text_and_no_tail() -> None:
    """A /tokenize in vLLM's form that takes a prompt only (SGLang's): a chat prompt is counted as its text
    plus the offset a probe measures (the template's 5 tokens), and no tail is claimed."""
    script = FakeScript(ttft_s=0.0, itl_s=0.0, tokenize=True, tokenize_messages=False, chat_template=True)
    srv = FakeServer(script).start_in_thread()
    try:
        ext = _external(srv)
        assert ext.chat_prompt_ids("Context: 1") is None and ext.tokenize_chat("Context: 1") is None
        count, _, info = prepare_counter(None, ext, StreamClient(srv.base_url, "fake", api="chat"))
        assert count is not None and info["source"] == "engine external tokenize"
        assert (info["offset"], count.tail) == (5, 0) and "template_tail_tokens" not in info
        ext.stop()
    finally:
        srv.stop()
