"""`harness serve-fake`, `gpu-info`, `telemetry record|show` and `model make-gguf|prepare`."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any

import typer

from harness.cli.common import err, fail, finite, out, output_file
from harness.scenario import ScenarioError, load_scenario

model_app = typer.Typer(
    no_args_is_help=True,
    help="Make local model files: random-weight GGUFs, and every model a scenario names.",
)
telemetry_app = typer.Typer(no_args_is_help=True, help="Record and inspect NVML traces.")


def serve_fake(
    port: Annotated[int, typer.Option(min=0, max=65535, help="port (0: pick a free one)")] = 8000,
    host: Annotated[str, typer.Option(help="address to listen on (0.0.0.0: every interface)")] = "127.0.0.1",
    ttft_ms: Annotated[float, typer.Option(**finite(0.0), help="time to first token, ms")] = 50.0,
    itl_ms: Annotated[float, typer.Option(**finite(0.0), help="gap between tokens, ms")] = 10.0,
    workers: Annotated[int, typer.Option(min=1, help="server processes sharing the port")] = 1,
    spin_streams: Annotated[
        int, typer.Option(min=0, help="busy-wait for precise writes while at most this many streams run")
    ] = 16,
    fail_every: Annotated[int, typer.Option(min=0, help="fault: every n-th request fails (0: never)")] = 0,
    fail_status: Annotated[
        int, typer.Option(help="fault: HTTP status of failed requests (400, 404, 429, 500, 503)")
    ] = 500,
    drop_after: Annotated[
        int | None, typer.Option(min=0, help="fault: close streams after this many tokens")
    ] = None,
    bad_json_after: Annotated[
        int | None, typer.Option(min=0, help="fault: send a malformed event after this many tokens")
    ] = None,
    stall_after: Annotated[
        int | None, typer.Option(min=0, help="fault: stop sending after this many tokens")
    ] = None,
    error_after: Annotated[
        int | None, typer.Option(min=0, help="fault: end streams with a server error after this many tokens")
    ] = None,
    end_after: Annotated[
        int | None,
        typer.Option(min=0, help="fault: end responses cleanly after this many tokens, without [DONE]"),
    ] = None,
    health_waits: Annotated[
        bool,
        typer.Option(
            "--health-waits", help="fault: /health answers only while no stream runs (busy, not hung)"
        ),
    ] = False,
    error_as: Annotated[
        str, typer.Option(help="how that error is sent: data (vLLM, llama.cpp) or field (older llama.cpp)")
    ] = "data",
    no_usage: Annotated[
        bool, typer.Option("--no-usage", help="fault: ignore stream_options, send no usage chunk")
    ] = False,
    stop_after: Annotated[
        int | None,
        typer.Option(
            min=1, help="the answer ends (finish_reason stop) after this many tokens, unless ignore_eos"
        ),
    ] = None,
    api_key_env: Annotated[
        str | None, typer.Option(help="want `Authorization: Bearer $NAME` (the key read from this variable)")
    ] = None,
    api_prefix: Annotated[
        str, typer.Option(help="where the API routes are (a hosted API's own, e.g. /v1beta/openai)")
    ] = "/v1",
    tls_cert: Annotated[
        Path | None, typer.Option(help="serve https with this PEM certificate (chain); needs --tls-key")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="the PEM private key of --tls-cert")] = None,
) -> None:
    """Serve the OpenAI streaming protocol with scripted timing (for testing clients and the harness)."""
    from harness.engines.process import EngineError, free_port, http_url
    from harness.hostinfo import raise_open_files_limit
    from harness.testing.fake_processes import serve_processes
    from harness.testing.fake_script import FakeScript

    if workers > 1 and port == 0:
        raise fail("--port: must be set (not 0) when --workers > 1")
    if error_as not in ("data", "field"):
        raise fail(f"--error-as: invalid value {error_as!r} (allowed: data, field)")
    if fail_status not in (400, 404, 429, 500, 503):
        raise fail(f"--fail-status: invalid value {fail_status} (allowed: 400, 404, 429, 500, 503)")
    prefix = "/" + api_prefix.strip("/")
    if prefix == "/" or any(c.isspace() or c in "?#" for c in prefix):
        raise fail(f"--api-prefix: invalid value {api_prefix!r} (a path such as /v1 or /v1beta/openai)")
    script = FakeScript(
        ttft_s=ttft_ms / 1000,
        itl_s=itl_ms / 1000,
        spin_streams=spin_streams,
        fail_every=fail_every,
        fail_status=fail_status,
        drop_after_tokens=drop_after,
        bad_json_after_tokens=bad_json_after,
        stall_after_tokens=stall_after,
        error_after_tokens=error_after,
        end_after_tokens=end_after,
        health_waits_for_streams=health_waits,
        error_as=error_as,
        include_usage=not no_usage,
        stop_after_tokens=stop_after,
        api_key=os.environ.get(api_key_env) if api_key_env else None,
        api_prefix=prefix,
    )
    if api_key_env and not script.api_key:
        raise fail(f"--api-key-env: {api_key_env} is not set")
    tls = _tls_files(tls_cert, tls_key)
    raise_open_files_limit()  # a socket for each stream it serves
    if port == 0:  # pick it here, so that the address printed is the one served
        try:
            port = free_port(host)
        except EngineError:
            raise fail(f"serve-fake: cannot listen on {host}: no such address here") from None

    url = http_url(host, port, "https" if tls else "http")
    shown = url if prefix == "/v1" else url + prefix  # the base URL a scenario names

    def listening() -> None:
        err.print(
            f"fake OpenAI server on {shown} (TTFT {ttft_ms} ms, ITL {itl_ms} ms, "
            f"{workers} process(es)); Ctrl-C stops",
            markup=False,
        )

    try:
        serve_processes(script, host, port, workers, listening, tls)
    except KeyboardInterrupt:
        pass
    except OSError as e:  # port taken, address not on this host
        raise fail(f"serve-fake: cannot listen on {host}:{port}: {e.strerror or e}") from None


def _tls_files(cert: Path | None, key: Path | None) -> tuple[str, str] | None:
    """--tls-cert and --tls-key: both or neither, and a certificate and key the TLS library takes."""
    import ssl

    from harness.testing.fake_processes import tls_context

    if cert is None and key is None:
        return None
    if cert is None:
        raise fail("--tls-cert: needed with --tls-key")
    if key is None:
        raise fail("--tls-key: needed with --tls-cert")
    try:
        tls_context(str(cert), str(key))
    except (ssl.SSLError, OSError) as e:
        raise fail(f"--tls-cert {cert}, --tls-key {key}: not a PEM certificate and its key ({e})") from None
    return str(cert), str(key)


def gpu_info(
    record: Annotated[Path | None, typer.Option(help="also record an NVML trace (.jsonl.gz) here")] = None,
    seconds: Annotated[
        float, typer.Option("--duration-s", "--seconds", **finite(0.1), help="how long to record")
    ] = 10.0,
    interval_s: Annotated[float, typer.Option(**finite(0.01), help="sampling interval")] = 0.1,
) -> None:
    """Print the GPU (NVML) and CPU inventory as JSON; optionally record an NVML trace for replay."""
    import json

    output_file("--record", record)

    from harness.hostinfo import cpu_inventory
    from harness.telemetry.inventory import gpu_inventory

    out.print_json(json.dumps({"gpu": gpu_inventory(), "cpu": cpu_inventory()}), ensure_ascii=True)
    if record is not None:
        _record(record, seconds, interval_s, "--record")


@telemetry_app.command("record")
def telemetry_record(
    path: Annotated[Path, typer.Argument(help="output trace (.jsonl.gz)")],
    seconds: Annotated[
        float, typer.Option("--duration-s", "--seconds", **finite(0.1), help="how long to record")
    ] = 10.0,
    interval_s: Annotated[float, typer.Option(**finite(0.01), help="sampling interval")] = 0.1,
) -> None:
    """Record every GPU with the live NVML sampler into a trace that HARNESS_NVML_REPLAY can replay."""
    output_file("telemetry record: PATH", path)
    _show_trace(_record(path, seconds, interval_s, "telemetry record"))


def _record(path: Path, seconds: float, interval_s: float, what: str) -> Path:
    """Record an NVML trace to `path`; without NVML, exit 2 saying so."""
    from harness.telemetry import nvml
    from harness.telemetry.replay import record_trace

    try:
        p = record_trace(path, seconds, interval_s)
    except nvml.NvmlError as e:
        raise fail(f"{what}: no NVML trace recorded: {e}") from None
    err.print(f"wrote {p}", markup=False)
    return p


@telemetry_app.command("show")
def telemetry_show(
    trace: Annotated[Path, typer.Argument(help="an NVML trace (.jsonl.gz), or a run directory: its traces")],
) -> None:
    """Summarize a trace: its GPUs, and each stored window's energy, power, utilization, clock, memory.

    Energy is given from the counter and from integrated power, with how far they differ."""
    for t in _traces_in(trace):
        _show_trace(t)


# what a run directory's other telemetry files are, for a `telemetry show` given one of them
OTHER_TELEMETRY = (
    ("telemetry-cpu", "the host CPU's telemetry (a table)"),
    ("telemetry-engine-metrics", "the engine's /metrics scrapes"),
)


def _traces_in(path: Path) -> list[Path]:
    """The NVML traces `path` names: itself, or those of a run directory (an error where there are none,
    or where `path` is a run's other telemetry, which `harness report` sums up per point)."""
    per_point = "its figures are per point in the run's points table (`harness report RUN`)"
    if path.is_dir():
        # by engine variant and attempt as numbers: v2 before v10
        traces = sorted(
            path.glob("telemetry-nvml*.jsonl.gz"),
            key=lambda t: ([int(n) for n in re.findall(r"\d+", t.name)], t.name),
        )
        if not traces:
            others = sorted(p.name for p in path.glob("telemetry-*"))
            has = f" (it has {', '.join(others)}: {per_point})" if others else ""
            raise fail(f"{path}: no NVML trace (telemetry-nvml-v<N>.jsonl.gz) in this directory{has}")
        return traces
    for prefix, what in OTHER_TELEMETRY:
        if path.name.startswith(prefix):
            raise fail(f"{path}: {what}, not an NVML trace: {per_point}")
    return [path]


def _show_trace(trace: Path) -> None:
    from harness.telemetry.replay import trace_windows
    from harness.telemetry.trace import TraceError, read_trace

    try:
        head, series = read_trace(trace)  # the header is shown too
        windows = trace_windows(head, series)
    except TraceError as e:
        raise fail(str(e)) from None
    gpus = (head.get("inventory") or {}).get("gpus") or []
    names = ", ".join(str(g.get("name", "?")) for g in gpus if isinstance(g, dict)) or "?"
    span_s = max((s.t_ns[-1] - s.t_ns[0] for s in series if s.t_ns), default=0) / 1e9
    out.print(
        f"{trace}: {len(series)} GPU(s) ({names}), {sum(len(x.t_ns) for x in series)} samples "
        f"over {span_s:.1f} s",
        markup=False,
        highlight=False,
    )
    for name, c in windows.items():
        out.print(f"  {name}: {_window_line(c)}", markup=False, highlight=False)


def _window_line(c: dict[str, Any]) -> str:
    def num(key: str, fmt: str) -> str:
        v = c.get(key)
        if v is None:
            return "-"
        return format(v, fmt) if abs(v) < 1e15 else format(v, ".3e")  # no 300-digit numbers

    e, integ = c.get("gpu_energy_j"), c.get("gpu_power_integral_j")
    agree = f" ({(e - integ) / integ * 100:+.1f} %)" if e is not None and integ else ""
    return (
        f"energy {num('gpu_energy_j', '.1f')} J ({c.get('gpu_energy_source') or '-'}), integrated power "
        f"{num('gpu_power_integral_j', '.1f')} J{agree}; power mean {num('gpu_power_w_mean', '.1f')} W "
        f"(all GPUs), max {num('gpu_power_w_max', '.1f')} W (one GPU); util "
        f"{num('gpu_util_pct_mean', '.0f')} %; SM clock min {num('gpu_sm_clock_mhz_min', '.0f')} MHz; "
        f"memory max {num('gpu_mem_used_bytes_max', ',.0f')} B (one GPU)"
    )


def _is_gguf(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(4) == b"GGUF"
    except OSError:
        return False


def _option(field: str) -> str:
    """A make-gguf option as the user types it (`kv_heads` -> `--kv-heads`)."""
    return "--" + field.replace("_", "-")


def _synthetic_limits(fields: dict[str, Any]) -> None:
    """The limits a scenario's `source: synthetic` model has (past them a value is a typo that would fill
    memory or disk), and the shapes a GGUF can have (heads that divide the width), said as the options'."""
    from pydantic import ValidationError

    from harness.field_errors import value_problem
    from harness.scenario.sources import SyntheticModel, synthetic_shape_problems

    try:
        SyntheticModel.model_validate({"source": "synthetic", **fields})
    except ValidationError as e:
        # a field's own limit first; a shape that does not divide is said below, with the options' names
        if problems := [
            f"make-gguf: {_option(str(x['loc'][0]))}: {value_problem(x)}" for x in e.errors() if x["loc"]
        ]:
            raise fail(problems) from None
    shape = (fields["hidden"], fields["heads"], fields["kv_heads"], fields["ffn"], fields["dtype"])
    if problems := synthetic_shape_problems(*shape, name=_option):
        raise fail([f"make-gguf: {p}" for p in problems])


@model_app.command("make-gguf")
def make_gguf_cmd(
    path: Annotated[Path, typer.Argument(help="output .gguf file")],
    layers: Annotated[int, typer.Option(min=1, help="transformer blocks")] = 2,
    hidden: Annotated[int, typer.Option(min=16, help="hidden size (embedding width)")] = 64,
    heads: Annotated[int, typer.Option(min=1, help="attention heads")] = 4,
    kv_heads: Annotated[int, typer.Option(min=1, help="KV heads (fewer than --heads: grouped-query)")] = 4,
    ffn: Annotated[int, typer.Option(min=16, help="feed-forward (MLP) width")] = 128,
    vocab: Annotated[int, typer.Option(min=300, help="vocabulary size, tokens")] = 512,
    context: Annotated[
        int, typer.Option("--context-tokens", "--context", min=128, help="trained context length, tokens")
    ] = 4096,
    dtype: Annotated[str, typer.Option(help="weight type: f32 | f16 | q8_0")] = "f16",
    seed: Annotated[int, typer.Option(min=0, help="random seed of the weights")] = 0,
) -> None:
    """Write a random-weight llama GGUF (every generation runs to max_tokens).

    An existing GGUF at PATH is replaced; any other file is left alone."""
    from harness.models import ModelError, gguf_info, make_gguf

    if dtype not in ("f32", "f16", "q8_0"):
        raise fail(f"make-gguf: --dtype: invalid value {dtype!r} (allowed: f32, f16, q8_0)")
    shape = {"layers": layers, "hidden": hidden, "heads": heads, "kv_heads": kv_heads, "ffn": ffn}
    _synthetic_limits({**shape, "vocab": vocab, "context": context, "seed": seed, "dtype": dtype})
    output_file("make-gguf: PATH", path)
    if path.is_file() and not _is_gguf(path):
        raise fail(f"make-gguf: PATH: {path} exists and is not a GGUF file; not overwriting it")
    try:
        p = make_gguf(path, layers, hidden, heads, kv_heads, ffn, vocab, context, dtype, seed)
    except ModelError as e:
        raise fail(str(e)) from None
    except OSError as e:  # numpy's short write on a full disk carries no errno
        raise fail(f"make-gguf: PATH: cannot write {path}: {e.strerror or f'{e} (a full disk?)'}") from None
    out.print(f"wrote {p} ({p.stat().st_size} bytes, {gguf_info(p)['gguf_type']})", markup=False)


@model_app.command("prepare")
def model_prepare_cmd(
    files: Annotated[list[Path], typer.Argument(help="scenario YAML files")],
) -> None:
    """Write (or find in the cache) every model the scenarios' engines use, before any run starts."""
    import time

    from harness.models import ModelError, resolve
    from harness.scenario import engine_configs

    specs: dict[str, Any] = {}
    scenarios, problems = [], []
    for f in files:  # every file is checked before any model is written
        try:
            scenarios.append(load_scenario(f))
        except ScenarioError as e:
            problems += e.messages
    if problems:
        raise fail(problems)
    for s in scenarios:
        for eng in engine_configs(s):
            model = getattr(eng, "model", None)
            if model is not None:
                precision = str(getattr(eng, "precision", "auto"))
                specs.setdefault(model.model_dump_json() + precision, (eng.type, model, precision))
    for eng_type, model, precision in specs.values():
        t0 = time.perf_counter()
        try:
            if model.source == "catalog":
                from harness.hfmodel import catalog_model_dir

                path = catalog_model_dir(model.name, precision)
                what = f"config + tokenizer for {precision} (dummy weights)"
            else:
                r = resolve(model)
                if r.path is None:
                    continue
                size = r.manifest()["size_bytes"] or 0  # a split model's: all its files
                path, what = r.path, f"{r.gguf_type or r.source}, {size / 2**30:.2f} GiB, sha256 {r.sha256}"
        except ModelError as e:
            raise fail(f"{eng_type} model {model.model_dump(exclude_defaults=True)}: {e}") from None
        out.print(f"{path} ({what}) in {time.perf_counter() - t0:.1f} s", markup=False, highlight=False)
