"""`harness cost`, `roofline`, `claims` and `recommend`: what tokens cost and what hardware could do, from
measured runs or from numbers given on the command line."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from harness.cli.common import (
    KwhOpt,
    PriceOpt,
    PricesFileOpt,
    ProviderOpt,
    UtilizationOpt,
    check_runs,
    err,
    fail,
    finite,
    note_runs_without_points,
    out,
    output_file,
    prices,
    reading_runs,
)
from harness.table_fit import print_fitted

if TYPE_CHECKING:
    from harness.cost import CostInputs

# bytes per KV element for vLLM's --kv-cache-dtype values
KV_DTYPE_BYTES = {"auto": 2.0, "bfloat16": 2.0, "float16": 2.0, "fp8": 1.0, "fp8_e4m3": 1.0, "fp8_e5m2": 1.0}


def _label_columns(frame: Any) -> int:
    """How many of a table's first columns are not numbers (the row labels, as `cost_table` justifies
    them), at least one."""
    import pandas as pd

    numeric = (i for i, c in enumerate(frame.columns) if pd.api.types.is_numeric_dtype(frame[c]))
    return max(next(numeric, len(frame.columns)), 1)


def cost_cmd(
    runs: Annotated[
        list[Path] | None, typer.Argument(help="run directories (or use --usd-per-hour/--output-tok-s)")
    ] = None,
    usd_per_hour: Annotated[
        float | None, typer.Option(**finite(0.0), help="US$ per device-hour (typed numbers)")
    ] = None,
    tok_s: Annotated[
        float | None,
        typer.Option(
            "--output-tok-s", "--tok-s", **finite(above=0), help="output tokens/s, > 0 (typed numbers)"
        ),
    ] = None,
    devices: Annotated[int, typer.Option(min=1, help="devices rented (typed numbers)")] = 1,
    j_per_token: Annotated[
        float | None,
        typer.Option(
            "--j-per-output-token", "--j-per-token", **finite(0.0), help="J per output token (typed numbers)"
        ),
    ] = None,
    price: PriceOpt = None,
    prices_file: PricesFileOpt = None,
    provider: ProviderOpt = None,
    utilization: UtilizationOpt = 1.0,
    kwh: KwhOpt = None,
) -> None:
    """US$ per 1M output tokens = $/device-hour x devices / (tok/s x 3600 x utilization) x 1e6."""
    from harness.catalog.prices import unused_override_notes
    from harness.cost import CostInputs, run_cost_frame, run_cost_notes
    from harness.runinfo import points_frame
    from harness.tables import cost_table

    quotes = prices(price, prices_file, provider)
    if not runs:
        if usd_per_hour is None or tok_s is None:
            raise fail("cost: give run directories, or both --usd-per-hour and --output-tok-s")
        pricing = [
            n for n, v in (("--price", price), ("--prices", prices_file), ("--provider", provider)) if v
        ]
        _print_typed_cost(CostInputs(usd_per_hour, tok_s, devices, utilization, j_per_token, kwh), pricing)
        return
    typed = [
        n
        for n, v in (
            ("--usd-per-hour", usd_per_hour),
            ("--output-tok-s", tok_s),
            ("--j-per-output-token", j_per_token),
            ("--devices", None if devices == 1 else devices),
        )
        if v is not None
    ]
    if typed:
        raise fail(
            f"cost: {typed[0]} is for typed numbers, not run directories (their tok/s, J/token and device "
            "counts are measured and recorded; give a device's price as --price DEVICE=USD_PER_HOUR)"
        )
    runs = check_runs(runs)
    usd = {k: q.usd_per_hour for k, q in quotes.items()}
    points = points_frame(list(runs))
    if points.empty:
        raise fail("cost: no finished points in the given runs")
    with reading_runs(runs):
        frame = run_cost_frame(points, usd, utilization, kwh)
    if any(math.isinf(v) for v in frame.select_dtypes("number").to_numpy().ravel()):  # 1e308 $/h
        raise fail(
            "cost: these prices give a cost too large for a float: check --price, --prices, --usd-per-kwh"
        )
    print_fitted(out, cost_table(frame, utilization), keys=_label_columns(frame))
    for d in sorted(set(points["device"])):
        if d in usd:
            err.print(quotes[d].line(), markup=False)
        else:
            err.print(f"note: no price for {d}: give --price {d}=USD_PER_HOUR", markup=False)
    for n in unused_override_notes({k: q.origin for k, q in quotes.items()}, points["device"]):
        err.print(f"note: {n}", markup=False, highlight=False)
    for n in run_cost_notes(points, frame, kwh):
        err.print(f"note: {n}", markup=False, highlight=False)


def _print_typed_cost(inputs: CostInputs, pricing: list[str]) -> None:
    """`harness cost` of typed numbers: the cost and its formula.
    `pricing`: the options given that price the devices of runs (--price, --prices, --provider), which
    typed numbers have none of: refused, not left unused without a word."""
    from harness.tables import cost_line

    if pricing:
        raise fail(
            f"cost: {pricing[0]} is for run directories, not typed numbers (it prices the devices runs were "
            "measured on; typed numbers are priced by --usd-per-hour)"
        )
    if inputs.j_per_token is not None and inputs.usd_per_kwh is None:
        raise fail("cost: --j-per-output-token needs --usd-per-kwh (US$ per kWh) to price the energy")
    row = inputs.row()
    if any(isinstance(v, float) and math.isinf(v) for v in row.values()):  # 1e308 $/h over 1e-308 tok/s
        raise fail(
            "cost: these numbers give a cost too large for a float: check --usd-per-hour, --output-tok-s"
        )
    for line in cost_line(row):
        out.print(line, markup=False, highlight=False)


def roofline_cmd(
    model: Annotated[str, typer.Option(help="models.yaml key, e.g. llama-3.1-70b")],
    gpu: Annotated[str, typer.Option(help="hardware.yaml key, e.g. h100-sxm")],
    precision: Annotated[str, typer.Option(help="bf16, fp8, int4, q4_k_m, ...")] = "bf16",
    tp: Annotated[int, typer.Option(min=1, max=64, help="tensor-parallel devices")] = 1,
    batch: Annotated[str, typer.Option(help="comma-separated batch sizes")] = "1",
    context: Annotated[
        float,
        typer.Option(
            "--context-tokens",
            "--context",
            **finite(0.0),
            help="tokens in context per sequence during decode",
        ),
    ] = 0.0,
    input_tokens: Annotated[int, typer.Option(min=1, help="prompt length for the prefill bound")] = 1024,
    kv_dtype: Annotated[
        str, typer.Option(help=f"KV cache dtype, as vLLM's --kv-cache-dtype ({', '.join(KV_DTYPE_BYTES)})")
    ] = "auto",
    efficiency: Annotated[float, typer.Option(**finite(0.01, 1.0), help="achievable share of peak")] = 1.0,
    cpu_offload_gb: Annotated[
        float, typer.Option(**finite(0), help="GiB of weights per device streamed from host")
    ] = 0,
    out_file: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="also write the rows here: CSV for a .csv path (the prefill bound on every row), else JSON",
        ),
    ] = None,
) -> None:
    """Decode ceiling (bytes per step / bandwidth, batch-aware) and prefill compute ceiling."""
    from harness.catalog import CatalogError, get_model
    from harness.catalog.hardware import get_device
    from harness.formatting import significant
    from harness.roofline import (
        NO_PEAK_BOUND,
        Shape,
        roofline_table,
        tensor_parallel_problem,
    )
    from harness.tables import roofline_table as table

    try:
        batches = [int(b) for b in batch.split(",") if b.strip()]
    except ValueError:
        raise fail(
            f"roofline: --batch: {batch!r} is not a comma-separated list of integers, e.g. 1,8,64"
        ) from None
    if not batches or min(batches) < 1:
        raise fail(f"roofline: --batch: every batch size must be >= 1 (got {batch!r})")
    if kv_dtype not in KV_DTYPE_BYTES:
        raise fail(f"roofline: --kv-dtype: invalid value {kv_dtype!r} (allowed: {', '.join(KV_DTYPE_BYTES)})")
    output_file("--out", out_file)
    try:
        shape, dev = Shape.of(get_model(model)), get_device(gpu)
        if why := tensor_parallel_problem(shape.heads, shape.kv_heads, tp):
            ok = [n for n in range(1, 65) if tensor_parallel_problem(shape.heads, shape.kv_heads, n) is None]
            raise fail(f"roofline: --tp: {model}: {why} (allowed: {', '.join(map(str, ok))})")
        kv_bytes = KV_DTYPE_BYTES[kv_dtype]
        offload = cpu_offload_gb * 2**30
        per_device = shape.weight_bytes(precision) / tp
        if offload > per_device:
            raise fail(
                f"roofline: --cpu-offload-gb: {cpu_offload_gb:g} GiB is more than each device's share of the "
                f"{precision} weights ({per_device / 2**30:.1f} GiB; allowed: 0 to {per_device / 2**30:.1f})"
            )
        rows, pre = roofline_table(
            shape, dev, precision, tp, batches, context, input_tokens, kv_bytes, efficiency, offload
        )
    except (CatalogError, ValueError) as e:
        raise fail(f"roofline: {e}") from None
    title = (
        f"decode ceiling: {model} {precision} on {tp}x {gpu} ({dev.bandwidth_gbs:g} GB/s each), "
        f"context {context:g} tokens, efficiency {efficiency:g}"
    )
    if cpu_offload_gb:
        title += (
            f", {cpu_offload_gb:g} GiB/device offloaded over {dev.host_link} ({dev.host_link_gbs:g} GB/s)"
        )
    print_fitted(out, table(rows, title), keys=1)  # the batch
    for n in _roofline_notes(rows, dev, context, precision):
        out.print(f"note: {n}", markup=False, highlight=False, soft_wrap=True)
    out.print(
        f"prefill of {pre['input_tokens']} tokens: >= {significant(pre['t_prefill_s'] * 1000)} ms "
        f"({pre['prefill_tok_s']:.0f} tok/s, "
        + (
            "the weight read only: no FLOP/s peak in the catalog for this device)"
            if pre["bound"] == NO_PEAK_BOUND
            else f"{pre['bound']}-bound)"
        ),
        highlight=False,
    )
    if out_file is not None:
        asked = {
            "model": model, "gpu": gpu, "precision": precision, "tp": tp, "context_tokens": context,
            "kv_dtype": kv_dtype, "efficiency": efficiency, "cpu_offload_gb": cpu_offload_gb,
        }  # fmt: skip
        _write_roofline(out_file, asked, rows, pre)
        err.print(f"wrote {out_file}", markup=False)


def _write_roofline(
    path: Path, asked: dict[str, Any], rows: list[dict[str, Any]], pre: dict[str, Any]
) -> None:
    """`harness roofline`'s rows as numbers (not the table's rounded text): CSV with what was asked and the
    prefill bound on every row, or JSON `{asked, decode: [rows], prefill}`."""
    import json

    import pandas as pd

    from harness.fileio import write_text_whole

    path.parent.mkdir(parents=True, exist_ok=True)  # output_file checked that it can be made
    prefill = {f"prefill_{k}" if not k.startswith("prefill") else k: v for k, v in pre.items()}
    if path.suffix.lower() == ".csv":
        write_text_whole(path, pd.DataFrame([{**asked, **r, **prefill} for r in rows]).to_csv(index=False))
    else:
        write_text_whole(path, json.dumps({"asked": asked, "decode": rows, "prefill": pre}, indent=1) + "\n")


def _roofline_notes(
    rows: list[dict[str, Any]], dev: Any, context: float, precision: str = "bf16"
) -> list[str]:
    """What the ceiling table cannot say by its numbers alone: rows that do not fit the device (their
    tok/s is what the bandwidth would give if they did), a max batch that needs a context, and a GGUF
    mix's bits being one file's average that another model's file may not have."""
    from harness.formatting import significant
    from harness.roofline import BYTES_PER_PARAM

    notes = []
    if unfit := [r for r in rows if r["fits"] is False]:
        r = unfit[0]
        weights, kv, memory = r["weights_gb_per_device"], r["kv_gb_per_device"], dev.memory_bytes / 1e9
        notes.append(
            f"'fits NO': {significant(weights, 3, 1)} GB of weights and {significant(kv, 3, 2)} GB of KV per "
            f"device (batch {r['batch']}) "
            f"exceed 90 % of its {memory:.1f} GB: the tok/s shown is the bandwidth's ceiling if they fit, "
            "not a setup that runs (more --tp, a smaller --precision or batch, or --cpu-offload-gb)"
        )
    if context <= 0:
        notes.append(
            "max batch: give --context-tokens (tokens held per sequence) to bound the batch by its KV cache"
        )
    p = precision.lower()
    # llama.cpp's types below Q6_K: it keeps the output tensor (and tied token embeddings) at Q6_K
    if p.startswith("q") and p in BYTES_PER_PARAM and p not in ("q8_0", "q6_k"):
        bits = BYTES_PER_PARAM[p] * 8
        what = (
            "the average of llama.cpp's Llama-3.1-8B file of this mix" if "_k_" in p else "the block's size"
        )
        notes.append(
            f"{precision}: {bits:.3g} bits a weight, {what}; llama.cpp keeps the output tensor (and tied "
            "token embeddings) at Q6_K, so a model's file can average more, most where the vocabulary is a "
            "large share of its parameters: a run's % of roofline (`compare`) is taken over its file's own "
            "size"
        )
    return notes


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
    from harness.fileio import write_text_whole
    from harness.runinfo import points_frame
    from harness.tables import claims_markdown, claims_table

    try:
        cl = load_claims_file(claims_file) if claims_file else list(claims())
    except CatalogError as e:
        raise fail(str(e)) from None
    if source:
        known = sorted({c.source for c in cl})
        cl = [c for c in cl if c.source == source]
        if not cl:
            raise fail(f"--source: no claims from {source!r} (allowed: {', '.join(known)})")
    output_file("--out", md_out)
    runs = check_runs(runs or [])
    points = points_frame(list(runs or []))
    note_runs_without_points(runs, points)
    with reading_runs(runs):
        checks = check_all(cl, points)
    out.print(claims_table(checks, len(runs or [])))
    if md_out is not None:
        md_out.parent.mkdir(parents=True, exist_ok=True)  # output_file checked that it can be made
        write_text_whole(md_out, claims_markdown(checks))
        err.print(f"wrote {md_out}", markup=False)


def recommend_cmd(
    model: Annotated[str, typer.Option(help="models.yaml key, e.g. llama-3.1-70b")],
    concurrency: Annotated[int, typer.Option(min=1, help="expected concurrent requests")],
    runs: Annotated[
        list[Path] | None, typer.Argument(help="run directories with measurements to prefer")
    ] = None,
    ttft_slo: Annotated[
        float | None,
        typer.Option("--ttft-slo-s", "--ttft-slo", **finite(above=0), help="p99 TTFT limit in seconds"),
    ] = 2.0,
    tpot_slo: Annotated[
        float | None,
        typer.Option("--tpot-slo-s", "--tpot-slo", **finite(above=0), help="p99 TPOT limit in seconds"),
    ] = 0.2,
    input_tokens: Annotated[int, typer.Option(min=1, help="prompt length per request, tokens")] = 1024,
    output_tokens: Annotated[int, typer.Option(min=1, help="output length per request, tokens")] = 256,
    precision: Annotated[
        str, typer.Option(help="comma-separated precisions to consider (named: not auto)")
    ] = "bf16,fp8",
    gpu: Annotated[list[str] | None, typer.Option(help="only these hardware keys (repeatable)")] = None,
    efficiency: Annotated[float, typer.Option(**finite(0.01, 1.0), help="share of peak for estimates")] = 1.0,
    top: Annotated[int, typer.Option(min=1, help="rows to show")] = 12,
    price: PriceOpt = None,
    prices_file: PricesFileOpt = None,
    provider: ProviderOpt = None,
    out_file: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="also write the ranking here: every option as CSV for a .csv path, else the table and notes "
            "as Markdown",
        ),
    ] = None,
) -> None:
    """Rank hardware by $/1M output tokens among options meeting the SLOs (measured where possible)."""
    from harness.catalog import CatalogError, get_model
    from harness.fileio import write_text_whole
    from harness.recommend import Need, article_rule, recommend, vendor_notes
    from harness.runinfo import points_frame
    from harness.tables import recommend_markdown, recommend_table

    try:
        arch = get_model(model)
    except CatalogError as e:
        raise fail(f"--model: {e}") from None
    from harness.catalog.hardware import gpus
    from harness.catalog.prices import OVERRIDE, mixed_sources_notes

    unknown = [g for g in gpu or () if g not in gpus()]
    if unknown:
        raise fail(
            f"--gpu: {unknown[0]!r} is not a GPU in the hardware catalog "
            f"(allowed: {', '.join(sorted(gpus()))})"
        )
    precisions = tuple(p.strip() for p in precision.split(",") if p.strip())
    if not precisions:
        raise fail(f"--precision: {precision!r} names no precision (e.g. bf16,fp8)")
    if "auto" in (p.lower() for p in precisions):  # estimated as bf16: a second row of bf16's numbers
        raise fail("--precision: auto is an engine's own choice, not one to rank: name it (e.g. bf16,fp8)")
    quotes = prices(price, prices_file, provider)
    if off := [k for k, q in quotes.items() if q.origin == OVERRIDE and k not in gpus()]:  # ranked: none
        raise fail(
            f"--price: {off[0]!r} is not a GPU in the hardware catalog (allowed: {', '.join(sorted(gpus()))})"
        )
    output_file("--out", out_file)
    runs = check_runs(runs or [])
    need = Need(arch, concurrency, input_tokens, output_tokens, ttft_slo, tpot_slo)
    points = points_frame(list(runs or []))
    note_runs_without_points(runs, points)
    try:
        df, notes = recommend(
            need,
            {k: q.usd_per_hour for k, q in quotes.items()},
            points,
            precisions,
            efficiency=efficiency,
            only=tuple(gpu or ()),
        )
    except ValueError as e:
        raise fail(f"recommend: {e}") from None
    title = (
        f"{model} at concurrency {concurrency}, {input_tokens} in / {output_tokens} out, "
        f"SLO p99 TTFT <= {ttft_slo} s, p99 TPOT <= {tpot_slo} s"
    )
    print_fitted(out, recommend_table(df, title, top), keys=2)  # rank, hardware
    best_cases = "roofline estimates are best cases: real engines reach a fraction of them (see --efficiency)"
    out.print(article_rule(need), highlight=False)
    out.print(best_cases)
    shown = list(df.head(top)["device"])
    price_lines = [quotes[d].line() for d in dict.fromkeys(shown)]
    for line in price_lines:
        err.print(line, markup=False, highlight=False)
    all_notes = [*notes, *mixed_sources_notes(quotes, shown, provider), *vendor_notes(df.head(top))]
    for n in all_notes:
        err.print(f"note: {n}", markup=False, highlight=False)
    if out_file is not None:
        out_file.parent.mkdir(parents=True, exist_ok=True)  # output_file checked that it can be made
        if out_file.suffix.lower() == ".csv":
            write_text_whole(out_file, df.rename_axis("rank").rename(lambda i: i + 1).to_csv())
        else:
            said = [article_rule(need), best_cases, *price_lines, *all_notes]
            write_text_whole(out_file, recommend_markdown(df, title, top, said))
        err.print(f"wrote {out_file}", markup=False)
