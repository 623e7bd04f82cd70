"""Prometheus scraping: the recorded llama.cpp payload, prometheus_client's own exposition, failures."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from harness.engines.process import free_port
from harness.telemetry.base import TelemetrySet
from harness.telemetry.prometheus import PrometheusScraper, parse_metrics, window_columns

PAYLOAD = Path(__file__).resolve().parents[1] / "contract" / "payloads" / "llamacpp_metrics.txt"


def test_recorded_llamacpp_payload_flattens() -> None:
    snap = parse_metrics(PAYLOAD.read_text())
    assert snap["llamacpp_tokens_predicted_total"] == ("counter", 12.0)
    assert snap["llamacpp_prompt_tokens_total"] == ("counter", 31.0)
    assert snap["llamacpp_prompt_seconds_total"] == ("counter", 0.232217)
    assert snap["llamacpp_predicted_tokens_seconds"] == ("gauge", 28.9654)
    assert snap["llamacpp_requests_processing"] == ("gauge", 0.0)
    assert len(snap) == 15


def test_window_columns_deltas_and_gauges() -> None:
    before = parse_metrics(PAYLOAD.read_text())
    after = {**before, "llamacpp_tokens_predicted_total": ("counter", 44.0)}
    after["llamacpp_requests_processing"] = ("gauge", 0.0)
    during = [{"llamacpp_requests_processing": ("gauge", 3.0)}]
    cols = window_columns(before, after, during)
    assert cols["server_llamacpp_tokens_predicted_total_delta"] == 32.0
    assert cols["server_llamacpp_prompt_tokens_total_delta"] == 0.0
    assert cols["server_llamacpp_requests_processing"] == 0.0
    assert cols["server_llamacpp_requests_processing_max"] == 3.0
    assert cols["server_llamacpp_predicted_tokens_seconds"] == 28.9654
    # a counter that went down (engine restarted) has no delta
    reset = {**before, "llamacpp_tokens_predicted_total": ("counter", 1.0)}
    assert window_columns(before, reset, [])["server_llamacpp_tokens_predicted_total_delta"] is None


def test_running_mean_gauge_gets_its_window_mean() -> None:
    # llama.cpp's n_busy_slots_per_decode is the mean since start: 1.0 over the first 14 calls (the
    # recorded payload), 2.5 over 114 calls later -> the window's 100 calls averaged (2.5*114 - 14) / 100
    before = parse_metrics(PAYLOAD.read_text())
    assert before["llamacpp_n_decode_total"] == ("counter", 14.0)
    assert before["llamacpp_n_busy_slots_per_decode"] == ("gauge", 1.0)
    after = {
        **before,
        "llamacpp_n_decode_total": ("counter", 114.0),
        "llamacpp_n_busy_slots_per_decode": ("gauge", 2.5),
    }
    cols = window_columns(before, after, [])
    assert cols["server_llamacpp_n_busy_slots_per_decode"] == 2.5  # the engine's own, since start
    assert cols["server_llamacpp_n_busy_slots_per_decode_window"] == (2.5 * 114 - 14) / 100
    assert window_columns(before, before, [])["server_llamacpp_n_busy_slots_per_decode_window"] is None


def _registry() -> tuple[CollectorRegistry, Counter, Gauge, Histogram]:
    reg = CollectorRegistry()
    c = Counter("demo:requests", "finished requests", ["model_name", "finished_reason"], registry=reg)
    g = Gauge("demo:running", "running requests", ["model_name"], registry=reg)
    h = Histogram("demo:ttft_seconds", "ttft", ["model_name"], buckets=(0.1, 1.0), registry=reg)
    return reg, c, g, h


def test_labels_histograms_and_created_samples_from_prometheus_client() -> None:
    reg, c, g, h = _registry()
    c.labels("m", "stop").inc(3)
    c.labels("m", "length").inc(2)
    g.labels("m").set(4)
    h.labels("m").observe(0.05)
    h.labels("m").observe(0.5)
    snap = parse_metrics(generate_latest(reg).decode())
    assert snap["demo_requests_total__finished_reason_stop"] == ("counter", 3.0)
    assert snap["demo_requests_total__finished_reason_length"] == ("counter", 2.0)
    assert snap["demo_running"] == ("gauge", 4.0)
    assert snap["demo_ttft_seconds_count"] == ("counter", 2.0)
    assert snap["demo_ttft_seconds_sum"] == ("counter", 0.55)
    assert not any(k.endswith(("_bucket", "_created")) or "created" in k for k in snap)


def test_samples_that_differ_only_in_identity_labels_are_added_up() -> None:
    """vLLM labels every sample with `engine` (one per data-parallel rank) and `model_name`: two ranks'
    counters and gauges are the server's sum, not the last rank's; a fraction (KV-cache usage) is the
    fuller rank's, not a sum over 1."""
    reg = CollectorRegistry()
    tokens = Counter("vllm:generation_tokens", "tokens", ["model_name", "engine"], registry=reg)
    running = Gauge("vllm:num_requests_running", "running", ["model_name", "engine"], registry=reg)
    tokens.labels("m", "0").inc(5)
    tokens.labels("m", "1").inc(7)
    running.labels("m", "0").set(2)
    running.labels("m", "1").set(3)
    usage = Gauge("vllm:kv_cache_usage_perc", "KV-cache usage", ["model_name", "engine"], registry=reg)
    usage.labels("m", "0").set(0.75)
    usage.labels("m", "1").set(0.5)
    snap = parse_metrics(generate_latest(reg).decode())
    assert snap["vllm_generation_tokens_total"] == ("counter", 12.0)
    assert snap["vllm_num_requests_running"] == ("gauge", 5.0)
    assert snap["vllm_kv_cache_usage_perc"] == ("gauge", 0.75)


class _Metrics(BaseHTTPRequestHandler):
    registry: CollectorRegistry

    def do_GET(self) -> None:
        body = generate_latest(self.registry)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_scraper_against_a_real_http_endpoint(tmp_path: Path) -> None:
    reg, c, g, _ = _registry()
    handler = type("H", (_Metrics,), {"registry": reg})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        sc = PrometheusScraper(f"http://127.0.0.1:{srv.server_port}/metrics", interval_s=1.0)
        sc.start()
        c.labels("m", "stop").inc(1)
        sc.begin_window("p", 0)
        c.labels("m", "stop").inc(5)
        g.labels("m").set(2)
        cols = sc.end_window("p", 10**30)
        sc.stop()
        sc.write(tmp_path)
    finally:
        srv.shutdown()
    assert cols["server_demo_requests_total__finished_reason_stop_delta"] == 5.0
    assert cols["server_demo_running"] == 2.0
    assert sc.manifest()["failures"] == 0 and sc.manifest()["scrapes"] >= 3
    assert (tmp_path / "telemetry-engine-metrics.jsonl.gz").stat().st_size > 0


def test_unreachable_endpoint_is_recorded_and_run_goes_on(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    tel = TelemetrySet([PrometheusScraper(f"http://127.0.0.1:{port}/metrics", timeout_s=1.0)])
    tel.start()
    tel.begin_window("p", 0)
    assert tel.end_window("p", 1) == {}
    tel.stop(tmp_path)
    err = tel.manifest()["engine_metrics"]["error"]
    assert "no usable metrics" in err and str(port) in err
