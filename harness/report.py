"""Tables of a run's points: rich on the terminal, Markdown (`report.md`) on disk."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness import llama_bench
from harness.compare_notes import few_requests_for_p99_note
from harness.fileio import write_text_whole
from harness.flags import flags, unmade_checks
from harness.formatting import fmt, md_row, md_text
from harness.results import read_manifest, runner_state
from harness.runinfo import variant_label, workload_label
from harness.runpoints import aborted_rows, read_points, reading
from harness.table_fit import print_fitted

# (column, header, format) shown in the terminal / Markdown table, when present
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("point_id", "point", "{}"),
    ("precision", "precision", "lower"),
    ("concurrency", "conc", "{:.0f}"),
    ("rate_rps", "rate req/s", "{:g}"),
    ("ok", "ok", "{:.0f}"),
    ("errors", "err", "{:.0f}"),
    ("output_tok_s", "out tok/s", "{:.1f}"),
    ("total_tok_s", "total tok/s", "{:.1f}"),
    ("req_s", "req/s", "{:.2f}"),
    ("ttft_s_p50", "TTFT p50 ms", "ms"),
    ("ttft_s_p99", "TTFT p99 ms", "ms"),
    ("tpot_s_p50", "TPOT p50 ms", "ms"),
    ("tpot_s_p99", "TPOT p99 ms", "ms"),
    ("itl_s_p50", "ITL p50 ms", "ms"),
    ("e2e_s_p50", "E2E p50 s", "{:.2f}"),
    ("goodput_req_s", "goodput req/s", "{:.2f}"),
    ("slo_attainment", "in SLO", "{:.1%}"),
    ("energy_j_per_output_token", "J/out tok", "{:.3f}"),  # per output token, as out tok/s
)


def display_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The points table with the display columns present in `df`, formatted as strings."""
    cols = [(c, h, f) for c, h, f in COLUMNS if c in df.columns and not df[c].isna().all()]
    return pd.DataFrame({h: [fmt(v, f) for v in df[c]] for c, h, f in cols})


def rich_table(df: pd.DataFrame, title: str) -> Table:
    return rich_frame(display_frame(df), title)


def rich_frame(shown: pd.DataFrame, title: str) -> Table:
    """A table of strings for the terminal (labels left, numbers right)."""
    t = Table(title=escape(title))
    for h in shown.columns:
        t.add_column(h, justify="left" if h in ("point", "precision", "test") else "right")
    for _, r in shown.iterrows():
        t.add_row(*[escape(str(x)) for x in r])
    return t


def markdown(df: pd.DataFrame) -> str:
    return markdown_frame(display_frame(df))


def markdown_frame(shown: pd.DataFrame) -> str:
    lines = [md_row(shown.columns), "|" + "---|" * len(shown.columns)]
    lines += [md_row(r) for _, r in shown.iterrows()]
    return "\n".join(lines) + "\n"


def title_of(manifest: dict[str, Any]) -> str:
    engines = manifest.get("engines") or [{}]
    e = engines[0]
    model = (e.get("model") or {}).get("name", "?")
    name, launcher = e.get("name", "?"), e.get("launcher", "?")
    engine = name if launcher == name else f"{name} ({launcher})"  # external (external): said once
    scenario = (manifest.get("scenario") or {}).get("name", "?")
    return f"{scenario} — {engine} — {model} — {manifest.get('status', '?')}"


def report_run(run: str | Path, console: Console | None = None) -> Path:
    """Print the run's table and write `report.md` next to it; returns the Markdown path."""
    with reading(run):
        return _report_run(run, console)


def _report_run(run: str | Path, console: Console | None) -> Path:
    console = console or Console()
    manifest = read_manifest(run)
    df = read_points(run, manifest)
    title = title_of(manifest)
    if df.empty:
        console.print(f"{run}: no finished points (status: {manifest.get('status')})", markup=False)
    else:
        print_fitted(console, rich_table(df, title), keys=1)  # the point id
        if key := variants_key(manifest):
            console.print(key, markup=False, highlight=False, soft_wrap=True)
    md = Path(run) / "report.md"
    body = [f"# {md_text(title)}\n", *(f"- {line}" for line in header_lines(manifest)), ""]
    notes = all_notes(manifest, df, Path(run))
    for n in notes:
        console.print(f"note: {n}", markup=False, highlight=False, soft_wrap=True)
    table = markdown(df) if not df.empty else "no finished points\n"
    bench_md = ""
    for title, frame, bench_notes in bench_frames(manifest, df):
        if frame.empty:
            console.print(f"note: {title}", markup=False, highlight=False, soft_wrap=True)
        else:
            print_fitted(console, rich_frame(frame, title), keys=1)  # the test
        for n in bench_notes:
            console.print(f"note: {n}", markup=False, highlight=False, soft_wrap=True)
        bench_md += f"\n## {title}\n" + (f"\n{markdown_frame(frame)}" if not frame.empty else "")
        bench_md += "".join(f"\n- {n}" for n in bench_notes) + ("\n" if bench_notes else "")
    write_text_whole(
        md,
        "\n".join(body)
        + "\n"
        + table
        + "".join(f"\n- {n}" for n in notes)
        + ("\n" if notes else "")
        + bench_md,
    )
    return md


def bench_frames(manifest: dict[str, Any], df: pd.DataFrame) -> list[tuple[str, pd.DataFrame, list[str]]]:
    """llama-bench beside the server and the client (`harness.llama_bench.sections`), as display tables
    with their notes."""
    rows = df.to_dict("records") if not df.empty else []
    out = []
    for title, cmp, notes in llama_bench.sections(manifest, rows):
        frame = pd.DataFrame(
            {
                "test": [c["test"] for c in cmp],
                "llama-bench tok/s": [
                    fmt(c["bench_tok_s"], "{:.1f}")
                    + ("" if math.isnan(c["bench_stddev_tok_s"]) else f" ± {c['bench_stddev_tok_s']:.1f}")
                    for c in cmp
                ],
                "server timings tok/s": [fmt(c["server_tok_s"], "{:.1f}") for c in cmp],
                "client tok/s": [fmt(c["client_tok_s"], "{:.1f}") for c in cmp],
                "server / bench": [fmt(c["server_vs_bench"], "{:.2f}") for c in cmp],
                "client / bench": [fmt(c["client_vs_bench"], "{:.2f}") for c in cmp],
            }
        )
        out.append((title, frame, notes))
    return out


def variants_key(manifest: dict[str, Any]) -> str | None:
    """`variants: v0 = ngl=0; v1 = ngl=-1`: what each point id's variant changed (the table shows only its
    v0, v1), for a scenario with variants."""
    n = len((manifest.get("scenario") or {}).get("variants") or [])
    labels = [f"v{i} = {variant_label(manifest, i) or 'the engine as given'}" for i in range(n)]
    return "variants: " + "; ".join(labels) if labels else None


def header_lines(manifest: dict[str, Any]) -> list[str]:
    """What a run's table is of: run, its description, host, each variant's engine command, workload and
    load, and the SLO its goodput is judged against."""
    host = manifest.get("host") or {}
    scen = manifest.get("scenario") or {}
    lines = [
        f"run: `{manifest.get('run_id')}`",
        *([f"description: {md_text(scen['description'])}"] if scen.get("description") else []),
        f"host: {host.get('cpu_model')} ({host.get('cpu_logical')} logical CPUs)",
    ]
    engines = manifest.get("engines") or [{}]
    for e in engines:
        if len(engines) == 1:
            lines.append(f"engine: {engine_line(e)}")
            continue
        v = e.get("variant")
        said = [variant_label(manifest, v) if isinstance(v, int) else ""]
        said.append(f"resume {e['attempt']}" if e.get("attempt") else "")  # started again by a --resume
        label = ", ".join(x for x in said if x)
        lines.append(f"engine v{v}{f' ({label})' if label else ''}: {engine_line(e)}")
    return [*lines, workload_line(scen), f"goodput SLO: {slo_text(scen.get('slo') or {})}"]


def workload_line(scen: dict[str, Any]) -> str:
    """`workload: 128/64 tokens in/out (mean), completion API; closed loop, 8 requests a point (+1 warmup)`"""
    w, ld = scen.get("workload") or {}, scen.get("load") or {}
    what = workload_label(w) + ("" if w.get("dataset") else " tokens in/out (mean)")
    n = f"{ld['requests']} requests a point" if ld.get("requests") else ""
    if ld.get("duration_s"):
        n = f"{n} or {ld['duration_s']:g} s" if n else f"{ld['duration_s']:g} s a point"
    warm = f" (+{ld['warmup_requests']} warmup)" if ld.get("warmup_requests") else ""
    return f"workload: {what}, {w.get('api', 'completion')} API; {ld.get('mode', 'closed')} loop, {n}{warm}"


def slo_text(slo: dict[str, Any]) -> str:
    """`TTFT <= 2 s, TPOT <= 0.2 s`: the scenario's SLOs, which a request must all meet for goodput."""
    parts = [f"{name} <= {slo[key]:g} s" for key, name in _SLO_NAMES if slo.get(key) is not None]
    if not parts:
        return "none set (every successful request counts)"
    share = slo.get("attainment")
    if share is None:
        return ", ".join(parts)
    met = f"a point meets them when at least {share * 100:g} % of its requests do (column in SLO)"
    return f"{', '.join(parts)}; {met}"


_SLO_NAMES = (("ttft_s", "TTFT"), ("tpot_s", "TPOT"), ("e2e_s", "E2E"))


def engine_line(engine: dict[str, Any]) -> str:
    """How an engine was run: its command, or (an external endpoint, started by nobody here) its name and
    URL (with the API's path where it is not /v1)."""
    if command := engine.get("command"):
        return " ".join(command)
    where = engine.get("base_url")
    if where and engine.get("api_prefix") not in (None, "/v1"):  # the API's own path, as the scenario gave it
        where += engine["api_prefix"]
    return " ".join(str(x) for x in (engine.get("name"), f"at {where}" if where else None) if x) or "-"


def all_notes(manifest: dict[str, Any], df: pd.DataFrame, run: Path) -> list[str]:
    """Every note a report of the run gives: how the run stands, points cut short, failed requests, the
    warnings of each point, p99s from too few requests to be tail estimates, and the checks an older
    points table has no column for."""
    notes = run_notes(manifest, df, run) + search_notes(manifest, df) + aborted_notes(df) + point_notes(df)
    notes += few_requests_for_p99_note(df)
    if "ok" in df.columns and (unmade := unmade_checks(df.columns)):
        notes.append(
            f"checks not made for this run (its points table was written before them): {', '.join(unmade)}"
        )
    return notes


def search_notes(manifest: dict[str, Any], df: pd.DataFrame) -> list[str]:
    """What each variant's rate search (`--find-max-goodput`) found, as the run said it at its end."""
    from harness.runconsole import search_result_text

    rows = df.to_dict("records") if not df.empty else []
    found = [f for f in manifest.get("max_goodput") or [] if isinstance(f, dict) and "max_rate_rps" in f]
    return [
        f"rate search, variant {f.get('variant', 0)}: {search_result_text(f, rows, f.get('variant', 0))}"
        for f in found
    ]


def run_notes(manifest: dict[str, Any], df: pd.DataFrame, run: Path) -> list[str]:
    """How the run stands: still being written, killed (its manifest says `running` but the process that
    wrote it is gone), ended otherwise than complete; its engines' warnings (the GPU it is labelled with,
    llama.cpp layers that stayed on the CPU, ...); and, for a resumed run, which points a resume measured
    (on an engine started again from cold)."""
    out = []
    if note := df.attrs.get("read_note"):
        out.append(f"points table: {note}")
    status, host, pid = manifest.get("status"), *_runner_of(manifest)
    resume = resume_command(manifest, run)
    if status == "running":
        state = runner_state(manifest)
        if state == "live":
            out.append(
                f"the run is still going (process {pid} on this host): the table has its finished points"
            )
        elif state == "unrecorded":
            out.append("the manifest says running; whether it still is is not recorded")
        elif state == "elsewhere":
            out.append(f"the manifest says running on host {host}: still going there, or killed ({resume})")
        else:
            out.append(
                f"the manifest says running, but its process (pid {pid}) is gone: killed, or its machine "
                f"went down; continue it with: {resume}"
            )
    elif status not in ("complete", None):
        out.append(f"run {status}: {manifest.get('status_message') or 'no reason recorded'}")
    engines = manifest.get("engines") or []
    out += list(
        dict.fromkeys(
            f"engine (variant {e.get('variant')}): {w}" for e in engines for w in e.get("warnings") or []
        )
    )
    if resumed := manifest.get("resumed_utc") or []:
        which = ""
        if {"attempt", "point_id"} <= set(df.columns):  # points tables from before `attempt` have none
            later = df[df["attempt"].fillna(0) > 0]
            which = ", ".join(
                f"{p} (resume {int(a)})" for p, a in zip(later["point_id"], later["attempt"], strict=True)
            )
        out.append(
            f"resumed {len(resumed)} time(s)" + (f"; measured after a resume: {which}" if which else "")
        )
    return out


def resume_command(manifest: dict[str, Any], run: Path) -> str:
    """The command that continues the run: `harness run RUN --resume RUN`, with the scenario its manifest
    stored; where that holds a secret only as *** (or a run of an older harness stored none), with the
    scenario file it was started from."""
    from harness.rerun import redacted_fields

    stored = manifest.get("scenario")
    if isinstance(stored, dict) and not redacted_fields(stored):
        return f"harness run {run} --resume {run}"
    return f"harness run {manifest.get('scenario_file') or 'SCENARIO'} --resume {run}"


def _runner_of(manifest: dict[str, Any]) -> tuple[str | None, Any]:
    r = manifest.get("runner") or {}
    return r.get("hostname"), r.get("pid", "?")


def point_notes(df: pd.DataFrame) -> list[str]:
    """One line per point with failed measured requests (all of them: the row measures nothing; some: its
    latencies cover only the successes), per point with streams that arrived in a single read, and each
    warning the run printed for a point (`flags.flags`, made again from its row)."""
    if df.empty or "errors" not in df.columns or "ok" not in df.columns:
        return []
    out = []
    for _, r in df.iterrows():
        bad, good = (int(r[c]) if pd.notna(r[c]) else 0 for c in ("errors", "ok"))
        if not bad:
            continue
        said = [str(r.get(c) or "") for c in ("error_kinds", "first_error") if pd.notna(r.get(c))]
        said = [s for s in said if s]
        kinds = f" ({'; first: '.join(said)})" if said else ""
        if good == 0:
            out.append(f"point {r['point_id']}: all {bad} measured requests failed{kinds}: nothing measured")
        else:
            out.append(
                f"point {r['point_id']}: {bad} of {bad + good} measured requests failed{kinds}; "
                "its latencies cover the others only"
            )
    if "one_read_streams" in df.columns:
        for _, r in df[df["one_read_streams"].fillna(0) > 0].iterrows():
            n, ok = int(r["one_read_streams"]), int(r["ok"] or 0)
            out.append(
                f"point {r['point_id']}: {n} of {ok} streams arrived in a single read (TPOT and ITL 0): "
                "the engine or this client held them back (a saturated host?)"
            )
    for _, r in df.iterrows():
        out += [f"point {r['point_id']}: {msg}" for msg in flags(r.to_dict())]
    return out


def aborted_notes(df: pd.DataFrame) -> list[str]:
    """One line per point that was cut short: its row covers only part of the point."""
    cut = df[aborted_rows(df)]
    return [
        f"point {r['point_id']} was aborted ({r['aborted']}): its row covers only the requests finished "
        "before that and is left out of compare, cost, claims and recommend"
        for _, r in cut.iterrows()
    ]
