"""The engine's own view of a point (its /metrics deltas over the window) beside the client's
(`server_comparison`), the warnings where they disagree (`server_flags`), and how a points row's number
columns read back (`row_number`, `row_count`)."""

from __future__ import annotations

import math
from typing import Any

# vLLM's own histograms (Prometheus names after `harness.telemetry.prometheus` cleaning) per client metric,
# the first one exported counting: the inter-token histogram was `time_per_output_token_seconds` up to
# vLLM 0.10 (renamed in 0.11, which exports both, and removed in 0.13)
SERVER_HISTOGRAMS: dict[str, tuple[str, ...]] = {
    "ttft_s": ("vllm_time_to_first_token_seconds",),
    "itl_s": ("vllm_inter_token_latency_seconds", "vllm_time_per_output_token_seconds"),
    "tpot_s": ("vllm_request_time_per_output_token_seconds",),
    "e2e_s": ("vllm_e2e_request_latency_seconds",),
}
# engines' token counters per client count, each a sum of counters: vLLM's; llama.cpp's, whose prompt
# counter leaves out the tokens it took from its cache, counted beside it (a build without that counter is
# not compared)
SERVER_COUNTERS = {
    "output_tokens": (("vllm_generation_tokens_total",), ("llamacpp_tokens_predicted_total",)),
    "input_tokens": (
        ("vllm_prompt_tokens_total",),
        ("llamacpp_prompt_tokens_total", "llamacpp_prompt_tokens_cached_total"),
    ),
}
SERVER_DISAGREEMENT = 0.05
# and by at least this much: the client's TTFT holds the HTTP request and the first SSE event, a few ms
# over loopback that are +20 % of a 10 ms TTFT on every point of a healthy GPU run
SERVER_DISAGREEMENT_MIN_S = {"ttft_s": 0.005, "itl_s": 0.001}


def server_comparison(row: dict[str, Any], unmeasured_in_window: int = 0) -> dict[str, Any]:
    """The engine's own view of a point next to the client's, from /metrics deltas over its window.

    server mean = Δ histogram _sum / Δ _count over the window; rel diff = (client mean − server mean) /
    server mean (positive: the client saw more, e.g. HTTP and detokenization time). Token counters are
    compared exactly: `server_<tokens>` = Δ counter, `server_<tokens>_diff` = client − server, except when
    `unmeasured_in_window` requests (warmup or cooldown) were at the engine during the window: it counted
    their tokens and latencies too, so no diff and no rel diff (the engine's means are still given); the
    same when measured requests failed (cut, timed out, cancelled by Ctrl-C): the engine counted what it
    generated for them, the client's totals cover the successful ones only.
    Columns are absent when the engine exports no such metric.
    """
    out: dict[str, Any] = {}
    judged = not unmeasured_in_window and not row.get("errors")
    for key, stems in SERVER_HISTOGRAMS.items():
        stem = next((st for st in stems if row.get(f"server_{st}_count_delta") is not None), stems[0])
        total, count = row.get(f"server_{stem}_sum_delta"), row.get(f"server_{stem}_count_delta")
        if total is None or not count:
            continue
        server = total / count
        out[f"server_{key}_mean"] = server
        client = client_mean(row, key)
        # with unmeasured requests in the window the engine's mean is over other requests too: not judged
        if client is not None and not math.isnan(client) and server > 0 and judged:
            out[f"server_{key}_rel_diff"] = (client - server) / server
    for key, sums in SERVER_COUNTERS.items():
        n = next((v for stems in sums if (v := counter_sum(row, stems)) is not None), None)
        if n is not None:
            out[f"server_{key}"] = int(n)
            if row.get(key) is not None and judged:
                out[f"server_{key}_diff"] = int(row[key]) - int(n)
    return out


def counter_sum(row: dict[str, Any], stems: tuple[str, ...]) -> float | None:
    """The sum of the counters' deltas over the window; None unless the engine exports each of them."""
    deltas = [row.get(f"server_{st}_delta") for st in stems]
    return None if any(d is None for d in deltas) else float(sum(float(d) for d in deltas if d is not None))


def client_mean(row: dict[str, Any], key: str) -> float | None:
    """The client's mean of `key` (`ttft_s`) to set beside the engine's: timed from the send where an
    open-loop point has that column (its own TTFT and E2E count from the schedule, so they hold the time
    a request waited for a `max_concurrency` slot, which the engine never saw)."""
    sent = row_number(row, f"{key[:-2]}_from_send_s_mean")
    return sent if sent is not None else row_number(row, f"{key}_mean")


def row_number(row: dict[str, Any], key: str) -> float | None:
    """A number column as a float (None when absent or NaN, as read back from a points table)."""
    v = row.get(key)
    return float(v) if isinstance(v, int | float) and not (isinstance(v, float) and math.isnan(v)) else None


def row_count(row: dict[str, Any], key: str) -> int:
    """A count column as an int (0 when absent or NaN)."""
    v = row_number(row, key)
    return 0 if v is None else int(v)


def server_flags(row: dict[str, Any]) -> list[str]:
    """The client's figures against the engine's own."""
    out = []
    for key in ("ttft_s", "itl_s"):
        d = row_number(row, f"server_{key}_rel_diff")
        mean, server = client_mean(row, key), row_number(row, f"server_{key}_mean")
        client = math.nan if mean is None else mean  # 0.0 is a mean (streams read in one piece)
        gap_s = abs(client - (math.nan if server is None else server))
        if d is not None and abs(d) > SERVER_DISAGREEMENT and not gap_s <= SERVER_DISAGREEMENT_MIN_S[key]:
            out.append(
                f"client mean {key[:-2].upper()} differs from the engine's own by {d:+.1%} "
                f"(client {client * 1e3:.2f} ms, engine {(server or math.nan) * 1e3:.2f} ms)"
            )
    for key in SERVER_COUNTERS:
        if d := row_count(row, f"server_{key}_diff"):
            msg = f"{key.replace('_', ' ')}: client counted {d:+d} vs the engine's counter"
            # only where every count is the engine's own (`usage`): one made by the client (chunks,
            # tokenizer) may be short of the engine's by itself
            exact = row.get("output_tokens_from") in ("usage", "max_tokens", "max_tokens,usage")
            if key == "output_tokens" and d < 0 and exact:
                # no request of this run's was left out of the comparison (`server_comparison`): the
                # engine generated tokens no request of the point received
                msg += (
                    ": the engine generated more than the point's requests received, as it does when "
                    "another client uses it at the same time (then no number of this point is its load's "
                    "alone)"
                )
            out.append(msg)
    return out
