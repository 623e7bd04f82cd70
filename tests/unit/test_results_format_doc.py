"""docs/results-format.md names every column of points.parquet, every field of a requests.jsonl record (and of
token-counts.jsonl) and every top-level key of manifest.json: those of a small run against the synthetic
server (closed and open loop), those of every committed evidence run, and the window columns the telemetry
samplers and the engine comparison make from samples this machine may not have (NVML, RAPL, /metrics).

A name is documented when it appears backticked on the page. A `server_*` column may instead match a
documented pattern: a backticked `server_...__<label>...` name, where `<...>` stands for a label value."""

from __future__ import annotations

import dataclasses
import io
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import pytest
from rich.console import Console

from harness.records import RequestRecord
from harness.results import COUNT_FIELDS

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "results-format.md"
EVIDENCE = ROOT / "results" / "evidence"


def _backticked() -> set[str]:
    return set(re.findall(r"`([^`\n]+)`", DOC.read_text(encoding="utf-8")))


def _server_patterns(names: Iterable[str]) -> list[re.Pattern[str]]:
    """The backticked `server_<metric>__<label>_<value>...` names as patterns, `<...>` matching a label value.
    A name whose first `<` comes before any `__` (`server_<sample>_delta`) states the naming rule and would
    match every column: it is no pattern."""
    out = []
    for name in names:
        head = name.split("<", 1)[0]
        if name.startswith("server_") and "<" in name and "__" in head:
            parts = re.split(r"<[^>]*>", name)
            out.append(re.compile("[A-Za-z0-9_]+".join(map(re.escape, parts))))
    return out


def _undocumented(names: Iterable[str]) -> list[str]:
    doc = _backticked()
    patterns = _server_patterns(doc)

    def documented(name: str) -> bool:
        if name in doc:
            return True
        return name.startswith("server_") and any(p.fullmatch(name) for p in patterns)

    return sorted({n for n in names if not documented(n)})


def _evidence_runs() -> list[Path]:
    return sorted(p.parent for p in EVIDENCE.rglob("manifest.json"))


def _jsonl_keys(path: Path) -> set[str]:
    keys: set[str] = set()
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            keys |= set(json.loads(line))
    return keys


@pytest.fixture(scope="module")
def fresh_runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """A closed-loop run of two points and an open-loop run of one, against the in-process synthetic
    server (no engine, no model), with the default telemetry."""
    from harness.runner import run_scenario
    from harness.scenario import parse_scenario
    from harness.testing.fake_server import FakeScript, FakeServer

    root = tmp_path_factory.mktemp("runs")
    loads = {
        "closed": {"concurrency": [1, 2], "requests": 4},
        "open": {"mode": "open", "rates_rps": [50.0], "requests": 4},
    }
    workload = {"input_tokens": 8, "output_tokens": 4}
    srv = FakeServer(FakeScript(ttft_s=0.0, itl_s=0.0)).start_in_thread()
    runs = []
    try:
        engine = {"type": "external", "base_url": srv.base_url, "model": {"source": "served", "name": "fake"}}
        for name, load in loads.items():
            s = parse_scenario({"name": name, "engine": engine, "workload": workload, "load": load})
            quiet = Console(file=io.StringIO())
            runs.append(run_scenario(s, root, console=quiet, show_progress=False).run_dir)
    finally:
        srv.stop()
    return runs


def _window_columns() -> set[str]:
    """Columns that NVML, RAPL and an engine's /metrics add to a row, made from made-up samples."""
    from harness.server_view import SERVER_COUNTERS, SERVER_HISTOGRAMS, server_comparison
    from harness.telemetry.base import energy_columns
    from harness.telemetry.cpu import CpuSampler, RaplDomain
    from harness.telemetry.nvml import NvmlSampler
    from harness.telemetry.prometheus import HIGH_WATER_MARKS, RUNNING_MEANS, parse_metrics, window_columns
    from harness.telemetry.trace import FIELDS, GpuSeries, gpu_window_columns
    from harness.token_counts import energy_per_token

    s = 10**9
    gpu = GpuSeries(0)
    for t in (0, 2 * s):
        gpu.append(t, dict.fromkeys(FIELDS, 1))
    cols = set(gpu_window_columns([gpu], 0, s))

    nvml = NvmlSampler()
    nvml._open["p"] = 0
    nvml.engine_count = 16  # a multi-node engine: 16 GPUs, fewer of them on this machine
    nvml.skipped = {1: "GPU is lost"}  # an engine GPU NVML could not open
    nvml.order_unknown = True  # a host of several GPU models, CUDA's order not PCI_BUS_ID
    nvml.edge_sample = lambda: False  # type: ignore[method-assign]  # an NVML call that hung
    cols |= set(nvml.end_window("p", s))

    # a CPU sampler's series as `sample` fills them, with an engine process and a RAPL package
    cpu = CpuSampler(None)
    cpu._proc = psutil.Process()
    cpu.rapl = [RaplDomain("package-0", Path("/nonexistent"), None)]
    cpu.rapl_uj = [[0, 10**6]]
    cpu.t_ns = [0, s]
    cpu.cols = {k: [0.0, 1.0] for k in cpu.cols}
    cols |= set(cpu.window_columns(0, s))

    cols |= set(energy_columns({"gpu_energy_j": 1.0, "cpu_energy_j": 1.0}))
    cols |= set(energy_per_token({"ok": 1, "output_tokens": 1, "energy_j": 1.0}, 1.0))

    # /metrics: the running means and high-water marks the scraper treats apart
    # (a counter typed under its `_total` name, as llama.cpp writes them)
    def text(n: int) -> str:
        lines = []
        for stem, calls in RUNNING_MEANS.items():
            lines += [f"# TYPE {stem} gauge", f"{stem} 1.5", f"# TYPE {calls} counter", f"{calls} {n}"]
        for name in HIGH_WATER_MARKS:
            lines += [f"# TYPE {name} counter", f"{name} {n}"]
        return "\n".join(lines) + "\n"

    cols |= set(window_columns(parse_metrics(text(10)), parse_metrics(text(20)), []))

    # the engine's view set beside the client's, from every histogram and counter it compares
    row: dict[str, Any] = {"output_tokens": 1, "input_tokens": 1, "errors": 0}
    for key, (stem, *_) in SERVER_HISTOGRAMS.items():
        row |= {f"{key}_mean": 1.0, f"server_{stem}_sum_delta": 1.0, f"server_{stem}_count_delta": 1.0}
    for sums in SERVER_COUNTERS.values():
        row |= {f"server_{stem}_delta": 1.0 for stems in sums for stem in stems}
    cols |= set(server_comparison(row))
    return cols


def test_the_columns_of_a_run_against_the_synthetic_server_are_documented(fresh_runs: list[Path]) -> None:
    columns = {c for run in fresh_runs for c in pd.read_parquet(run / "points.parquet").columns}
    assert {"offered_req_s", "ttft_from_send_s_mean", "concurrency", "host_cpu_pct_mean"} <= columns
    assert _undocumented(columns) == []


def test_the_columns_of_the_evidence_runs_are_documented() -> None:
    tables = sorted(EVIDENCE.rglob("points.parquet"))
    assert len(tables) >= 6  # the committed runs were found
    columns = {c for t in tables for c in pd.read_parquet(t).columns}
    assert any(c.startswith("server_vllm_") for c in columns)
    assert any(c.startswith("server_llamacpp_") for c in columns)
    assert _undocumented(columns) == []


def test_the_window_columns_of_the_samplers_and_the_engine_comparison_are_documented() -> None:
    columns = _window_columns()
    assert {"gpu_energy_j", "gpu_window_skipped", "cpu_energy_j", "energy_j_per_output_token"} <= columns
    assert {"gpu_engine_count", "gpu_unread_count", "gpu_order_unknown"} <= columns
    assert {"server_ttft_s_rel_diff", "server_input_tokens_diff"} <= columns
    assert _undocumented(columns) == []


def test_every_request_record_field_is_documented(fresh_runs: list[Path]) -> None:
    fields = {f.name for f in dataclasses.fields(RequestRecord)}
    runs = [*fresh_runs, *_evidence_runs()]
    written = set().union(*(_jsonl_keys(run / "requests.jsonl") for run in runs))
    assert written <= fields  # the records hold the dataclass's fields, no others
    counts = {"request_id", *COUNT_FIELDS}
    assert set().union(*(_jsonl_keys(run / "token-counts.jsonl") for run in runs)) <= counts
    assert _undocumented(fields | counts) == []


def test_the_manifest_keys_are_documented(fresh_runs: list[Path]) -> None:
    keys = set()
    for run in [*fresh_runs, *_evidence_runs()]:
        keys |= set(json.loads((run / "manifest.json").read_text(encoding="utf-8")))
    assert {"scenario", "host", "engines", "schema_version"} <= keys
    assert _undocumented(keys) == []


def test_an_engine_metric_the_page_does_not_name_is_reported() -> None:
    """The patterns stand for label values only: a new metric, labelled or not, is not taken as documented."""
    made_up = [
        "server_vllm_new_metric_total_delta",
        "server_vllm_new_metric_total__reason_x_delta",
        "server_llamacpp_new_gauge_max",
    ]
    assert _undocumented(made_up) == sorted(made_up)
    assert _undocumented(["server_vllm_request_success_total__finished_reason_stop_delta"]) == []
