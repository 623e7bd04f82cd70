"""External endpoints: whether they run on this machine decides which telemetry and GPU belong to them."""

from __future__ import annotations

import socket

import psutil
import pytest

from harness.engines.external import ExternalServer, is_this_machine, split_base_url
from harness.rundevice import device_of
from harness.scenario import ExternalEngine, Scenario
from harness.telemetry import default_samplers


def _own_non_loopback() -> str | None:
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family == socket.AF_INET and not a.address.startswith("127."):
                return str(a.address)
    return None


def test_loopback_and_own_addresses_are_this_machine() -> None:
    assert is_this_machine("127.0.0.1") is True
    assert is_this_machine("localhost") is True
    own = _own_non_loopback()
    if own is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    assert is_this_machine(own) is True


def test_other_hosts_are_not_and_unresolvable_names_are_unknown() -> None:
    assert is_this_machine("192.0.2.7") is False  # TEST-NET-1: documentation only, never assigned
    assert is_this_machine("no-such-host.invalid") is None  # .invalid never resolves (RFC 2606)


def _server(url: str) -> ExternalServer:
    return ExternalServer(ExternalEngine(type="external", base_url=url))


def test_describe_says_where_the_endpoint_runs() -> None:
    d = _server("http://192.0.2.7:8000/v1").describe()
    assert (d["host"], d["local"]) == ("192.0.2.7", False)
    d = _server("http://localhost:8000").describe()
    assert (d["host"], d["local"]) == ("localhost", True)


def _scenario(url: str, gpu: str | None = None) -> Scenario:
    hw = {"gpu": gpu, "gpus": 2} if gpu else {}
    return Scenario.model_validate(
        {"name": "t", "engine": {"type": "external", "base_url": url}, "hardware": hw}
    )


def test_remote_endpoint_gets_no_gpu_or_cpu_sampling_here() -> None:
    tel = default_samplers(_scenario("http://192.0.2.7:8000"), _server("http://192.0.2.7:8000"))
    assert tel.samplers == []
    assert "'192.0.2.7' is not this machine" in tel.absent["nvml"]
    assert "RAPL" in tel.absent["cpu"]


def test_local_endpoint_keeps_host_sampling() -> None:
    tel = default_samplers(_scenario("http://127.0.0.1:9"), _server("http://127.0.0.1:9"))
    assert "cpu" in [x.name for x in tel.samplers]
    assert "cpu" not in tel.absent


def _manifest(gpu: str | None, local: bool, nvml_name: str | None) -> tuple[dict, dict, dict]:
    s = _scenario("http://h:1", gpu)
    gpus = [{"name": nvml_name, "catalog_key": "h100-sxm"}] if nvml_name else []
    manifest = {
        "scenario": s.model_dump(mode="json"),
        "hardware": {"gpu": {"available": bool(gpus), "gpus": gpus}, "cpu": {"model": "Some CPU"}},
        "engines": [{"variant": 0, "name": "external", "local": local}],
    }
    return manifest, manifest["scenario"]["engine"], manifest["engines"][0]


def test_device_of_remote_endpoint_is_the_declared_gpu_not_this_machines() -> None:
    m, cfg, eng = _manifest("a100-80gb-sxm", local=False, nvml_name="NVIDIA H100 80GB HBM3")
    assert device_of(m, cfg, eng) == ("a100-80gb-sxm", 2)
    m, cfg, eng = _manifest(None, local=False, nvml_name="NVIDIA H100 80GB HBM3")
    assert device_of(m, cfg, eng) == ("unknown", 1)


def test_device_of_local_endpoint_is_the_gpu_found_here() -> None:
    m, cfg, eng = _manifest("a100-80gb-sxm", local=True, nvml_name="NVIDIA H100 80GB HBM3")
    assert device_of(m, cfg, eng) == ("h100-sxm", 2)


def test_points_name_the_gpu_found_here_and_warn_when_the_scenario_says_otherwise() -> None:
    from harness.point import gpu_key, gpu_mismatch

    s = _scenario("http://h:1", "a100-80gb-sxm")
    m, _, _ = _manifest("a100-80gb-sxm", local=True, nvml_name="NVIDIA H100 80GB HBM3")
    assert gpu_key(s, {"local": True}, m) == "h100-sxm"
    msg = gpu_mismatch(s, {"local": True}, m)
    assert msg and "'a100-80gb-sxm'" in msg and "'h100-sxm'" in msg
    # a remote endpoint: this machine's GPU is not the one serving it
    assert gpu_key(s, {"local": False}, m) == "a100-80gb-sxm"
    assert gpu_mismatch(s, {"local": False}, m) is None
    # nothing found here (no NVML): the scenario's word stands, silently
    m, _, _ = _manifest("a100-80gb-sxm", local=True, nvml_name=None)
    assert gpu_key(s, {}, m) == "a100-80gb-sxm" and gpu_mismatch(s, {}, m) is None


def test_a_gpu_the_catalog_lacks_or_no_gpu_here_is_said_at_the_point() -> None:
    """An L4 run of an H100 scenario had been labelled, priced and checked against claims as an H100."""
    from harness.point import gpu_key, gpu_mismatch

    def llama(gpu: str, **engine: object) -> Scenario:
        eng = {"type": "llamacpp", "model": {"source": "synthetic"}, "n_gpu_layers": 99, **engine}
        return Scenario.model_validate({"name": "t", "engine": eng, "hardware": {"gpu": gpu}})

    l4, cfg, eng = _manifest("h100-sxm", local=True, nvml_name="NVIDIA L4")
    l4["hardware"]["gpu"]["gpus"][0]["catalog_key"] = None
    # an engine the harness launched ran on the L4, named by NVML
    assert gpu_key(llama("h100-sxm"), {}, l4) == "nvidia-l4"
    msg = gpu_mismatch(llama("h100-sxm"), {}, l4)
    assert msg and "this machine's GPU is 'nvidia-l4', which the hardware catalog lacks" in msg
    # a local endpoint may be a port tunnelled from another host: a workstation's card says nothing of it
    s = _scenario("http://h:1", "h100-sxm")
    assert gpu_key(s, {"local": True}, l4) == "h100-sxm" and device_of(l4, cfg, eng) == ("h100-sxm", 2)
    msg = gpu_mismatch(s, {"local": True}, l4)
    assert msg and "whose GPU is 'nvidia-l4'" in msg and "tunnelled" in msg
    none, cfg, eng = _manifest("h100-sxm", local=True, nvml_name=None)
    none["hardware"]["gpu"].update(no_gpu=True, reason="no driver")
    assert gpu_key(s, {"local": True}, none) == "h100-sxm" and device_of(none, cfg, eng) == ("h100-sxm", 2)
    msg = gpu_mismatch(s, {"local": True}, none)
    assert msg and "which has no NVIDIA GPU" in msg
    assert gpu_mismatch(s, {"local": False}, none) is None  # on another host: this machine says nothing
    # llama.cpp launched on a machine without an NVIDIA GPU ran on its CPU
    assert gpu_key(llama("h100-sxm"), {}, none) is None
    assert gpu_mismatch(llama("h100-sxm"), {}, none) == (
        "the scenario says hardware.gpu 'h100-sxm' but this machine has no NVIDIA GPU (no driver); points "
        "and tables name its CPU"
    )
    # unless the scenario names another vendor's GPU, which NVML cannot see (llama.cpp's ROCm build)
    assert gpu_key(llama("mi300x"), {}, none) == "mi300x"


def test_an_endpoint_can_say_which_catalog_model_and_precision_it_serves() -> None:
    """A run against one's own vLLM had precision `auto`, no roofline, and was left out of claims and
    recommend as `another model` than llama-3.1-70b: `catalog` and `precision` were unknown fields."""
    from harness.runinfo import model_key
    from harness.runroofline import shape_of
    from harness.scenario.checks import combination_errors

    served = {"source": "served", "name": "meta-llama/Llama-3.1-70B-Instruct", "catalog": "llama-3.1-70b"}
    eng = {"type": "external", "base_url": "http://h:1", "precision": "FP8", "model": served}
    s = Scenario.model_validate({"name": "t", "engine": eng})
    assert s.engine.precision == "fp8"  # type: ignore[union-attr]
    cfg = s.model_dump(mode="json")["engine"]
    assert model_key(cfg["model"], served["name"]) == "llama-3.1-70b"
    shape, _ = shape_of(cfg, {})
    assert shape is not None and (shape.layers, shape.kv_heads) == (80, 8)
    assert combination_errors(s, "f.yaml") == []
    unknown = Scenario.model_validate(
        {"name": "t", "engine": {**eng, "model": {**served, "catalog": "llama-70b"}}}
    )
    (msg,) = combination_errors(unknown, "f.yaml")
    assert msg.startswith("f.yaml: engine.model.catalog: 'llama-70b' is not in the model catalog (allowed: ")
    with pytest.raises(ValueError, match=r"precision\n.*invalid value 'fp4' \(allowed: auto, fp32"):
        Scenario.model_validate({"name": "t", "engine": {**eng, "precision": "fp4"}})


def test_a_point_whose_llama_cpp_put_nothing_on_a_gpu_names_no_gpu() -> None:
    """`n_gpu_layers: -1` with `hardware.gpu: mi300x` on a CPU build: points.csv said gpu mi300x while the
    tables (rundevice.ran_on_cpu, the load log's placement) named the CPU."""
    from harness.point import _on_cpu
    from harness.scenario import expand_points

    eng = {"type": "llamacpp", "model": {"source": "synthetic"}, "n_gpu_layers": -1}
    s = Scenario.model_validate({"name": "t", "engine": eng, "hardware": {"gpu": "mi300x"}})
    point = expand_points(s)[0]
    manifest = {"hardware": {"gpu": {"available": False, "no_gpu": True}}}
    nothing = {"placement": {"model_buffers_mib": {"CPU_Mapped": 16.0}, "gpu_weights_mib": 0.0}}
    assert _on_cpu(s, point, nothing, manifest) is True
    on_gpu = {"placement": {"model_buffers_mib": {"ROCm0": 50.0}, "gpu_weights_mib": 50.0}}
    assert _on_cpu(s, point, on_gpu, manifest) is False


def test_an_endpoint_without_the_health_route_is_told_how_to_ask_another() -> None:
    """A hosted API has no /health: its 404 had been said with nothing on what to change."""
    from harness.engines.process import EngineError
    from harness.testing.fake_server import FakeScript, FakeServer

    srv = FakeServer(FakeScript(ttft_s=0.0, itl_s=0.0)).start_in_thread()
    try:
        model = {"source": "served", "name": "fake"}
        eng = ExternalEngine(type="external", base_url=srv.base_url, model=model, health_path="/status")
        with pytest.raises(EngineError) as e:
            ExternalServer(eng).start()
        assert str(e.value).startswith(
            f"external endpoint {srv.base_url}/status answered HTTP 404 (engine.health_path: null asks "
            "/v1/models instead): "
        )
        # a /v1/models that answers 404 is not told to ask /v1/models, but where the API may be
        eng = ExternalEngine(
            type="external", base_url=srv.base_url + "/x", model=model, health_path="/v1/models"
        )
        with pytest.raises(EngineError) as e:
            ExternalServer(eng).start()
        assert str(e.value).startswith(
            f"external endpoint {srv.base_url}/x/v1/models answered HTTP 404 (engine.base_url: the API is"
            " asked under /v1; where it has a path of its own, base_url names it, as in"
            " https://host/v1beta/openai): "
        )
        assert "instead" not in str(e.value)
        # which request was refused is known, not read back from the URL the client sent (it lowercases
        # the host): a model list under another prefix is told to name it
        eng = ExternalEngine(
            type="external", base_url=srv.base_url.replace("127.0.0.1", "LocalHost") + "/x", health_path=None
        )
        with pytest.raises(EngineError) as e:
            ExternalServer(eng).start()
        assert "(engine.base_url: the API is asked under /v1;" in str(e.value), str(e.value)
        # health_path null: /v1/models, which it has
        ExternalServer(
            ExternalEngine(type="external", base_url=srv.base_url, model=model, health_path=None)
        ).start()
    finally:
        srv.stop()


def test_base_urls_split_where_a_version_segment_starts() -> None:
    """Base URLs as providers document them for OpenAI's clients: the API's routes go under the path
    from the first version segment on; a URL with none is a server root with /v1 under it."""
    for url, root, prefix in (
        ("http://h:8000", "http://h:8000", "/v1"),
        ("http://h:8000/", "http://h:8000", "/v1"),
        ("http://h:8000/v1", "http://h:8000", "/v1"),
        ("http://h:8000/v1/", "http://h:8000", "/v1"),
        ("http://proxy/vllm", "http://proxy/vllm", "/v1"),
        ("http://proxy/vllm/v1", "http://proxy/vllm", "/v1"),
        ("https://api.groq.com/openai/v1", "https://api.groq.com/openai", "/v1"),
        ("https://generativelanguage.googleapis.com/v1beta/openai/", "https://generativelanguage.googleapis.com",
         "/v1beta/openai"),
        ("https://api.deepinfra.com/v1/openai", "https://api.deepinfra.com", "/v1/openai"),
        ("http://[::1]:8000/V2", "http://[::1]:8000", "/V2"),
        ("http://h/video/v1", "http://h/video", "/v1"),  # "video" is no version: only v<digits>...
        ("http://gw/v2ray/v1", "http://gw/v2ray", "/v1"),  # nor is "v2ray"
        ("http://gw/v2ray", "http://gw/v2ray", "/v1"),
        ("http://gw/v1/team-a/vllm/v1", "http://gw/v1/team-a/vllm", "/v1"),  # ends with one: that one
        ("http://h/v1alpha2/openai", "http://h", "/v1alpha2/openai"),
        ("http://h/v1/x/v2/openai", "http://h", "/v1/x/v2/openai"),  # not ending with one: the first
    ):  # fmt: skip
        assert split_base_url(url) == (root, prefix), url
        s = _server(url)
        assert (s.base_url, s.api_prefix, s.models_url) == (root, prefix, f"{root}{prefix}/models")


def test_what_a_refusal_says_follows_which_request_and_status() -> None:
    """The hint names the API's own path, only a 404 gets one, and the body is said up to 200 characters."""
    import httpx

    srv = _server("https://generativelanguage.googleapis.com/v1beta/openai")

    def answer(status: int, url: str, models: bool) -> str:
        return srv._answered(
            httpx.Response(status, request=httpx.Request("GET", url), text="x" * 300), models
        )

    health = answer(404, "https://generativelanguage.googleapis.com/health", False)
    assert "(engine.health_path: null asks /v1beta/openai/models instead)" in health
    assert health.endswith(": " + "x" * 200)
    assert "(engine.base_url: the API is asked under /v1beta/openai;" in answer(404, srv.models_url, True)
    for models in (False, True):  # a server error is no question of paths
        said = answer(500, srv.models_url, models)
        assert said == f"external endpoint {srv.models_url} answered HTTP 500: " + "x" * 200


def test_proxies_in_the_environment_are_not_taken_and_a_remote_one_is_said(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HTTP_PROXY without the host in NO_PROXY sent the health checks, tokenizer calls and /metrics
    scrapes to the proxy (a launched engine was "not healthy" for its whole timeout) while the timed
    streams, which take no proxy, went direct; a SOCKS proxy stopped the run with a traceback."""
    from harness.engines.external import proxy_for
    from harness.engines.process import EngineError, answers_health
    from harness.testing.fake_server import FakeScript, FakeServer

    for var in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "http_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://user:secret@127.0.0.1:9")  # nothing listens on port 9
    monkeypatch.setenv("ALL_PROXY", "socks5://127.0.0.1:9")
    srv = FakeServer(FakeScript(ttft_s=0.0, itl_s=0.0)).start_in_thread()
    try:
        assert proxy_for(srv.base_url) == "http://user:secret@127.0.0.1:9"
        assert answers_health(srv.base_url + "/health", timeout_s=5.0)
        eng = ExternalEngine(type="external", base_url=srv.base_url, model={"source": "served", "name": "m"})
        ext = ExternalServer(eng)
        assert ext.start() == srv.base_url
        (warning,) = ext.describe()["warnings"]
        assert warning == (
            f"the environment names a proxy for {srv.base_url} (http://127.0.0.1:9), which the harness "
            "does not use: it connects directly, as its timed streams do (set NO_PROXY to silence this)"
        )
        ext.stop()
        # validate says so before a run; an endpoint that cannot be reached names the proxy too
        from harness.scenario import machine_warnings

        scen = Scenario(name="p", engine=eng)
        assert [w for w in machine_warnings(scen, "p.yaml") if "proxy" in w] == [
            f"p.yaml: engine.base_url: the environment names a proxy for {srv.base_url} "
            "(http://127.0.0.1:9), which the harness does not use: it connects directly, as its timed "
            "streams do (set NO_PROXY to silence this)"
        ]
        # `harness run` leaves them to the engine's start, which says them with the variant
        assert not [w for w in machine_warnings(scen, "p.yaml", proxies=False) if "proxy" in w]
        gone = ExternalEngine(type="external", base_url="http://127.0.0.1:9/v1", model=eng.model)
        with pytest.raises(
            EngineError, match=r"unreachable: ConnectError: .*\(the environment names a proxy"
        ):
            ExternalServer(gone).start()
        # no password however the URL is written (curl and httpx take one without a scheme)
        from harness.engines.external import without_password

        for written, shown in [
            ("http://u:pw@proxy:3128", "http://proxy:3128"),
            ("user:secret@proxy:3128", "proxy:3128"),
            ("http://u:p/ss@h:1/x", "http://h:1/x"),
            ("https://host/a@b", "https://host/a@b"),  # an '@' in a path is no password
        ]:
            assert without_password(written) == shown
        # a proxy variable the harness could not parse is no reason to stop
        monkeypatch.setenv("HTTP_PROXY", "http://proxy.corp:abc")
        assert "proxy.corp" in ExternalServer(eng).describe()["warnings"][0]
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        assert proxy_for(srv.base_url) is None and "warnings" not in ExternalServer(eng).describe()
    finally:
        srv.stop()


def test_a_stop_does_not_wait_for_an_endpoint_that_never_answers() -> None:
    """An endpoint that accepts connections and never answers held a Ctrl-C for the health request's
    10 s timeout."""
    import time

    from harness.engines.process import EngineError, abortable, set_abort_check

    listener = socket.create_server(("127.0.0.1", 0))  # accepts (the kernel's backlog), never answers
    port = listener.getsockname()[1]
    eng = ExternalEngine(
        type="external", base_url=f"http://127.0.0.1:{port}/v1", model={"source": "served", "name": "m"}
    )
    t0 = time.monotonic()
    set_abort_check(lambda: "interrupted (Ctrl-C)" if time.monotonic() - t0 > 0.3 else None)
    try:
        with pytest.raises(EngineError, match=r"^reaching the endpoint stopped: interrupted \(Ctrl-C\)$"):
            ExternalServer(eng).start()
        assert time.monotonic() - t0 < 5  # not the request's 10 s
        # without a stop the call's own result, or its own error, comes back
        set_abort_check(None)
        assert abortable(lambda: 42, "x") == 42
        with pytest.raises(ZeroDivisionError):
            abortable(lambda: 1 // 0, "x")
    finally:
        set_abort_check(None)
        listener.close()
