"""Benchmark metrics as pure functions of `RequestRecord`s.

Definitions (all times from integer `perf_counter_ns` stamps, converted to seconds):

* TTFT   = first content chunk - send time (closed loop) or - scheduled time (open loop, so
           queueing inside the harness or the server counts against the engine, as a user sees it)
* E2E    = done - the same start as TTFT
* TPOT   = (E2E - TTFT) / (output_tokens - 1), per request; undefined for one-token outputs
* ITL    = gaps between consecutive content chunks, pooled over requests
* window = last done - first send over the measured (non-warmup) requests of a point, failed ones
           included (as wall time in vLLM's benchmark: a request that fails late stretches it);
           rates are NaN for a point where no request succeeded
* output tok/s = sum of output tokens of successful requests / window
* goodput      = successful requests meeting every SLO / window (req/s); goodput tok/s counts
                 the output tokens of those requests only
* send lag     = sent - scheduled - connect_s, per request: how late the harness sent it (open loop),
                 the time it spent opening a new connection left out (a request re-sent after a closed
                 keep-alive connection counts its first try in it)
* offered rate = (measured requests - 1) / (last - first scheduled time) (open loop): the rate the
                 arrival draw really offered, which a short Poisson or gamma schedule can put well off
                 the point's `rate_rps`

Tokens are counted from the server's `usage`; a chunk is not a token. A stream without usage (counted
before these functions see it, `harness.point`) ran to max_tokens if it ended for `length`, else is
re-tokenized (engines that never send usage) or counted one token per content chunk, which is flagged
(`chunk_counted`). Two cross-checks are reported beside it: the tokenizer count of the streamed text
and the number of content chunks; a request whose count differs from `usage` by more than 2 % is
flagged. Input tokens mean what the server reports as `usage.prompt_tokens` (what the model prefills:
special tokens such as BOS and any chat template included); the workload aims at exactly that number.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from harness.records import RequestRecord

NS_PER_S = 1_000_000_000
PERCENTILES = (50, 90, 99)


def _start_ns(r: RequestRecord, open_loop: bool) -> int:
    return r.scheduled_ns if open_loop else r.sent_ns


def ttft_s(r: RequestRecord, open_loop: bool = False) -> float | None:
    """TTFT = first_token_ns - (scheduled_ns if open loop else sent_ns), in seconds."""
    if r.first_token_ns is None:
        return None
    return (r.first_token_ns - _start_ns(r, open_loop)) / NS_PER_S


def e2e_s(r: RequestRecord, open_loop: bool = False) -> float | None:
    """E2E = done_ns - (scheduled_ns if open loop else sent_ns), in seconds."""
    if r.done_ns is None:
        return None
    return (r.done_ns - _start_ns(r, open_loop)) / NS_PER_S


def tpot_s(r: RequestRecord) -> float | None:
    """TPOT = (done_ns - first_token_ns) / (output_tokens - 1); None if fewer than 2 tokens."""
    if r.first_token_ns is None or r.done_ns is None or not r.output_tokens or r.output_tokens < 2:
        return None
    return (r.done_ns - r.first_token_ns) / NS_PER_S / (r.output_tokens - 1)


def itl_s(r: RequestRecord) -> list[float]:
    """ITL = [chunk_ns[i+1] - chunk_ns[i]] for the request's content chunks, in seconds."""
    c = r.chunk_ns
    return [(c[i + 1] - c[i]) / NS_PER_S for i in range(len(c) - 1)]


def itl_array_s(r: RequestRecord) -> np.ndarray:
    """`itl_s` as a numpy array (the same values)."""
    return np.diff(np.asarray(r.chunk_ns, dtype=np.int64)) / NS_PER_S


def _joined(arrays: Iterable[np.ndarray]) -> np.ndarray:
    parts = list(arrays)
    return np.concatenate(parts) if parts else np.empty(0)


def decode_tok_s(r: RequestRecord) -> float | None:
    """Per-request decode rate = (output_tokens - 1) / (done_ns - first_token_ns) = 1 / TPOT."""
    t = tpot_s(r)
    return None if t is None or t <= 0 else 1.0 / t


def send_lag_s(r: RequestRecord) -> float | None:
    """Send lag = sent_ns - scheduled_ns - connect_s, in seconds: how late the client itself sent the
    request, the time it spent opening a new connection to the server left out (`connect_s`, said apart;
    a request re-sent after a keep-alive connection was found closed counts its first try in the lag).
    None if the request was never sent."""
    if not r.sent_ns:
        return None
    return (r.sent_ns - r.scheduled_ns) / NS_PER_S - (r.connect_s or 0.0)


def prompt_cache_hit(r: RequestRecord) -> bool:
    """The engine took more of the prompt from its cache than the few tokens new prompts share (BOS, a
    template's start, a digit of the random head): over 4 tokens and over 5 % of the prompt."""
    cached = r.cached_prompt_tokens or 0
    return cached > max(4, 0.05 * (r.prompt_tokens or 0))


def off_asked(r: RequestRecord, rel: float = 0.05) -> bool:
    """A prompt planned without an exact count (no tokenizer) whose reported length is more than 5 % (and
    more than 1 token) off the length the workload asked for."""
    a, got = r.asked_input_tokens, r.prompt_tokens
    if r.expected_input_tokens is not None or a is None or got is None:
        return False
    return abs(got - a) > max(1, rel * a)


def side_of_asked(r: RequestRecord, rel: float = 0.01) -> int:
    """+1 (-1) for a prompt planned without an exact count (no tokenizer) whose reported length is more
    than 1 % above (below) the length the workload asked for; 0 otherwise. A point whose prompts all lie
    on one side has lengths off the plan by a bias, however small each prompt's miss."""
    a, got = r.asked_input_tokens, r.prompt_tokens
    if r.expected_input_tokens is not None or a is None or got is None or abs(got - a) <= rel * a:
        return 0
    return 1 if got > a else -1


def over_asked(r: RequestRecord) -> bool:
    """A prompt fitted with a tokenizer that came out longer than the workload asked: its fixed start
    (the number that opens it, a shared prefix) alone is longer than the length asked."""
    a, planned = r.asked_input_tokens, r.expected_input_tokens
    return a is not None and planned is not None and planned > a


def disagrees(a: int | None, b: int | None, rel: float = 0.02) -> bool:
    """True if both counts are known and |a - b| > rel * max(a, b) (2 % by default)."""
    if a is None or b is None:
        return False
    return abs(a - b) > rel * max(a, b, 1)


def window_s(records: Sequence[RequestRecord]) -> float:
    """Measured window = max(done_ns) - min(sent_ns) over the records, in seconds (0 if empty)."""
    sent = [r.sent_ns for r in records if r.sent_ns]
    done = [r.done_ns for r in records if r.done_ns is not None]
    if not sent or not done:
        return 0.0
    return max(0, max(done) - min(sent)) / NS_PER_S


def offered_req_s(records: Sequence[RequestRecord]) -> float:
    """Requests per second the schedule offered: (n - 1) / (last - first scheduled time) over the
    records, NaN for fewer than two or a zero span."""
    return _rate_per_s([r.scheduled_ns for r in records])


def sent_req_s(records: Sequence[RequestRecord]) -> float:
    """Requests per second that went out: (n - 1) / (last - first send) over the records that were sent,
    NaN for fewer than two or a zero span. Below `offered_req_s` where requests waited for a
    `max_concurrency` slot: what the server got."""
    return _rate_per_s(
        [r.sent_ns for r in records if r.sent_ns]
    )  # 0: never sent (failed to connect, cancelled)


def _rate_per_s(t_ns: list[int]) -> float:
    """(n - 1) / (last - first) of stamps in ns, per second; NaN for fewer than two or a zero span."""
    if len(t_ns) < 2 or max(t_ns) == min(t_ns):
        return math.nan
    return (len(t_ns) - 1) / ((max(t_ns) - min(t_ns)) / NS_PER_S)


def arrivals_tail_s(records: Sequence[RequestRecord], t0_ns: int, t1_ns: int) -> float:
    """Seconds at the end of the window [t0, t1] after the last request of any role (measured,
    cooldown) was sent: the requests in flight then drained with no new ones coming, and the load fell
    off. 0 where one was sent at its end; the whole window where none was sent inside it."""
    sent = [r.sent_ns for r in records if r.sent_ns and t0_ns <= r.sent_ns <= t1_ns]
    return max(0, t1_ns - (max(sent) if sent else t0_ns)) / NS_PER_S


def failed_tail_s(records: Sequence[RequestRecord]) -> float:
    """How long after the last successful request the last failed one ended, in seconds (0 when none
    did): the part of the window that only failures filled."""
    ok = [r.done_ns for r in records if r.ok and r.done_ns is not None]
    failed = [r.done_ns for r in records if not r.ok and r.done_ns is not None]
    if not ok or not failed:
        return 0.0
    return max(0, max(failed) - max(ok)) / NS_PER_S


def stats(values: Iterable[float | None], prefix: str) -> dict[str, float]:
    """mean, p50, p90, p99 (linear interpolation) of the non-None values, as `{prefix}_{stat}`."""
    if isinstance(values, np.ndarray):  # numbers already: no None to leave out, no copy to make
        v = values.astype(float, copy=False)
    else:
        v = np.array([x for x in values if x is not None], dtype=float)
    out: dict[str, float] = {}
    if v.size == 0:
        out[f"{prefix}_mean"] = math.nan
        for p in PERCENTILES:
            out[f"{prefix}_p{p}"] = math.nan
        return out
    out[f"{prefix}_mean"] = float(v.mean())
    for p in PERCENTILES:
        out[f"{prefix}_p{p}"] = float(np.percentile(v, p))
    return out


def meets_slo(
    r: RequestRecord,
    ttft_max_s: float | None,
    tpot_max_s: float | None,
    e2e_max_s: float | None,
    open_loop: bool = False,
) -> bool:
    """True if the request succeeded and every given SLO holds (TTFT <= max, TPOT <= max, E2E <= max)."""
    if not r.ok:
        return False
    checks = (
        ("ttft", ttft_max_s, ttft_s(r, open_loop)),
        ("tpot", tpot_max_s, tpot_s(r)),
        ("e2e", e2e_max_s, e2e_s(r, open_loop)),
    )
    for name, limit, value in checks:
        if limit is None:
            continue
        if value is None and name == "tpot" and r.output_tokens is not None:
            continue  # TPOT of a one-token output is undefined and cannot violate the SLO
        # (an unknown token count leaves TPOT unknown: the request is not counted as meeting it)
        if value is None or value > limit:
            return False
    return True


# how much of the first failure's message a points row keeps
FIRST_ERROR_CHARS = 200


def summarize(
    records: Sequence[RequestRecord],
    open_loop: bool = False,
    slo_ttft_s: float | None = None,
    slo_tpot_s: float | None = None,
    slo_e2e_s: float | None = None,
) -> dict[str, Any]:
    """All point-level metrics of the measured (non-warmup) records; see the module docstring."""
    measured = [r for r in records if not r.warmup]
    ok = [r for r in measured if r.ok]
    good = [r for r in ok if meets_slo(r, slo_ttft_s, slo_tpot_s, slo_e2e_s, open_loop)]
    row = _rate_columns(measured, ok, good)
    row.update(_count_columns(ok))
    row.update(_latency_columns(measured, ok, open_loop))
    sources = sorted({r.output_tokens_source for r in ok if r.output_tokens_source})
    row["output_tokens_from"] = ",".join(sources)
    kinds = Counter(r.error_kind for r in measured if r.error_kind)
    row["error_kinds"] = ",".join(f"{k}:{n}" for k, n in sorted(kinds.items()))
    # what the first failure said (a prompt past the engine's context: its HTTP 400's text), for the notes
    first = min((r for r in measured if r.error_kind), key=lambda r: r.done_ns or 0, default=None)
    said = " ".join((first.error or first.error_kind or "").split()) if first else ""  # one line
    row["first_error"] = said[:FIRST_ERROR_CHARS]
    return row


def _rate_columns(
    measured: list[RequestRecord], ok: list[RequestRecord], good: list[RequestRecord]
) -> dict[str, Any]:
    """Requests, tokens, and their rates over the point's window (goodput: the requests that met the SLO)."""
    win = window_s(measured)
    out_tokens = sum(r.output_tokens or 0 for r in ok)
    in_tokens = sum(r.prompt_tokens or 0 for r in ok)
    missing_prompt = sum(1 for r in ok if r.prompt_tokens is None)

    def per_s(n: float) -> float:
        return n / win if ok and win > 0 else math.nan  # no request succeeded: no rate was measured

    return {
        "requests": len(measured),
        "ok": len(ok),
        "errors": len(measured) - len(ok),
        "window_s": win,
        "failed_tail_s": failed_tail_s(measured),
        "input_tokens": in_tokens,
        "output_tokens": out_tokens,
        "output_tok_s": per_s(out_tokens),
        # prompt tokens unknown (no usage and no tokenizer) for some: a total would pass output for it
        "total_tok_s": per_s(in_tokens + out_tokens) if not missing_prompt else math.nan,
        "missing_prompt_tokens": missing_prompt,
        "req_s": per_s(len(ok)),
        "goodput_req_s": per_s(len(good)),
        "slo_attainment": len(good) / len(measured) if measured else math.nan,
        "goodput_tok_s": per_s(sum(r.output_tokens or 0 for r in good)),
    }


def _count_columns(ok: list[RequestRecord]) -> dict[str, Any]:
    """How the successful requests' tokens were counted, and how many disagree with what was asked."""

    def count(test: Callable[[RequestRecord], bool]) -> int:
        return sum(1 for r in ok if test(r))

    # output tokens against those asked for, where both are known
    off = [
        r.output_tokens - r.expected_output_tokens
        for r in ok
        if r.expected_output_tokens is not None and r.output_tokens is not None
    ]
    return {
        "missing_usage": count(lambda r: r.output_tokens is None),
        "chunk_counted": count(lambda r: r.output_tokens_source == "chunks"),
        "output_chunks": sum(len(r.chunk_ns) for r in ok),
        "output_text_tokens": _sum_known(r.output_text_tokens for r in ok),
        "chunk_token_mismatch": count(lambda r: disagrees(len(r.chunk_ns), r.output_tokens)),
        "one_read_streams": count(one_read),
        "text_token_mismatch": count(lambda r: disagrees(r.output_text_tokens, r.output_tokens)),
        "short_outputs": sum(1 for d in off if d < 0),
        # of those, the ones a length limit stopped (the engine's context filled), not an end of sequence
        "short_at_limit": count(
            lambda r: (
                r.finish_reason == "length"
                and r.output_tokens_source == "usage"  # the engine's own count, not the client's estimate
                and r.output_tokens is not None
                and r.expected_output_tokens is not None
                and r.output_tokens < r.expected_output_tokens
            )
        ),
        "long_outputs": sum(1 for d in off if d > 0),
        "prompts_off_asked": count(off_asked),
        "prompts_over_asked": count(over_asked),
        "prompts_above_asked": count(lambda r: side_of_asked(r) > 0),
        "prompts_below_asked": count(lambda r: side_of_asked(r) < 0),
        "cached_prompt_tokens": _sum_known(r.cached_prompt_tokens for r in ok),
        # usage counts reasoning the stream did not carry (OpenAI's reasoning models)
        "hidden_reasoning": count(lambda r: bool(r.reasoning_tokens) and not r.reasoning_streamed),
        "prompt_cache_hits": count(prompt_cache_hit),
        "prompt_token_mismatch": count(
            lambda r: (
                r.expected_input_tokens is not None
                and r.prompt_tokens is not None
                and r.prompt_tokens != r.expected_input_tokens
            )
        ),
    }


def _latency_columns(
    measured: list[RequestRecord], ok: list[RequestRecord], open_loop: bool
) -> dict[str, Any]:
    """Send lag, TTFT, TPOT, ITL and E2E statistics, and the decode rates the client and llama.cpp saw."""
    row = stats((send_lag_s(r) for r in measured), "send_lag_s")
    # requests that opened a connection first, and the longest such opening (round trips over a network)
    row["new_connections"] = sum(1 for r in measured if r.connect_s is not None)
    row["connect_s_max"] = max((r.connect_s for r in measured if r.connect_s is not None), default=math.nan)
    row.update(stats((ttft_s(r, open_loop) for r in ok), "ttft_s"))
    row.update(stats((tpot_s(r) for r in ok), "tpot_s"))
    # itl_s of every request, as arrays: a point's gaps are its output tokens, millions of them (as Python
    # floats in lists they took 47 bytes each, and more than the records did)
    per_request = [(r, itl_array_s(r)) for r in ok]
    row.update(stats(_joined(gaps for _, gaps in per_request), "itl_s"))
    # chunks that came in one read share a stamp: their gap is the client's delivery, not the engine's pace
    # (streams that came whole in one read are `one_read_streams`, said apart)
    spread = _joined(gaps for r, gaps in per_request if not one_read(r))
    row["itl_zero_frac"] = float(np.count_nonzero(spread == 0)) / spread.size if spread.size else math.nan
    row.update(stats((e2e_s(r, open_loop) for r in ok), "e2e_s"))
    if open_loop:
        row["offered_req_s"] = offered_req_s(measured)
        row["sent_req_s"] = sent_req_s(measured)
        # from the send, as the engine times a request: without a wait for a `max_concurrency` slot
        row["ttft_from_send_s_mean"] = _mean(ttft_s(r) for r in ok)
        row["e2e_from_send_s_mean"] = _mean(e2e_s(r) for r in ok)
    row["decode_tok_s_mean"] = _mean(decode_tok_s(r) for r in ok)
    # llama.cpp's own timings of each request (the engine inside the server, without HTTP or streaming)
    timed = [r.server_timings for r in ok if r.server_timings]
    row["server_decode_tok_s_mean"] = _mean(t.get("predicted_per_second") for t in timed)
    row["server_prefill_tok_s_mean"] = _mean(t.get("prompt_per_second") for t in timed)
    return row


def _mean(values: Iterable[float | None]) -> float:
    """Mean of the values that are not None (`stats`' mean); NaN with none."""
    v = np.fromiter((x for x in values if x is not None), dtype=float)
    return float(v.mean()) if v.size else math.nan


def one_read(r: RequestRecord) -> bool:
    """Every content chunk of a stream of 3 or more arrived in one read (all stamps equal): its TPOT and
    ITL are 0, which says the engine or the client held the stream back, not that decoding was free."""
    return len(r.chunk_ns) >= 3 and r.chunk_ns[0] == r.chunk_ns[-1]


def _sum_known(values: Iterable[int | None]) -> int | None:
    """Sum of the values, or None if any is unknown (a partial sum would mislead)."""
    total = 0
    for v in values:
        if v is None:
            return None
        total += v
    return total
