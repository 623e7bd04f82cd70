"""A shared prefix through the real llama.cpp server: the prompts as it prefills them (rendered in the chat
template, tokenized with BOS) have exactly `shared_prefix_tokens` in common, and each is as long as asked."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from harness.client.openai_stream import StreamClient
from harness.engines.llamacpp import LlamaCppServer
from harness.load.tokens import common_start, prepare_counter
from harness.load.workload import build_specs
from harness.scenario import LlamaCppEngine, Workload

from .conftest import SMALL_MODEL

pytestmark = pytest.mark.slow
pytest.importorskip("xllamacpp")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaCppServer]:
    log = tmp_path_factory.mktemp("prefix") / "engine.log"
    spec = {"type": "llamacpp", "model": SMALL_MODEL, "parallel": 2, "threads": 2}
    cfg = LlamaCppEngine.model_validate(spec)
    engine = LlamaCppServer(cfg, log)
    engine.start()
    yield engine
    engine.stop()


def _prefilled(url: str, api: str, text: str) -> list[int]:
    """The token ids the server prefills for a prompt: a chat's rendered in its template."""
    if api == "chat":
        body = {"messages": [{"role": "user", "content": text}]}
        text = httpx.post(url + "/apply-template", json=body, timeout=10).json()["prompt"]
    body = {"content": text, "add_special": True, "parse_special": True}
    return httpx.post(url + "/tokenize", json=body, timeout=10).json()["tokens"]


@pytest.mark.parametrize("api", ["completion", "chat"])
def test_prompts_share_exactly_the_prefix_asked(server: LlamaCppServer, api: str) -> None:
    client = StreamClient(server.base_url, server.model_name, api=api, extra_body={"ignore_eos": True})
    count, _, info = prepare_counter(None, server, client)
    assert count is not None and info["offset"] is not None
    for shared in (48, 96):  # the synthetic tokenizer spells the template out: a head of 18 tokens
        w = Workload(api=api, input_tokens=256, output_tokens=4, shared_prefix_tokens=shared)
        specs = build_specs(w, 3, 100, count, 0, salt=5)
        ids = [_prefilled(server.base_url, api, s.prompt) for s in specs]
        assert [len(i) for i in ids] == [s.input_tokens for s in specs] == [256] * 3
        assert [common_start(ids[0], other) for other in ids[1:]] == [shared, shared], (api, shared)
