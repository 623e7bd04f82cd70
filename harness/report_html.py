"""One self-contained HTML report (plots inlined as PNG data URIs, also written as files) for runs.

Plots use matplotlib (static PNGs: no JavaScript, works offline and in any browser or mail client,
and matplotlib is already the `plots` extra). Each plot has one line per configuration
(`hardware | engine [| variant]`, see harness.runinfo); plots whose data is absent (no energy
telemetry, no price for the device) are left out with a note saying why.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harness.compare import ROW_KEYS, dedupe
from harness.cost import add_cost_columns, rate_rows_cost_note
from harness.extras import pip_install
from harness.fileio import write_text_whole
from harness.formatting import fmt
from harness.report import all_notes, bench_frames, display_frame, engine_line, slo_text
from harness.results import read_manifest
from harness.runpoints import read_points, reading


@dataclass
class Plot:
    title: str
    path: Path
    caption: str


def _has(df: pd.DataFrame, col: str) -> bool:
    return col in df.columns and bool(df[col].notna().any())


def _slug(title: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in title.lower()).strip("-")


def series_labels(df: pd.DataFrame) -> pd.Series:
    """One line per configuration, model, precision and workload: `config`, plus the model, the
    precision and the workload where the plotted points have more than one (a bf16 and an fp8 run of
    one GPU and engine are two lines, not one zigzag)."""
    label = df["config"].astype(str)
    for col in ("model", "precision", "workload"):
        if col in df.columns and df[col].nunique(dropna=False) > 1:
            label = label + " | " + df[col].astype(str)
    return label


def _lines(
    ax: Any,
    df: pd.DataFrame,
    x: str,
    y: str,
    scale: float = 1.0,
    style: str = "o-",
    label_suffix: str = "",
    mark_load: bool = False,
) -> None:
    # points are joined in order of increasing load (concurrency, then offered rate), as curves are read;
    # `mark_load`: each marker is labelled with its load (c4, r8), where x is not the load
    order = [c for c in ("concurrency", "rate_rps") if c in df.columns]
    for i, (cfg, g) in enumerate(df.groupby(series_labels(df), sort=False)):
        g = g.sort_values(order or x)
        ax.plot(g[x], g[y] * scale, style, color=f"C{i % 10}", label=f"{cfg}{label_suffix}")
        if mark_load:
            for _, r in g.iterrows():
                if pd.notna(r[x]) and pd.notna(r[y]):
                    ax.annotate(
                        load_tag(r),
                        (r[x], r[y] * scale),
                        textcoords="offset points",
                        xytext=(3, 3),
                        fontsize=6,
                    )


def _log_y(ax: Any, values: Any) -> str:
    """A log y axis where the values are `wide`; the label's suffix saying so."""
    if not wide(values):
        return ""
    ax.set_yscale("log")
    return " (log scale)"


def plain_log_ticks(ax: Any) -> None:
    """Tick labels of `ax`'s log axes as plain numbers (`100`, `1e+04`): matplotlib's default ones are
    maths markup (`$\\mathdefault{10^{2}}$`), printed as such where labels are drawn as written. Ticks
    given their own labels (the concurrency levels) keep them."""
    from matplotlib.ticker import LogFormatter, LogFormatterMathtext

    for axis in (ax.xaxis, ax.yaxis):
        if axis.get_scale() != "log":
            continue
        if isinstance(axis.get_major_formatter(), LogFormatterMathtext):
            axis.set_major_formatter(LogFormatter())
        if isinstance(axis.get_minor_formatter(), LogFormatterMathtext):
            axis.set_minor_formatter(LogFormatter(labelOnlyBase=False))


def load_tag(point: Any) -> str:
    """A point's load, short: `c4` (closed loop, concurrency 4) or `r8` (open loop, 8 req/s)."""
    c = point.get("concurrency")
    if c is not None and pd.notna(c):
        return f"c{int(c)}"
    r = point.get("rate_rps")
    return f"r{r:g}" if r is not None and pd.notna(r) else ""


WIDE_RANGE = 20.0  # max / min of the plotted values from which an axis is logarithmic


def wide(values: Any) -> bool:
    """Values spread over more than WIDE_RANGE x: on a linear axis the small ones sit on zero. Only
    when all are positive (a log axis would drop a zero TPOT of one-token outputs without a word)."""
    v = pd.to_numeric(pd.Series(values), errors="coerce").dropna()
    if len(v) < 2 or (v <= 0).any():
        return False
    return float(v.max()) / float(v.min()) >= WIDE_RANGE


def make_plots(points: pd.DataFrame, out_dir: Path, reruns: str = "newest") -> tuple[list[Plot], list[str]]:
    """Write the PNGs into `out_dir`; returns the plots made and notes about the ones left out. Labels
    are drawn as written: `$` is no maths markup (`price $5 and $10`), and a character the font lacks is
    an empty box, not a warning per label."""
    try:
        import matplotlib
    except ImportError:
        return [], [f"No plots: matplotlib is not installed ({pip_install('plots')})."]
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with plt.rc_context({"text.parse_math": False}), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from font", category=UserWarning)
        return _draw_plots(plt, points, out_dir, reruns)


def _draw_plots(plt: Any, points: pd.DataFrame, out_dir: Path, reruns: str) -> tuple[list[Plot], list[str]]:
    plots: list[Plot] = []
    notes: list[str] = []
    out_dir.mkdir(parents=True, exist_ok=True)
    if {*ROW_KEYS, "config", "started_utc", "run_id", "point_id"} <= set(points.columns):
        points, superseded = dedupe(points, reruns)  # reruns: the newest point or the median, as in compare
        notes += superseded
    closed = points[points["concurrency"].notna()] if "concurrency" in points else points.iloc[0:0]
    opened = points[points["concurrency"].isna()] if "concurrency" in points else points

    def save(fig: Any, title: str, caption: str) -> None:
        for ax in fig.axes:
            plain_log_ticks(ax)
        path = out_dir / f"{_slug(title)}.png"
        fig.savefig(path, dpi=100, bbox_inches="tight", metadata={"Software": None})
        plt.close(fig)
        plots.append(Plot(title, path, caption))

    def per_load(title: str, y: str, ylabel: str, caption: str, scale: float = 1.0) -> None:
        for df, x, xlabel, suffix in (
            (closed, "concurrency", "concurrent requests", ""),
            (opened, "rate_rps", "offered rate (req/s)", " (open loop)"),
        ):
            if df.empty or not _has(df, y):
                continue
            fig, ax = plt.subplots(figsize=(7, 4))
            _lines(ax, df, x, y, scale)
            if x == "concurrency":
                if df[x].max() / max(df[x].min(), 1) >= 8:
                    ax.set_xscale("log", base=2)
                    xlabel += " (log scale)"
                ticks = sorted(set(df[x].astype(int)))
                ax.set_xticks(ticks, [str(t) for t in ticks])
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel + _log_y(ax, df[y]))
            ax.set_title(title + suffix)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
            save(fig, title + suffix, caption + (" Log y axis." if ax.get_yscale() == "log" else ""))

    per_load(
        "Output throughput vs load",
        "output_tok_s",
        "output tokens/s",
        "Output tokens per second over each point's measured window.",
    )
    for metric, name in (("ttft_s", "TTFT"), ("tpot_s", "TPOT")):
        if not _has(points, f"{metric}_p50"):
            continue
        fig, ax = plt.subplots(figsize=(7, 4))
        _lines(ax, points, "output_tok_s", f"{metric}_p50", 1000, "o-", " p50", mark_load=True)
        ys = [points[f"{metric}_p50"]]
        if _has(points, f"{metric}_p99"):
            _lines(ax, points, "output_tok_s", f"{metric}_p99", 1000, "s--", " p99")
            ys.append(points[f"{metric}_p99"])
        log_x = wide(points["output_tok_s"])
        if log_x:
            ax.set_xscale("log")
        ax.set_xlabel("output tokens/s" + (" (log scale)" if log_x else ""))
        ax.set_ylabel(f"{name} (ms)" + _log_y(ax, pd.concat(ys)))
        ax.set_title(f"{name} vs throughput")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        logs = [a for a, on in (("x", log_x), ("y", ax.get_yscale() == "log")) if on]
        save(
            fig,
            f"{name} vs throughput",
            f"{name} p50 (solid) and p99 (dashed) against output tokens/s; one marker per load point, "
            "labelled with its load (c: concurrency, r: offered req/s)."
            + (f" Log {' and '.join(logs)} axis." if logs else ""),
        )
    if _has(points, "energy_j_per_output_token"):
        per_load(
            "Energy per output token",
            "energy_j_per_output_token",
            "J per output token",
            "Energy over each point's window divided by its output tokens.",
        )
    else:
        notes.append(
            "Energy per output token: not plotted, these runs have no energy telemetry "
            "(energy_j_per_output_token is absent or empty)."
        )
    if _has(points, "usd_per_1m_tokens"):
        per_load(
            "Cost per 1M output tokens",
            "usd_per_1m_tokens",
            "US$ per 1M output tokens",
            "Device rent over measured output throughput (prices in the table below).",
        )
        notes += rate_rows_cost_note(points)
    elif unpriced := sorted(set(points["device"]) - _priced(points)):
        notes.append(
            f"Cost per 1M output tokens: not plotted, no price for {', '.join(unpriced)} (give one with "
            "--price DEVICE=USD_PER_HOUR)."
        )
    else:
        notes.append("Cost per 1M output tokens: not plotted, no priced point measured output tokens/s.")
    return plots, notes


def _priced(points: pd.DataFrame) -> set[str]:
    if "usd_per_device_hour" not in points.columns:
        return set()
    return set(points.loc[points["usd_per_device_hour"].notna(), "device"])


def run_note_parts(run: str | Path) -> list[str]:
    """A run's notes (`report.all_notes`: its status, points cut short, failed requests, each point's
    warnings) as HTML: a heading and a paragraph each; nothing when it has none."""
    manifest = read_manifest(run)
    notes = all_notes(manifest, read_points(run, manifest), Path(run))
    if not notes:
        return []
    return [f"<h2>Notes: {html.escape(Path(run).name)}</h2>"] + [
        f"<p class='note'>{html.escape(n)}</p>" for n in notes
    ]


def _manifest_rows(run: str | Path) -> list[tuple[str, str]]:
    m = read_manifest(run)
    host = m.get("host") or {}
    scen = m.get("scenario") or {}
    rows: list[tuple[str, str]] = [
        ("run", str(m.get("run_id"))),
        ("status", ": ".join(str(x) for x in (m.get("status"), m.get("status_message")) if x)),
        (
            "scenario",
            f"{scen.get('name')} ({m.get('scenario_file')}, sha256 {str(m.get('scenario_hash'))[:12]})",
        ),
        *([("description", str(scen["description"]))] if scen.get("description") else []),
        ("started / finished (UTC)", f"{m.get('started_utc')} / {m.get('finished_utc')}"),
        ("harness", f"{m.get('harness_version')} (git {m.get('git_sha')})"),
        ("declared hardware", _fields(scen.get("hardware"))),
        (
            "host",
            f"{host.get('cpu_model')}, {host.get('cpu_logical')} logical CPUs, "
            f"{(host.get('mem_total_bytes') or 0) / 2**30:.1f} GiB, {host.get('os')}",
        ),
        ("workload", _fields(scen.get("workload"))),
        ("load", _fields(scen.get("load"))),
        ("goodput SLO", slo_text(scen.get("slo") or {})),
    ]
    for e in m.get("engines") or []:
        model = e.get("model") or {}
        v = e.get("variant")
        rows.append((f"engine v{v}", _known(e.get("name"), f"({e.get('launcher')})", e.get("version"))))
        rows.append((f"engine v{v} command", engine_line(e)))
        sha, size = model.get("sha256"), model.get("size_bytes")
        rows.append(
            (
                f"engine v{v} model",
                _known(
                    model.get("name"),
                    model.get("source") and f"[{model['source']}]",
                    e.get("precision"),
                    sha and f"sha256 {str(sha)[:12]}",
                    size and f"size {size}",
                ),
            )
        )
    rows += _telemetry_rows(m.get("telemetry") or {})
    return rows


def _telemetry_rows(tel: dict[str, Any]) -> list[tuple[str, str]]:
    """The manifest's telemetry sources: those that recorded, those absent (with why), errors of the
    recorded ones.

    A source that could not run (no NVML library, no metrics endpoint) says why in `absent`, text; one
    that failed to start has an `error` from `start` and no file; one that ran without some of its parts
    (RAPL) names them in a mapping; a source that recorded and then failed once keeps its file."""
    absent: dict[str, str] = {}
    errors: dict[str, str] = {}
    for name, entry in sorted(tel.items()):
        entry = entry if isinstance(entry, dict) else {}
        why, error = entry.get("absent"), entry.get("error")
        if isinstance(why, str):
            absent[name] = why
        elif error and (str(error).startswith("start:") or not entry.get("file")):
            absent[name] = str(error)
        else:
            if isinstance(why, dict):
                absent.update({f"{name}.{part}": str(w) for part, w in why.items()})
            if error:
                errors[name] = str(error)
    recorded = [k for k in sorted(tel) if k not in absent]
    rows = [("telemetry", ", ".join(recorded) or "none recorded")]
    if absent:
        rows.append(("telemetry absent", "; ".join(f"{k}: {why}" for k, why in absent.items())))
    if errors:
        rows.append(("telemetry errors", "; ".join(f"{k}: {why}" for k, why in errors.items())))
    return rows


def _fields(value: Any, top: bool = True) -> str:
    """A scenario part as `key: value` pairs (`gpu: -, gpus: 1`), as the scenario file writes them:
    unset ones as `-`, nested parts in braces, lists as `[a, b]`, true/false."""
    if value is None:
        return "-"
    if isinstance(value, dict):
        inner = ", ".join(f"{k}: {_fields(v, False)}" for k, v in value.items())
        return inner if top else "{" + inner + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_fields(v, False) for v in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _known(*parts: Any) -> str:
    """The parts that are known, in order (a manifest leaves out what an engine could not say)."""
    return " ".join(str(p) for p in parts if p not in (None, "", "(None)")) or "-"


def _table(header: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


CSS = """body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}
table{border-collapse:collapse;font-size:13px;margin:8px 0 20px}td,th{border:1px solid #ccc;padding:3px 6px;
text-align:right}td:first-child,th:first-child{text-align:left}figure{margin:0 0 24px}img{max-width:100%;
border:1px solid #eee}.note{color:#8a5a00}code{font-size:12px}
.manifest td{text-align:left;font-family:monospace}"""


def write_html(
    runs: list[str | Path],
    points: pd.DataFrame,
    out_html: Path,
    price_usd_per_hour: dict[str, float] | None = None,
    price_origin: dict[str, str] | None = None,
    reruns: str = "newest",
) -> tuple[Path, list[Plot], list[str]]:
    """Write `out_html` (PNG files in `<name>-plots/` beside it); returns (path, plots, notes). `reruns`:
    what the plots show where several runs measured a point with the same settings (`compare.dedupe`)."""
    points = add_cost_columns(points, price_usd_per_hour or {})
    plots, notes = make_plots(points, out_html.parent / f"{out_html.stem}-plots", reruns)
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(_title(runs))}</title>"
        f"<style>{CSS}</style></head><body>",
        f"<h1>{html.escape(_title(runs))}</h1>",
        f"<p>Generated {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')} from "
        f"{len(runs)} run(s), {len(points)} point(s).</p>",
    ]
    for p in plots:
        data = base64.b64encode(p.path.read_bytes()).decode()
        parts.append(
            f"<figure><h2>{html.escape(p.title)}</h2><img alt='{html.escape(p.title)}' "
            f"src='data:image/png;base64,{data}'><figcaption>{html.escape(p.caption)}</figcaption></figure>"
        )
    parts += [f"<p class='note'>{html.escape(n)}</p>" for n in notes]
    for r in runs:
        with reading(r):
            parts += run_note_parts(r)
    shown = display_frame(points)
    if _has(points, "run_id") and points["run_id"].nunique() > 1:
        # every run's points, reruns included (the plots take the newest): which run each row is from
        taken = "the median over reruns" if reruns == "median" else "the newest of reruns"
        parts.append(f"<h2>Points of every run (the plots take {taken})</h2>")
        shown.insert(0, "run", [str(v) for v in points["run_id"]])
    else:
        parts.append("<h2>Points</h2>")
    # runs of different models or workloads side by side: each row says which (the plots' legends do)
    varied = [
        (col, head, "{}")
        for col, head in (("model", "model"), ("workload", "workload (in/out)"))
        if col in points.columns and points[col].nunique(dropna=False) > 1
    ]
    extra = [
        ("config", "config", "{}"),
        *varied,
        ("usd_per_1m_tokens", "$/1M tok", "usd"),
        ("pct_roofline", "% roofline", "{:.1f}"),
    ]
    for col, head, spec in extra:
        if _has(points, col):
            shown[head] = [fmt(v, spec) for v in points[col]]
    parts.append(_table(list(shown.columns), shown.astype(str).values.tolist()))
    if price_usd_per_hour:
        used = sorted(set(points["device"]) & set(price_usd_per_hour))
        rows = [[d, f"{price_usd_per_hour[d]:.4g}", (price_origin or {}).get(d, "")] for d in used]
        if rows:
            parts.append("<h2>Prices used</h2>" + _table(["device", "US$/device-hour", "source"], rows))
    for r in runs:
        with reading(r):
            parts += bench_parts(r)
    for r in runs:
        parts.append(f"<h2>Manifest: {html.escape(Path(r).name)}</h2>")
        with reading(r):
            manifest_rows = _manifest_rows(r)
        cells = "".join(
            f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in manifest_rows
        )
        parts.append(f"<table class='manifest'>{cells}</table>")
    parts.append("</body></html>")
    out_html.parent.mkdir(parents=True, exist_ok=True)
    write_text_whole(out_html, "\n".join(parts))
    return out_html, plots, notes


def bench_parts(run: str | Path) -> list[str]:
    """A run's llama-bench comparisons (`harness.report.bench_frames`) as HTML: a heading, the table and
    its notes each."""
    out = []
    manifest = read_manifest(run)
    for title, frame, notes in bench_frames(manifest, read_points(run, manifest)):
        out.append(f"<h2>{html.escape(Path(run).name)}: {html.escape(title)}</h2>")
        if not frame.empty:
            out.append(_table(list(frame.columns), frame.astype(str).values.tolist()))
        out += [f"<p class='note'>{html.escape(n)}</p>" for n in notes]
    return out


def _title(runs: list[str | Path]) -> str:
    names = [Path(r).name for r in runs]
    return f"Benchmark report: {names[0]}" if len(names) == 1 else f"Benchmark report: {len(names)} runs"
