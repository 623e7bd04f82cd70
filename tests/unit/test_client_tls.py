"""Streams over https (an endpoint behind TLS, as hosted ones are): the client's TLS path, which trusts
the certificates the engines' health and metrics requests (httpx) trust."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from harness.client.openai_stream import RequestSpec, StreamClient
from harness.records import RequestRecord
from harness.testing.fake_server import FakeScript, FakeServer
from tests.conftest import HARNESS, run_harness


def _tls_server(ca: trustme.CA) -> FakeServer:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    return FakeServer(FakeScript(ttft_s=0.0, itl_s=0.001), tls=ctx).start_in_thread()


def _send_together(base_url: str, n: int) -> list[RequestRecord]:
    async def go() -> list[RequestRecord]:
        async with StreamClient(base_url, "fake") as c:
            sends = [c.send(RequestRecord(i, "p", 0), RequestSpec("hello world", 8)) for i in range(n)]
            return list(await asyncio.gather(*sends))

    return asyncio.run(go())


def _trusting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ca: trustme.CA | None) -> None:
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    if ca is None:
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        return
    pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    monkeypatch.setenv("SSL_CERT_FILE", str(pem))


def test_streams_over_https_are_timed_and_share_one_tls_context(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = trustme.CA()
    _trusting(monkeypatch, tmp_path, ca)
    made: list[ssl.SSLContext] = []
    real = httpx.create_ssl_context

    def counted(*a: Any, **kw: Any) -> ssl.SSLContext:
        made.append(real(*a, **kw))
        return made[-1]

    monkeypatch.setattr(httpx, "create_ssl_context", counted)
    srv = _tls_server(ca)
    try:
        recs = _send_together(srv.base_url, 4)
    finally:
        srv.stop()
    assert srv.base_url.startswith("https://127.0.0.1:")
    assert [(r.ok, r.output_tokens, len(r.chunk_ns)) for r in recs] == [(True, 8, 8)] * 4, recs[0].error
    assert all(r.sent_ns < r.chunk_ns[0] for r in recs)
    # four connections at once, one context: loading the CA bundle for each had cost milliseconds apiece
    assert len(srv.connected_ns) == 4 and len(made) == 1


def test_a_certificate_nobody_trusts_is_a_connect_error_that_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _trusting(monkeypatch, tmp_path, None)
    srv = _tls_server(trustme.CA())
    try:
        (rec,) = _send_together(srv.base_url, 1)
    finally:
        srv.stop()
    assert rec.error_kind == "connect" and "CERTIFICATE_VERIFY_FAILED" in (rec.error or ""), rec.error


@pytest.mark.slow
def test_serve_fake_serves_https_and_a_run_of_an_external_endpoint_measures_it(tmp_path: Path) -> None:
    """`serve-fake --tls-cert --tls-key` and a whole `harness run` of an https endpoint: its health
    check (httpx) and its streams (the harness's client) both trust $SSL_CERT_FILE."""
    from harness.engines.process import free_port

    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    cert, key, pem = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(pem))
    port = free_port()
    env: dict[str, str | None] = {"SSL_CERT_FILE": str(pem), "SSL_CERT_DIR": None}
    serve = ["serve-fake", "--port", str(port), "--ttft-ms", "5", "--itl-ms", "1"]
    # a key without its certificate, or files that are not PEM: said, nothing served
    bad = run_harness(*serve, "--tls-key", str(key), env=env, timeout=60)
    assert bad.returncode == 2 and bad.stderr.strip() == "--tls-cert: needed with --tls-key"
    bad = run_harness(*serve, "--tls-cert", str(tmp_path / "nothing.pem"), "--tls-key", str(key), env=env)
    assert bad.returncode == 2 and "not a PEM certificate and its key" in bad.stderr
    assert "Traceback" not in bad.stderr
    server = subprocess.Popen(
        [*HARNESS, *serve, "--tls-cert", str(cert), "--tls-key", str(key)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stderr is not None
        assert server.stderr.readline().startswith(f"fake OpenAI server on https://127.0.0.1:{port} ")
        scenario = tmp_path / "s.yaml"
        engine = (
            f"{{type: external, base_url: 'https://127.0.0.1:{port}', model: {{source: served, name: fake}}}}"
        )
        scenario.write_text(
            "name: tls\n"
            f"engine: {engine}\n"
            "workload: {input_tokens: 16, output_tokens: 8}\n"
            "load: {concurrency: [2], requests: 4}\n"
        )
        res = run_harness("run", str(scenario), "--results", str(tmp_path / "r"), "--no-progress", env=env)
        assert res.returncode == 0, res.stderr
        (run,) = (tmp_path / "r").iterdir()
        import pandas as pd

        (row,) = pd.read_csv(run / "points.csv").to_dict("records")
        assert (row["ok"], row["errors"]) == (4, 0) and row["output_tok_s"] > 0
    finally:
        server.terminate()
        server.wait(10)


def test_a_certificate_path_that_is_not_there_is_said_before_a_run(tmp_path: Path) -> None:
    """$SSL_CERT_FILE naming no file had failed a run, over http too, as "cannot write the run's files"
    (httpx's FileNotFoundError, caught as a disk error)."""
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        "name: t\n"
        "engine: {type: external, base_url: 'http://127.0.0.1:9', model: {source: served, name: m}}\n"
    )
    for var, where, said in (
        ("SSL_CERT_FILE", tmp_path / "none.pem", "not a readable file (a PEM bundle)"),
        ("SSL_CERT_DIR", tmp_path / "s.yaml", "not a readable directory"),
    ):
        env: dict[str, str | None] = {"SSL_CERT_FILE": None, "SSL_CERT_DIR": None, var: str(where)}
        res = run_harness("run", str(scenario), "--results", str(tmp_path / "r"), env=env, timeout=120)
        assert res.returncode == 2 and "Traceback" not in res.stderr
        assert f"{var}={where}: {said}; the engines' health checks and https endpoints read" in res.stderr
        assert not (tmp_path / "r").exists()
    # a file that reads but holds no certificate: every health check, http ones too, loads it
    empty = tmp_path / "empty.pem"
    empty.write_text("")
    env = {"SSL_CERT_FILE": str(empty), "SSL_CERT_DIR": None}
    res = run_harness("run", str(scenario), "--results", str(tmp_path / "r"), env=env, timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    said = " ".join(res.stderr.split())
    assert f"SSL_CERT_FILE={empty}: cannot load certificates from it (" in said, said
    assert not (tmp_path / "r").exists()
