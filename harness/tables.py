"""Terminal (rich) and Markdown tables for the cost, roofline, claims and recommend commands."""

from __future__ import annotations

from typing import Any

import pandas as pd
from rich.table import Table
from rich.text import Text

from harness.cost import HEADERS
from harness.formatting import fmt, md_row, md_text, significant


def cost_table(df: pd.DataFrame, utilization: float) -> Table:
    t = Table(title=f"cost per 1M output tokens (utilization {utilization:g})")
    for c in df.columns:
        t.add_column(HEADERS.get(c, c), justify="right" if pd.api.types.is_numeric_dtype(df[c]) else "left")
    for _, r in df.iterrows():
        t.add_row(  # labels: not markup; money in cents at least; tok/s with one decimal, as report shows it
            *[Text(v) if isinstance(v, str) else fmt(v, _cost_spec(str(c))) for c, v in r.items()]
        )
    return t


def _cost_spec(column: str) -> str:
    if column == "slo_attainment":  # as the points table shows it
        return "{:.1%}"
    return "usd" if "usd" in column else "{:.1f}" if column.endswith("tok_s") else "num"


def cost_line(row: dict[str, Any]) -> list[str]:
    """`harness cost` with typed numbers: the result and the formula with the numbers filled in."""
    lines = [
        f"${fmt(row['usd_per_1m_tokens'], 'usd')} per 1M output tokens "
        f"(${row['usd_per_token']:.3g} per token) "
        f"= ${row['usd_per_device_hour']:g}/h x {row['devices']} / ({row['output_tok_s']:g} tok/s x 3600 x "
        f"{row['utilization']:g}) x 1e6"
    ]
    if "energy_usd_per_1m_tokens" in row:
        e = row["energy_usd_per_1m_tokens"]
        if e is None or e != e:  # NaN: no J/token to price
            lines.append(
                "energy: not priced: --usd-per-kwh needs --j-per-output-token (J per output token, e.g. "
                "from a run)"
            )
        else:
            total = fmt(row["total_usd_per_1m_tokens"], "usd")
            lines.append(
                f"energy: ${fmt(e, 'usd')} per 1M output tokens = {row['j_per_output_token']:g} J/token x "
                f"${row['usd_per_kwh']:g}/kWh / 3.6e6 x 1e6; total ${total}"
            )
    return lines


ROOFLINE_HEADS = ("batch", "tok/s (all)", "tok/s per seq", "step ms", "bound", "weights GB/dev", "KV GB/dev")


def roofline_table(rows: list[dict[str, Any]], title: str) -> Table:
    t = Table(title=title)
    for h in (*ROOFLINE_HEADS, "fits", "max batch"):
        t.add_column(h, justify="right")
    for r in rows:
        t.add_row(
            str(r["batch"]),
            fmt(r["tok_s"], "{:.1f}"),
            fmt(r["tok_s_per_sequence"], "{:.1f}"),
            # three significant digits: a tiny model's step (0.050, 0.051, 0.053 ms) and bytes read 0.00
            significant(r["t_step_ms"], 3, 2),
            r["bound"],
            fmt(r["weights_gb_per_device"], "sig3"),
            fmt(r["kv_gb_per_device"], "sig3"),
            {True: "yes", False: "NO", None: "?"}[r["fits"]],
            "-" if r["max_batch"] is None else str(r["max_batch"]),
        )
    return t


def claims_table(checks: list[Any], n_runs: int) -> Table:
    t = Table(title=f"claims ({len(checks)}), checked against {n_runs} run(s)", show_lines=True)
    for h, w in (("claim", 34), ("measured", 22), ("roofline check", 60), ("verdict", 18)):
        t.add_column(h, max_width=w, overflow="fold")
    for ch in checks:
        cells = (f"[{ch.claim.source}] {claim_text(ch.claim)}", ch.measured, ch.roofline, ch.verdict)
        t.add_row(*(Text(x) for x in cells))  # Text: "[source]" is not rich markup
    return t


def claims_markdown(checks: list[Any]) -> str:
    lines = [md_row(["source", "claim", "measured", "roofline check", "verdict"]), "|---|---|---|---|---|"]
    lines += [
        md_row([c.claim.source, claim_text(c.claim), c.measured, c.roofline, c.verdict]) for c in checks
    ]
    return "\n".join(lines) + "\n"


def claim_text(claim: Any) -> str:
    """A claim as published, with the catalog's note on how it is read (`checked with the Llama-3.1-70B
    shape`, what the source left unsaid) in brackets."""
    return claim.text + (f" ({claim.note})" if claim.note else "")


RECOMMEND_HEADS = (
    "rank",
    "hardware",
    "precision",
    "tok/s",
    "TTFT ms",
    "TPOT ms",
    "$/h (all)",
    "$/1M tok",
    "SLO",
    "basis",
)


def recommend_rows(df: pd.DataFrame, top: int) -> list[list[str]]:
    """The cells of the first `top` ranked options, as the table shows them (RECOMMEND_HEADS)."""
    return [
        [
            str(rank),
            f"{r['devices']}x {r['device']}",
            str(r["precision"]),
            fmt(r["output_tok_s"], "{:.0f}"),
            fmt(r["ttft_s"], "ms"),
            fmt(r["tpot_s"], "ms"),
            fmt(r["usd_per_device_hour"] * r["devices"], "{:.2f}"),
            fmt(r["usd_per_1m_tokens"], "usd"),
            "yes" if r["meets_slo"] else f"no: {r['why_not']}",
            str(r["basis"]),
        ]
        for rank, (_, r) in enumerate(df.head(top).iterrows(), start=1)
    ]


def recommend_table(df: pd.DataFrame, title: str, top: int) -> Table:
    t = Table(title=title)
    for h in RECOMMEND_HEADS:
        t.add_column(h, justify="left" if h in ("hardware", "precision", "SLO", "basis") else "right")
    for row in recommend_rows(df, top):
        t.add_row(*(Text(x) for x in row))  # Text: a basis or reason is not rich markup
    return t


def recommend_markdown(df: pd.DataFrame, title: str, top: int, notes: list[str]) -> str:
    """The ranking as `harness recommend` prints it: title, table of the first `top`, notes."""
    lines = [f"# {md_text(title)}", "", md_row(RECOMMEND_HEADS), "|" + "---|" * len(RECOMMEND_HEADS)]
    lines += [md_row(row) for row in recommend_rows(df, top)]
    lines += ["", *(f"- {md_text(n)}" for n in notes)] if notes else []
    return "\n".join(lines) + "\n"
