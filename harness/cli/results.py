"""`harness report`, `compare` and `ls`: commands that read runs and show what they measured."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from harness.cli.common import (
    BandwidthOpt,
    KwhOpt,
    PriceOpt,
    PricesFileOpt,
    ProviderOpt,
    UtilizationOpt,
    bandwidths,
    check_runs,
    err,
    fail,
    out,
    output_dir,
    output_file,
    prices,
    reading_runs,
)
from harness.table_fit import print_fitted


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
    reruns: Annotated[
        str,
        typer.Option(
            help="what the HTML plots show where several runs measured a point with the same settings: "
            "newest (that run's point) or median (of each number over them), as in compare"
        ),
    ] = "newest",
) -> None:
    """Print each run's points table, write report.md into it, and write a self-contained HTML report."""
    from harness import report
    from harness.catalog.prices import unused_override_notes
    from harness.fileio import claim_new
    from harness.report_html import write_html
    from harness.results import RunNotFound, utc_stamp
    from harness.runinfo import points_frame

    output_file("--html", html_out)
    if reruns not in ("newest", "median"):
        raise fail(f"--reruns: invalid value {reruns!r} (allowed: newest, median)")
    quotes = prices(price, prices_file, provider)  # the options are checked before any work
    bandwidth_gbs = bandwidths(bandwidth)
    runs = check_runs(runs)
    # every run's table is read (and a malformed one refused) before any report is written
    points = points_frame(list(runs), bandwidth_gbs)
    for r in runs:
        try:
            md = report.report_run(r, out)
        except RunNotFound as e:
            raise fail(str(e)) from None
        err.print(f"wrote {md}", markup=False)
    usd = {k: q.usd_per_hour for k, q in quotes.items()}
    origin = {k: q.origin for k, q in quotes.items()}
    if points.empty:
        err.print("no finished points: no HTML report written")
        return
    if html_out is None:
        html_out = (
            runs[0] / "report.html"
            if len(runs) == 1
            else claim_new(runs[0].parent, f"report-{utc_stamp()}", ".html", folder=False)
        )
    with reading_runs(runs):
        path, plots, notes = write_html(list(runs), points, html_out, usd, origin, reruns)
    notes += unused_override_notes(origin, points["device"])
    for n in notes:
        err.print(f"note: {n}", markup=False, highlight=False)
    pngs = f", PNGs in {path.parent / (path.stem + '-plots')}" if plots else ""
    err.print(f"wrote {path} ({len(plots)} plots{pngs})", markup=False)


def compare_cmd(
    runs: Annotated[list[Path], typer.Argument(help="run directories")],
    baseline: Annotated[
        str | None, typer.Option(help="configuration to divide by: hardware key (a100-80gb-sxm) or label")
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="directory for compare.csv/.parquet/.md and points.csv (default: compare-<UTC time>/ "
            "beside the first run)",
        ),
    ] = None,
    price: PriceOpt = None,
    prices_file: PricesFileOpt = None,
    provider: ProviderOpt = None,
    utilization: UtilizationOpt = 1.0,
    kwh: KwhOpt = None,
    bandwidth: BandwidthOpt = None,
    metrics: Annotated[
        str | None,
        typer.Option(help="comma-separated columns to print (default all), e.g. output_tok_s,speedup"),
    ] = None,
    reruns: Annotated[
        str,
        typer.Option(
            help="where several runs measured a cell with the same settings: newest (that run's point) or "
            "median (of each number over them, with their spread)"
        ),
    ] = "newest",
) -> None:
    """One table over many runs: model x precision x workload x load rows, hardware/engine columns."""
    from harness.compare import CompareError, compare_runs, parse_metrics
    from harness.compare_output import print_comparison, write
    from harness.fileio import claim_new
    from harness.results import utc_stamp

    output_dir("--out", out_dir)
    if reruns not in ("newest", "median"):
        raise fail(f"--reruns: invalid value {reruns!r} (allowed: newest, median)")
    try:  # the options are checked before the runs are read
        shown = parse_metrics(metrics)
    except CompareError as e:
        raise fail(f"compare: {e}") from None
    runs = check_runs(runs)
    quotes = prices(price, prices_file, provider)
    usd = {k: q.usd_per_hour for k, q in quotes.items()}
    try:
        origins = {k: q.origin for k, q in quotes.items()}
        with reading_runs(runs):
            c = compare_runs(
                list(runs), baseline, usd, utilization, kwh, bandwidths(bandwidth), origins, reruns
            )
    except CompareError as e:  # said as cost and roofline say theirs: the command first
        raise fail(f"compare: {e}") from None
    print_comparison(c, out, shown)
    paths = write(c, out_dir or claim_new(runs[0].parent, f"compare-{utc_stamp()}"))
    err.print(f"wrote {', '.join(str(p) for p in paths)}", markup=False)


def ls_cmd(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="run directories, or folders to look for runs in (default: results)"),
    ] = None,
) -> None:
    """List runs, oldest first: status, start, model, hardware, engine, points done, best output tok/s.

    Points are given as done of planned; a run whose process is gone from this host is said to be."""
    from rich.table import Table
    from rich.text import Text

    from harness.runlist import LS_HEADS, run_line
    from harness.runpaths import runs_below

    found: dict[Path, str] = {}  # each run once (however it was named), with the name to show it by
    for p in paths or [Path("results")]:
        if p.is_file() and (p.parent / "manifest.json").is_file():  # RUN/manifest.json
            p = p.parent
        if (p / "manifest.json").is_file():
            found.setdefault(p.resolve(), str(p))
        elif p.is_dir():
            for r in runs_below(p):  # named from the folder given: a cloud fetch's runs keep their cluster
                found.setdefault(r.resolve(), str(r.relative_to(p)))
        else:
            raise fail(f"ls: {p}: no such directory")
    lines = [run_line(r, name) for r, name in found.items()]
    if not lines:
        err.print(f"no runs in {', '.join(str(p) for p in paths or [Path('results')])}", markup=False)
        return
    lines.sort(key=lambda ln: (ln["started (UTC)"], ln["run"]))
    t = Table(title=f"{len(lines)} run(s)")
    for h in LS_HEADS:
        t.add_column(h, justify="right" if h in ("points", "best out tok/s") else "left")
    for ln in lines:
        t.add_row(*(Text(ln[h]) for h in LS_HEADS))
    print_fitted(out, t, keys=1)
