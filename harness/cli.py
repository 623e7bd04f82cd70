"""The `harness` command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from harness.scenario import ScenarioError, load_scenario

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Benchmark real LLM inference engines: throughput, latency, energy, cost.",
)
model_app = typer.Typer(no_args_is_help=True, help="Make or inspect local model files.")
app.add_typer(model_app, name="model")
from harness.cloud.cli import cloud_app  # noqa: E402

app.add_typer(cloud_app, name="cloud")

out = Console()
err = Console(stderr=True, soft_wrap=True)
if not out.is_terminal:  # pipes and CI logs: wide enough for the points table
    out = Console(width=200)

EXIT_BAD_INPUT = 2
EXIT_RUN_FAILED = 3


def _fail(messages: list[str] | str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    for m in [messages] if isinstance(messages, str) else messages:
        err.print(m, markup=False, highlight=False)
    return typer.Exit(code)


@app.command()
def validate(files: Annotated[list[Path], typer.Argument(help="scenario YAML files")]) -> None:
    """Check scenario files; print `file: field: problem (allowed: ...)` for each error, exit 2."""
    bad: list[str] = []
    for f in files:
        try:
            s = load_scenario(f)
            from harness.scenario import expand_points

            out.print(f"{f}: ok ({len(expand_points(s))} points)", highlight=False)
        except ScenarioError as e:
            bad.extend(e.messages)
    if bad:
        raise _fail(bad)


@app.command()
def run(
    scenario: Annotated[Path, typer.Argument(help="scenario YAML file")],
    results: Annotated[Path, typer.Option(help="directory holding run directories")] = Path("results"),
    no_progress: Annotated[bool, typer.Option("--no-progress", help="no progress bars")] = False,
    resume: Annotated[
        Path | None,
        typer.Option(help="continue this unfinished run directory (same scenario): skip finished points"),
    ] = None,
    find_max_goodput: Annotated[
        bool,
        typer.Option(
            "--find-max-goodput",
            help="open loop: bisect over rate (from the first of load.rates_rps) for the highest rate "
            "at which slo.attainment of the requests meet every SLO",
        ),
    ] = False,
) -> None:
    """Run a scenario: start the engine, sweep the load points, write results/<time>-<name>/."""
    from harness import report
    from harness.load.workload import DatasetError, load_dataset
    from harness.runner import ResumeError, RunFailed, run_scenario
    from harness.scenario import model_file_errors
    from harness.telemetry import default_samplers

    try:
        s = load_scenario(scenario)
    except ScenarioError as e:
        raise _fail(e.messages) from None
    missing = model_file_errors(s, str(scenario))
    if missing:
        raise _fail(missing)
    if find_max_goodput and s.load.mode != "open":
        raise _fail(f"{scenario}: load.mode: --find-max-goodput needs open (allowed: open)")
    if s.workload.dataset:
        try:
            load_dataset(s.workload.dataset)
        except DatasetError as e:
            raise _fail(f"{scenario}: workload.dataset: {e}") from None
    try:
        res = run_scenario(
            s,
            results,
            str(scenario),
            console=err,
            telemetry=default_samplers,
            show_progress=not no_progress,
            resume=resume,
            find_max_goodput=find_max_goodput,
        )
    except ResumeError as e:
        raise _fail(str(e)) from None
    except RunFailed as e:
        if (e.run_dir / "points.parquet").exists():
            report.report_run(e.run_dir, out)
        raise _fail(str(e), EXIT_RUN_FAILED) from None
    md = report.report_run(res.run_dir, out)
    err.print(f"results: {res.run_dir} (table: {md})")


@app.command("report")
def report_cmd(runs: Annotated[list[Path], typer.Argument(help="run directories")]) -> None:
    """Print a run's points table and write report.md into the run directory."""
    from harness import report
    from harness.results import RunNotFound

    for r in runs:
        try:
            md = report.report_run(r, out)
        except RunNotFound as e:
            raise _fail(str(e)) from None
        err.print(f"wrote {md}")


@app.command("serve-fake")
def serve_fake(
    port: Annotated[int, typer.Option(help="port (0: pick a free one)")] = 8000,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    ttft_ms: Annotated[float, typer.Option(help="time to first token, ms")] = 50.0,
    itl_ms: Annotated[float, typer.Option(help="gap between tokens, ms")] = 10.0,
    workers: Annotated[int, typer.Option(min=1, help="server processes sharing the port")] = 1,
    spin_streams: Annotated[
        int, typer.Option(min=0, help="busy-wait for precise writes while at most this many streams run")
    ] = 16,
    fail_every: Annotated[int, typer.Option(min=0, help="fault: every n-th request fails (0: never)")] = 0,
    fail_status: Annotated[
        int, typer.Option(help="fault: HTTP status of failed requests (500, 429, 503)")
    ] = 500,
    drop_after: Annotated[
        int | None, typer.Option(help="fault: close streams after this many tokens")
    ] = None,
    bad_json_after: Annotated[
        int | None, typer.Option(help="fault: send a malformed event after this many tokens")
    ] = None,
    stall_after: Annotated[
        int | None, typer.Option(help="fault: stop sending after this many tokens")
    ] = None,
) -> None:
    """Serve the OpenAI streaming protocol with scripted timing (for testing clients and the harness)."""
    from harness.testing.fake_server import FakeScript, serve_processes

    if workers > 1 and port == 0:
        raise _fail("--port: must be set (not 0) when --workers > 1")
    if fail_status not in (400, 404, 429, 500, 503):
        raise _fail(f"--fail-status: invalid value {fail_status} (allowed: 400, 404, 429, 500, 503)")
    script = FakeScript(
        ttft_s=ttft_ms / 1000,
        itl_s=itl_ms / 1000,
        spin_streams=spin_streams,
        fail_every=fail_every,
        fail_status=fail_status,
        drop_after_tokens=drop_after,
        bad_json_after_tokens=bad_json_after,
        stall_after_tokens=stall_after,
    )
    err.print(
        f"fake OpenAI server on http://{host}:{port} (TTFT {ttft_ms} ms, ITL {itl_ms} ms, "
        f"{workers} process(es)); Ctrl-C stops"
    )
    try:
        serve_processes(script, host, port, workers)
    except KeyboardInterrupt:
        pass


@app.command("gpu-info")
def gpu_info(
    record: Annotated[Path | None, typer.Option(help="also record an NVML trace (.jsonl.gz) here")] = None,
    seconds: Annotated[float, typer.Option(min=0.1, help="how long to record")] = 10.0,
    interval_s: Annotated[float, typer.Option(min=0.01, help="sampling interval")] = 0.1,
) -> None:
    """Print the GPU (NVML) and CPU inventory as JSON; optionally record an NVML trace for replay."""
    import json

    from harness.hostinfo import cpu_inventory
    from harness.telemetry import nvml
    from harness.telemetry.inventory import gpu_inventory
    from harness.telemetry.replay import record_trace

    out.print_json(json.dumps({"gpu": gpu_inventory(), "cpu": cpu_inventory()}))
    if record is not None:
        try:
            p = record_trace(record, seconds, interval_s)
        except nvml.NvmlError as e:
            raise _fail(f"--record: no NVML trace recorded: {e}") from None
        err.print(f"wrote {p}")


@model_app.command("make-gguf")
def make_gguf_cmd(
    path: Annotated[Path, typer.Argument(help="output .gguf file")],
    layers: Annotated[int, typer.Option(min=1)] = 2,
    hidden: Annotated[int, typer.Option(min=16)] = 64,
    heads: Annotated[int, typer.Option(min=1)] = 4,
    kv_heads: Annotated[int, typer.Option(min=1)] = 4,
    ffn: Annotated[int, typer.Option(min=16)] = 128,
    vocab: Annotated[int, typer.Option(min=300)] = 512,
    context: Annotated[int, typer.Option(min=128)] = 4096,
    dtype: Annotated[str, typer.Option(help="f32 | f16 | q8_0")] = "f16",
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Write a random-weight llama GGUF (every generation runs to max_tokens)."""
    from harness.models import ModelError, gguf_info, make_gguf

    if dtype not in ("f32", "f16", "q8_0"):
        raise _fail(f"--dtype: invalid value {dtype!r} (allowed: f32, f16, q8_0)")
    try:
        p = make_gguf(path, layers, hidden, heads, kv_heads, ffn, vocab, context, dtype, seed)
    except ModelError as e:
        raise _fail(str(e)) from None
    out.print(f"wrote {p} ({p.stat().st_size} bytes, {gguf_info(p)['gguf_type']})")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
