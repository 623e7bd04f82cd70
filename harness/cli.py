"""The `harness` command line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from harness.scenario import ScenarioError, load_scenario

if TYPE_CHECKING:
    from harness.catalog.prices import PriceQuote

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Benchmark real LLM inference engines: throughput, latency, energy, cost.",
)
model_app = typer.Typer(
    no_args_is_help=True,
    help="Make local model files: random-weight GGUFs, and every model a scenario names.",
)
app.add_typer(model_app, name="model")
telemetry_app = typer.Typer(no_args_is_help=True, help="Record and inspect NVML traces.")
app.add_typer(telemetry_app, name="telemetry")
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
            from harness.scenario import combination_warnings, expand_points, input_file_errors

            missing = input_file_errors(s, str(f))
            if missing:
                raise ScenarioError(missing)
            out.print(f"{f}: ok ({len(expand_points(s))} points)", highlight=False)
            for w in combination_warnings(s, str(f)):
                err.print(f"[yellow]warning[/] {w}", highlight=False)
        except ScenarioError as e:
            bad.extend(e.messages)
    if bad:
        raise _fail(bad)


def _unwritable(results: Path) -> str | None:
    """Why run directories cannot be made under `results` (None: they can; it is created if missing)."""
    if results.exists() and not results.is_dir():
        return "exists and is not a directory"
    try:
        results.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return f"cannot create it: {e.strerror or e}"
    if not os.access(results, os.W_OK | os.X_OK):
        return "not writable"
    return None


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
    from harness.results import iter_records, read_points
    from harness.runner import InterruptedAgain, ResumeError, RunFailed, run_scenario
    from harness.scenario import combination_warnings, input_file_errors

    try:
        s = load_scenario(scenario)
    except ScenarioError as e:
        raise _fail(e.messages) from None
    for w in combination_warnings(s, str(scenario)):
        err.print(f"[yellow]warning[/] {w}", highlight=False)
    missing = input_file_errors(s, str(scenario))
    if missing:
        raise _fail(missing)
    if resume is None and (why := _unwritable(results)):
        raise _fail(f"--results {results}: {why}")
    if find_max_goodput and s.load.mode != "open":
        raise _fail(f"{scenario}: load.mode: --find-max-goodput needs open (allowed: open)")
    try:
        res = run_scenario(
            s,
            results,
            str(scenario),
            console=err,
            show_progress=not no_progress,
            resume=resume,
            find_max_goodput=find_max_goodput,
        )
    except ResumeError as e:
        raise _fail(str(e)) from None
    except KeyboardInterrupt as e:
        where = e.run_dir if isinstance(e, InterruptedAgain) else "RUN_DIR"
        raise _fail(
            "interrupted again: stopped at once; the run directory is marked interrupted "
            f"(continue with: harness run {scenario} --resume {where})",
            130,
        ) from None
    except OSError as e:  # the results disk: full, gone read-only, removed
        raise _fail(
            f"cannot write the run's files: {e.strerror or e}{f' ({e.filename})' if e.filename else ''}; "
            "what was written so far is kept (harness run --resume continues a run whose manifest was saved)",
            EXIT_RUN_FAILED,
        ) from None
    except RunFailed as e:
        if (e.run_dir / "points.parquet").exists():
            report.report_run(e.run_dir, out)
        raise _fail(str(e), EXIT_RUN_FAILED) from None
    md = report.report_run(res.run_dir, out)
    err.print(f"results: {res.run_dir} (table: {md})")
    if report.nothing_measured(read_points(res.run_dir)):
        measured = [r for r in iter_records(res.run_dir) if not r.warmup]
        latest = max((r.attempt for r in measured), default=0)  # a resume's, not an earlier attempt's
        first = next((r.error for r in measured if r.attempt == latest and r.error), None)
        raise _fail(
            "every measured request failed: the run measures nothing"
            + (f" (first error: {first[:300]})" if first else "")
            + f"; see {res.run_dir / 'requests.jsonl'} and the engine log",
            EXIT_RUN_FAILED,
        )


# ---------------------------------------------------------------- report, compare, cost, roofline, claims
PriceOpt = Annotated[
    list[str] | None, typer.Option("--price", help="DEVICE=USD_PER_HOUR, e.g. h100-sxm=2.99 (repeatable)")
]
PricesFileOpt = Annotated[Path | None, typer.Option("--prices", help="price YAML file (prices.yaml shape)")]
ProviderOpt = Annotated[
    str | None, typer.Option("--provider", help="use this provider's prices.yaml entries")
]
BandwidthOpt = Annotated[
    list[str] | None,
    typer.Option("--bandwidth", help="DEVICE=GB/s memory bandwidth to use for the roofline, e.g. cpu=20"),
]


def _prices(price: list[str] | None, prices_file: Path | None, provider: str | None) -> dict[str, PriceQuote]:
    from harness.catalog import CatalogError
    from harness.catalog.prices import parse_price_overrides, resolve_prices

    try:
        return dict(resolve_prices(parse_price_overrides(price or []), prices_file, provider))
    except CatalogError as e:
        raise _fail(str(e)) from None


def _bandwidths(items: list[str] | None) -> dict[str, float]:
    from harness.runinfo import parse_bandwidths

    try:
        return parse_bandwidths(items or [])
    except ValueError as e:
        raise _fail(str(e)) from None


def _check_runs(paths: list[Path]) -> list[Path]:
    """The run directories `paths` name (see `results.resolve_runs`); exit 2 for one that is none."""
    from harness.results import RunNotFound, resolve_runs

    try:
        runs, notes = resolve_runs(paths)
    except RunNotFound as e:
        raise _fail(str(e)) from None
    for n in notes:
        err.print(f"note: {n}", markup=False, highlight=False)
    if paths and not runs:
        raise _fail("no run directories among the paths given")
    return runs


@app.command("report")
def report_cmd(
    runs: Annotated[list[Path], typer.Argument(help="run directories")],
    html_out: Annotated[
        Path | None,
        typer.Option(
            "--html",
            help="combined HTML file (default: report.html in the run dir; for several runs "
            "report-<UTC time>.html beside the first)",
        ),
    ] = None,
    price: PriceOpt = None,
    prices_file: PricesFileOpt = None,
    provider: ProviderOpt = None,
    bandwidth: BandwidthOpt = None,
) -> None:
    """Print each run's points table, write report.md into it, and write a self-contained HTML report."""
    from harness import report
    from harness.report_html import write_html
    from harness.results import RunNotFound, utc_stamp
    from harness.runinfo import points_frame

    runs = _check_runs(runs)
    for r in runs:
        try:
            md = report.report_run(r, out)
        except RunNotFound as e:
            raise _fail(str(e)) from None
        err.print(f"wrote {md}")
    quotes = _prices(price, prices_file, provider)
    usd = {k: q.usd_per_hour for k, q in quotes.items()}
    origin = {k: q.origin for k, q in quotes.items()}
    points = points_frame(list(runs), _bandwidths(bandwidth))
    if points.empty:
        err.print("no finished points: no HTML report written")
        return
    if html_out is None:
        html_out = (
            runs[0] / "report.html" if len(runs) == 1 else runs[0].parent / f"report-{utc_stamp()}.html"
        )
    path, plots, notes = write_html(list(runs), points, html_out, usd, origin)
    for n in notes:
        err.print(f"note: {n}", markup=False, highlight=False)
    err.print(f"wrote {path} ({len(plots)} plots, PNGs in {path.parent / (path.stem + '-plots')})")


@app.command("compare")
def compare_cmd(
    runs: Annotated[list[Path], typer.Argument(help="run directories")],
    baseline: Annotated[
        str | None, typer.Option(help="configuration to divide by: hardware key (a100-80gb-sxm) or label")
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="directory for compare.csv/.parquet/.md")
    ] = None,
    price: PriceOpt = None,
    prices_file: PricesFileOpt = None,
    provider: ProviderOpt = None,
    utilization: Annotated[float, typer.Option(min=0.01, max=1.0, help="share of rented hours busy")] = 1.0,
    kwh: Annotated[float | None, typer.Option("--kwh", min=0.0, help="US$ per kWh, adds energy cost")] = None,
    bandwidth: BandwidthOpt = None,
    metrics: Annotated[
        str | None,
        typer.Option(help="comma-separated columns to print (default all), e.g. output_tok_s,speedup"),
    ] = None,
) -> None:
    """One table over many runs: model x precision x workload x load rows, hardware/engine columns."""
    from harness.compare import CompareError, compare_runs, parse_metrics, print_comparison, write
    from harness.results import utc_stamp

    runs = _check_runs(runs)
    quotes = _prices(price, prices_file, provider)
    usd = {k: q.usd_per_hour for k, q in quotes.items()}
    try:
        c = compare_runs(list(runs), baseline, usd, utilization, kwh, _bandwidths(bandwidth))
    except CompareError as e:
        raise _fail(str(e)) from None
    try:
        shown = parse_metrics(metrics)
    except CompareError as e:
        raise _fail(str(e)) from None
    print_comparison(c, out, shown)
    paths = write(c, out_dir or runs[0].parent / f"compare-{utc_stamp()}")
    err.print(f"wrote {', '.join(str(p) for p in paths)}")


@app.command("cost")
def cost_cmd(
    runs: Annotated[
        list[Path] | None, typer.Argument(help="run directories (or use --usd-per-hour/--tok-s)")
    ] = None,
    usd_per_hour: Annotated[
        float | None, typer.Option(min=0.0, help="US$ per device-hour (typed numbers)")
    ] = None,
    tok_s: Annotated[float | None, typer.Option(help="output tokens/s, > 0 (typed numbers)")] = None,
    devices: Annotated[int, typer.Option(min=1, help="devices rented (typed numbers)")] = 1,
    j_per_token: Annotated[
        float | None, typer.Option(min=0.0, help="J per output token (typed numbers)")
    ] = None,
    price: PriceOpt = None,
    prices_file: PricesFileOpt = None,
    provider: ProviderOpt = None,
    utilization: Annotated[float, typer.Option(min=0.01, max=1.0, help="share of rented hours busy")] = 1.0,
    kwh: Annotated[float | None, typer.Option("--kwh", min=0.0, help="US$ per kWh, adds energy cost")] = None,
) -> None:
    """US$ per 1M output tokens = $/device-hour x devices / (tok/s x 3600 x utilization) x 1e6."""
    from harness.cost import CostInputs, run_cost_frame
    from harness.runinfo import points_frame
    from harness.tables import cost_line, cost_table

    quotes = _prices(price, prices_file, provider)
    if not runs:
        if usd_per_hour is None or tok_s is None:
            raise _fail("cost: give run directories, or both --usd-per-hour and --tok-s")
        if not tok_s > 0:
            raise _fail(f"cost: --tok-s: must be > 0 (got {tok_s:g})")
        for line in cost_line(CostInputs(usd_per_hour, tok_s, devices, utilization, j_per_token, kwh).row()):
            out.print(line, highlight=False)
        return
    runs = _check_runs(runs)
    usd = {k: q.usd_per_hour for k, q in quotes.items()}
    points = points_frame(list(runs))
    if points.empty:
        raise _fail("cost: no finished points in the given runs")
    out.print(cost_table(run_cost_frame(points, usd, utilization, kwh), utilization))
    for d in sorted(set(points["device"])):
        if d in usd:
            err.print(f"price {d}: ${usd[d]:g}/h ({quotes[d].origin})")
        else:
            err.print(f"note: no price for {d}: give --price {d}=USD_PER_HOUR")


@app.command("roofline")
def roofline_cmd(
    model: Annotated[str, typer.Option(help="models.yaml key, e.g. llama-3.1-70b")],
    gpu: Annotated[str, typer.Option(help="hardware.yaml key, e.g. h100-sxm")],
    precision: Annotated[str, typer.Option(help="bf16, fp8, int4, q4_k_m, ...")] = "bf16",
    tp: Annotated[int, typer.Option(min=1, help="tensor-parallel devices")] = 1,
    batch: Annotated[str, typer.Option(help="comma-separated batch sizes")] = "1",
    context: Annotated[float, typer.Option(help="tokens in context per sequence during decode")] = 0.0,
    input_tokens: Annotated[int, typer.Option(min=1, help="prompt length for the prefill bound")] = 1024,
    kv_dtype: Annotated[str, typer.Option(help="auto (2 bytes) or fp8 (1 byte)")] = "auto",
    efficiency: Annotated[float, typer.Option(min=0.01, max=1.0, help="achievable share of peak")] = 1.0,
    cpu_offload_gb: Annotated[
        float, typer.Option(min=0, help="GiB of weights per device streamed from host")
    ] = 0,
) -> None:
    """Decode ceiling (bytes per step / bandwidth, batch-aware) and prefill compute ceiling."""
    from harness.catalog import CatalogError, get_model
    from harness.catalog.hardware import get_device
    from harness.roofline import Shape, roofline_table
    from harness.tables import roofline_table as table

    try:
        batches = [int(b) for b in batch.split(",") if b.strip()]
    except ValueError:
        raise _fail(
            f"roofline: --batch: {batch!r} is not a comma-separated list of integers, e.g. 1,8,64"
        ) from None
    if not batches or min(batches) < 1:
        raise _fail(f"roofline: --batch: every batch size must be >= 1 (got {batch!r})")
    try:
        shape, dev = Shape.of(get_model(model)), get_device(gpu)
        kv_bytes = 1.0 if kv_dtype.startswith("fp8") else 2.0
        offload = cpu_offload_gb * 2**30
        rows, pre = roofline_table(
            shape, dev, precision, tp, batches, context, input_tokens, kv_bytes, efficiency, offload
        )
    except (CatalogError, ValueError) as e:
        raise _fail(f"roofline: {e}") from None
    title = (
        f"decode ceiling: {model} {precision} on {tp}x {gpu} ({dev.bandwidth_gbs:g} GB/s), "
        f"context {context:g} tokens, efficiency {efficiency:g}"
    )
    if cpu_offload_gb:
        title += (
            f", {cpu_offload_gb:g} GiB/device offloaded over {dev.host_link} ({dev.host_link_gbs:g} GB/s)"
        )
    out.print(table(rows, title))
    out.print(
        f"prefill of {pre['input_tokens']} tokens: >= {pre['t_prefill_s'] * 1000:.1f} ms "
        f"({pre['prefill_tok_s']:.0f} tok/s, {pre['bound']}-bound)",
        highlight=False,
    )


@app.command("claims")
def claims_cmd(
    runs: Annotated[
        list[Path] | None, typer.Argument(help="run directories to check the claims against")
    ] = None,
    claims_file: Annotated[
        Path | None, typer.Option("--claims", help="claims YAML (claims.yaml shape)")
    ] = None,
    source: Annotated[
        str | None, typer.Option(help="only claims from this source (article, lambda, ...)")
    ] = None,
    md_out: Annotated[
        Path | None, typer.Option("--out", help="also write the table as Markdown here")
    ] = None,
) -> None:
    """Each published claim: the measured value where a run matches, else its roofline plausibility."""
    from harness.catalog import CatalogError
    from harness.catalog.claims import claims, load_claims_file
    from harness.claims import check_all
    from harness.runinfo import points_frame
    from harness.tables import claims_markdown, claims_table

    try:
        cl = load_claims_file(claims_file) if claims_file else list(claims())
    except CatalogError as e:
        raise _fail(str(e)) from None
    if source:
        cl = [c for c in cl if c.source == source]
        if not cl:
            raise _fail(f"--source: no claims from {source!r}")
    runs = _check_runs(runs or [])
    checks = check_all(cl, points_frame(list(runs or [])))
    out.print(claims_table(checks, len(runs or [])))
    if md_out is not None:
        md_out.write_text(claims_markdown(checks), encoding="utf-8")
        err.print(f"wrote {md_out}")


@app.command("recommend")
def recommend_cmd(
    model: Annotated[str, typer.Option(help="models.yaml key, e.g. llama-3.1-70b")],
    concurrency: Annotated[int, typer.Option(min=1, help="expected concurrent requests")],
    runs: Annotated[
        list[Path] | None, typer.Argument(help="run directories with measurements to prefer")
    ] = None,
    ttft_slo: Annotated[float | None, typer.Option(help="TTFT limit in seconds")] = 2.0,
    tpot_slo: Annotated[float | None, typer.Option(help="TPOT limit in seconds")] = 0.2,
    input_tokens: Annotated[int, typer.Option(min=1)] = 1024,
    output_tokens: Annotated[int, typer.Option(min=1)] = 256,
    precision: Annotated[str, typer.Option(help="comma-separated precisions to consider")] = "bf16,fp8",
    gpu: Annotated[list[str] | None, typer.Option(help="only these hardware keys (repeatable)")] = None,
    efficiency: Annotated[float, typer.Option(min=0.01, max=1.0, help="share of peak for estimates")] = 1.0,
    top: Annotated[int, typer.Option(min=1, help="rows to show")] = 12,
    price: PriceOpt = None,
    prices_file: PricesFileOpt = None,
    provider: ProviderOpt = None,
) -> None:
    """Rank hardware by $/1M output tokens among options meeting the SLOs (measured where possible)."""
    from harness.catalog import CatalogError, get_model
    from harness.recommend import Need, article_rule, recommend
    from harness.runinfo import points_frame
    from harness.tables import recommend_table

    try:
        arch = get_model(model)
    except CatalogError as e:
        raise _fail(f"--model: {e}") from None
    quotes = _prices(price, prices_file, provider)
    runs = _check_runs(runs or [])
    need = Need(arch, concurrency, input_tokens, output_tokens, ttft_slo, tpot_slo)
    try:
        df, notes = recommend(
            need,
            {k: q.usd_per_hour for k, q in quotes.items()},
            points_frame(list(runs or [])),
            tuple(p.strip() for p in precision.split(",") if p.strip()),
            efficiency=efficiency,
            only=tuple(gpu or ()),
        )
    except ValueError as e:
        raise _fail(f"recommend: {e}") from None
    title = (
        f"{model} at concurrency {concurrency}, {input_tokens} in / {output_tokens} out, "
        f"SLO TTFT <= {ttft_slo} s, TPOT <= {tpot_slo} s"
    )
    out.print(recommend_table(df, title, top))
    out.print(article_rule(need), highlight=False)
    out.print("roofline estimates are best cases: real engines reach a fraction of them (see --efficiency)")
    for n in notes:
        err.print(f"note: {n}", markup=False, highlight=False)


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
    error_after: Annotated[
        int | None, typer.Option(help="fault: end streams with a server error after this many tokens")
    ] = None,
    error_as: Annotated[
        str, typer.Option(help="how that error is sent: data (vLLM, llama.cpp) or field (older llama.cpp)")
    ] = "data",
) -> None:
    """Serve the OpenAI streaming protocol with scripted timing (for testing clients and the harness)."""
    from harness.testing.fake_server import FakeScript, serve_processes

    if workers > 1 and port == 0:
        raise _fail("--port: must be set (not 0) when --workers > 1")
    if error_as not in ("data", "field"):
        raise _fail(f"--error-as: invalid value {error_as!r} (allowed: data, field)")
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
        error_after_tokens=error_after,
        error_as=error_as,
    )
    err.print(
        f"fake OpenAI server on http://{host}:{port} (TTFT {ttft_ms} ms, ITL {itl_ms} ms, "
        f"{workers} process(es)); Ctrl-C stops"
    )
    try:
        serve_processes(script, host, port, workers)
    except KeyboardInterrupt:
        pass
    except OSError as e:  # port taken, address not on this host
        raise _fail(f"serve-fake: cannot listen on {host}:{port}: {e.strerror or e}") from None


@app.command("gpu-info")
def gpu_info(
    record: Annotated[Path | None, typer.Option(help="also record an NVML trace (.jsonl.gz) here")] = None,
    seconds: Annotated[float, typer.Option(min=0.1, help="how long to record")] = 10.0,
    interval_s: Annotated[float, typer.Option(min=0.01, help="sampling interval")] = 0.1,
) -> None:
    """Print the GPU (NVML) and CPU inventory as JSON; optionally record an NVML trace for replay."""
    import json

    from harness.hostinfo import cpu_inventory
    from harness.telemetry.inventory import gpu_inventory

    out.print_json(json.dumps({"gpu": gpu_inventory(), "cpu": cpu_inventory()}))
    if record is not None:
        _record(record, seconds, interval_s, "--record")


@telemetry_app.command("record")
def telemetry_record(
    path: Annotated[Path, typer.Argument(help="output trace (.jsonl.gz)")],
    seconds: Annotated[float, typer.Option(min=0.1, help="how long to record")] = 10.0,
    interval_s: Annotated[float, typer.Option(min=0.01, help="sampling interval")] = 0.1,
) -> None:
    """Record every GPU with the live NVML sampler into a trace that HARNESS_NVML_REPLAY can replay."""
    _show_trace(_record(path, seconds, interval_s, "telemetry record"))


def _record(path: Path, seconds: float, interval_s: float, what: str) -> Path:
    """Record an NVML trace to `path`; without NVML, exit 2 saying so."""
    from harness.telemetry import nvml
    from harness.telemetry.replay import record_trace

    try:
        p = record_trace(path, seconds, interval_s)
    except nvml.NvmlError as e:
        raise _fail(f"{what}: no NVML trace recorded: {e}") from None
    err.print(f"wrote {p}")
    return p


@telemetry_app.command("show")
def telemetry_show(trace: Annotated[Path, typer.Argument(help="an NVML trace (.jsonl.gz)")]) -> None:
    """Summarize a trace: its GPUs, and per stored window energy (counter and integrated power), power,
    utilization, SM clock and memory."""
    _show_trace(trace)


def _show_trace(trace: Path) -> None:
    from harness.telemetry.replay import trace_windows
    from harness.telemetry.trace import TraceError, read_trace

    try:
        head, series = read_trace(trace)
        windows = trace_windows(head, series)
    except TraceError as e:
        raise _fail(str(e)) from None
    gpus = (head.get("inventory") or {}).get("gpus") or []
    names = ", ".join(str(g.get("name", "?")) for g in gpus if isinstance(g, dict)) or "?"
    span_s = max((s.t_ns[-1] - s.t_ns[0] for s in series if s.t_ns), default=0) / 1e9
    out.print(
        f"{trace}: {len(series)} GPU(s) ({names}), {sum(len(x.t_ns) for x in series)} samples "
        f"over {span_s:.1f} s",
        highlight=False,
    )
    for name, c in windows.items():
        out.print(f"  {name}: {_window_line(c)}", highlight=False)


def _window_line(c: dict[str, Any]) -> str:
    def num(key: str, fmt: str) -> str:
        v = c.get(key)
        return "-" if v is None else format(v, fmt)

    e, integ = c.get("gpu_energy_j"), c.get("gpu_power_integral_j")
    agree = f" ({(e - integ) / integ * 100:+.1f} %)" if e is not None and integ else ""
    return (
        f"energy {num('gpu_energy_j', '.1f')} J ({c.get('gpu_energy_source') or '-'}), integrated power "
        f"{num('gpu_power_integral_j', '.1f')} J{agree}; power mean {num('gpu_power_w_mean', '.1f')} W, "
        f"max {num('gpu_power_w_max', '.1f')} W; util {num('gpu_util_pct_mean', '.0f')} %; SM clock min "
        f"{num('gpu_sm_clock_mhz_min', '.0f')} MHz; memory max {num('gpu_mem_used_bytes_max', ',.0f')} B"
    )


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


@model_app.command("prepare")
def model_prepare_cmd(
    files: Annotated[list[Path], typer.Argument(help="scenario YAML files")],
) -> None:
    """Write (or find in the cache) every model the scenarios' engines use, before any run starts."""
    import time

    from harness.models import ModelError, resolve
    from harness.scenario import engine_configs

    specs: dict[str, Any] = {}
    for f in files:
        try:
            s = load_scenario(f)
        except ScenarioError as e:
            raise _fail(e.messages) from None
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
                size = r.path.stat().st_size if r.path.is_file() else 0
                path, what = r.path, f"{r.gguf_type or r.source}, {size / 2**30:.2f} GiB, sha256 {r.sha256}"
        except ModelError as e:
            raise _fail(f"{eng_type} model {model.model_dump(exclude_defaults=True)}: {e}") from None
        out.print(f"{path} ({what}) in {time.perf_counter() - t0:.1f} s", highlight=False)


def main() -> None:
    from harness.results import RunNotFound

    try:
        app()
    except RunNotFound as e:  # a run directory found unreadable partway (its points table, say)
        err.print(str(e), markup=False, highlight=False)
        raise SystemExit(EXIT_BAD_INPUT) from None


if __name__ == "__main__":
    main()
