"""What a point's row says about how far its numbers can be trusted, as pure functions of the row.

`flags` turns the row into the warnings the run prints and the report repeats: lengths off the plan,
token counts the engine disagrees with (`server_view`), a short or failed-heavy window, a busy host, a
lagging client, a KV cache too small for the concurrency, a shared prefix the engine did not reuse.
`unmade_checks` names the checks a row had no data for. The limits each warning uses are the constants
below.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from harness.server_view import row_count, row_number, server_flags

ARRIVALS_TAIL_SHARE = 0.1  # open loop: more of the window than this without arrivals is flagged
SENT_RATE_SHORT = 0.1  # requests that went out this much slower than offered waited for slots
SHORT_ENERGY_WINDOW_S = 1.0  # below this the energy counter's update period makes J/token noisy
STEAL_LIMIT_PCT = 5.0  # of the host's CPU time taken by the hypervisor, beyond which a point is warned about
# cores other processes kept busy (the host's busy cores less the engine's and the client's), beyond
# which a point is warned about where the host's CPUs were nearly all busy: on a shared machine a CPU
# engine or offload then had less CPU than alone (on a large host with idle cores, others cost nothing)
OTHER_LOAD_LIMIT_CORES = 0.5
HOST_BUSY_LIMIT_PCT = 90.0
CLIENT_LAG_LIMIT_S = 0.005  # send or event-loop lateness (p99) beyond which the client is said to lag
ITL_ZERO_LIMIT = 0.1  # share of zero gaps between chunks beyond which ITL is said to be the delivery's
# of the window that only failed requests filled, beyond which a point is warned about
FAILED_TAIL_SHARE = 0.1
# of a point's prompts made without a tokenizer, the share on one side of the length asked that is a bias
ONE_SIDED_SHARE = 0.9
# of a shared prefix, the cached prompt tokens a request (mean) below which the prefix is said not reused
PREFIX_REUSED_SHARE = 0.5
# by how much (a share, at least) the rate an open-loop schedule offered may miss rate_rps unwarned
OFFERED_RATE_OFF = 0.1


def kv_cache_short(row: dict[str, Any]) -> tuple[float, float, int] | None:
    """(tokens the KV cache holds, mean input + output tokens of a request, concurrency) of a closed-loop
    point whose concurrent requests do not all fit in the engine's KV cache at their full length; None
    when they do or it is not known."""
    held, n, conc = row_number(row, "kv_cache_tokens"), row_count(row, "ok"), row_number(row, "concurrency")
    if row.get("mode") != "closed" or held is None or not n or not conc:
        return None
    each = ((row_number(row, "input_tokens") or 0) + (row_number(row, "output_tokens") or 0)) / n
    if each <= 0 or conc * each <= held:
        return None
    return held, each, int(conc)


def _output_flags(row: dict[str, Any], n: int) -> list[str]:
    """Output and prompt lengths against the plan and the engine's usage."""
    out = []
    at_limit = row_count(row, "short_at_limit") or 0
    if at_limit:
        out.append(
            f"{at_limit}/{n} requests stopped short of the tokens asked at a length limit (finish_reason "
            "length: the engine's context filled?): TPOT and tok/s mix lengths"
        )
    if short := (row_count(row, "short_outputs") or 0) - at_limit:
        why = "EOS not ignored?" if row.get("ignore_eos", True) is not False else "ignore_eos is off"
        out.append(
            f"{short}/{n} requests returned fewer tokens than asked ({why}): TPOT and tok/s mix lengths"
        )
    if long := row_count(row, "long_outputs"):
        out.append(f"{long}/{n} requests returned more tokens than asked (the length asked not honoured?)")
    if k := row_count(row, "hidden_reasoning"):
        out.append(
            f"{k}/{n} requests: usage counts reasoning tokens the stream did not carry (hidden reasoning): "
            "TTFT includes that reasoning and TPOT divides by its tokens; read ITL, E2E and tok/s"
        )
    if k := row_count(row, "chunk_token_mismatch"):
        out.append(f"{k}/{n} requests: content chunks differ from usage by > 2 %")
    if k := row_count(row, "text_token_mismatch"):
        out.append(f"{k}/{n} requests: tokenizer count of the streamed text differs from usage by > 2 %")
    if k := row_count(row, "prompt_token_mismatch"):
        out.append(f"{k}/{n} requests: prompt tokens differ from the plan")
    if k := row_count(row, "prompts_off_asked"):
        out.append(
            f"{k}/{n} prompts came out more than 5 % off the asked length: without a tokenizer prompt "
            "lengths are approximate (set workload.tokenizer, or use an endpoint that serves /tokenize)"
        )
    if biased := _prompt_bias(row, n):
        out.append(biased)
    if (k := row_count(row, "prompt_cache_hits")) and not row_count(row, "shared_prefix_tokens"):
        total = row_number(row, "cached_prompt_tokens")
        some = f"{total:.0f} prompt tokens in all" if total is not None else "prompt tokens"
        out.append(
            f"{k}/{n} requests had {some} served from the engine's prompt cache: TTFT and prefill read "
            "faster than for new prompts"
        )
    if prefilled := _prefix_not_reused(row, n):
        out.append(prefilled)
    if k := row_count(row, "prompts_over_asked"):
        out.append(
            f"{k}/{n} prompts are longer than the workload asked: their fixed start (the number that opens "
            "them, and the shared prefix) alone is longer; ask for more input tokens or a shorter prefix"
        )
    return out


def _prompt_bias(row: dict[str, Any], n: int) -> str | None:
    """Prompts made without a tokenizer that nearly all (`ONE_SIDED_SHARE`) came out longer, or shorter,
    than asked: a bias of the estimate (BOS, a chat template, a number of several tokens), which the 5 %
    check of each prompt alone lets through."""
    for col, side in (("prompts_above_asked", "longer"), ("prompts_below_asked", "shorter")):
        k = row_count(row, col)
        if n and k >= ONE_SIDED_SHARE * n:
            return (
                f"{k}/{n} prompts came out {side} than asked, by more than 1 %: without a tokenizer the "
                "estimate of about a token a word leaves out BOS and the chat template, so input lengths "
                "are off the plan on one side (set workload.tokenizer, or use an endpoint that serves "
                "/tokenize)"
            )
    return None


def _prefix_not_reused(row: dict[str, Any], n: int) -> str | None:
    """A shared prefix the engine took from its prompt cache for less than `PREFIX_REUSED_SHARE` of its
    tokens a request (on the mean of the cached tokens every request reported): its TTFT is that of
    prompts prefilled whole, not of a reused prefix."""
    prefix, cached = row_count(row, "shared_prefix_tokens"), row_number(row, "cached_prompt_tokens")
    if not prefix or cached is None or not n or cached / n >= PREFIX_REUSED_SHARE * prefix:
        return None
    text = (
        f"the engine took {cached / n:.0f} prompt tokens a request from its prompt cache, of a "
        f"{prefix}-token shared prefix: it prefilled the prefix again, so TTFT and prefill are those of "
        "new prompts, not of a reused prefix"
    )
    if row.get("engine") == "llamacpp" and row.get("launcher") != "llama-cpp-python":  # it has no such option
        swa = "swa_full=true" if row.get("launcher") == "xllamacpp" else "--swa-full"
        text += (
            f" (llama.cpp keeps no reusable cache for a sliding-window model, such as Gemma 2 and 3, "
            f"unless started with extra_args [{swa}])"
        )
    return text


def _usage_flags(row: dict[str, Any], n: int) -> list[str]:
    """How tokens were delivered and counted: zero gaps, missing usage."""
    out = []
    zero = row_number(row, "itl_zero_frac")
    if zero is not None and zero > ITL_ZERO_LIMIT:
        out.append(
            f"{zero:.0%} of the gaps between content chunks were 0 (chunks that arrived in one read): ITL "
            "percentiles show how tokens were delivered, not how fast they were generated (an engine "
            "that sends tokens in bursts, or a client that read late)"
        )
    if k := row_count(row, "missing_usage"):
        out.append(f"{k}/{n} requests carried no usage: their output tokens are unknown, left out of tok/s")
    if k := row_count(row, "chunk_counted"):
        out.append(
            f"{k}/{n} requests carried no usage (an endpoint that ignores stream_options.include_usage?): "
            "their output tokens are counted one per content chunk streamed, which is approximate"
        )
    if k := row_count(row, "missing_prompt_tokens"):
        out.append(
            f"{k}/{n} requests: prompt tokens unknown (no usage in the stream, no tokenizer): total tok/s "
            "is not given"
        )
    return out


def _window_flags(row: dict[str, Any]) -> list[str]:
    """The point's window: energy coverage and length, the arrival draw against the rate."""
    out = []
    here, engine = row_number(row, "gpu_count"), row_number(row, "gpu_engine_count")
    unread = row_number(row, "gpu_unread_count")
    if row.get("energy_scope") == "incomplete" and here and engine:
        out.append(
            f"GPU energy measured on {here:.0f} of the engine's {engine:.0f} GPUs only (the others are on "
            "other machines): no J/token"
        )
    elif row.get("energy_scope") == "incomplete" and str(row.get("gpu_order_unknown")) == "True":
        out.append(  # (a bool read back from a points table may be numpy's)
            "GPU energy may be other GPUs' than the engine's: this host's GPUs are of several models and "
            "CUDA numbers them fastest first, NVML by PCI bus (set CUDA_DEVICE_ORDER=PCI_BUS_ID): no J/token"
        )
    elif row.get("energy_scope") == "incomplete" and here and unread:
        out.append(
            f"GPU energy measured on {here:.0f} of the engine's {here + unread:.0f} GPUs only (NVML could "
            "not open the others: the manifest's skipped_gpus): no J/token"
        )
    elif row.get("energy_scope") == "incomplete":
        out.append("GPU energy unknown for this window (a GPU's samples missing): no J/token")
    win = row_number(row, "window_s")
    if row_number(row, "gpu_energy_j") is not None and win is not None and win < SHORT_ENERGY_WINDOW_S:
        out.append(
            f"energy over a {win:.2f} s window: the GPU energy counter updates every 20-100 ms, so J/token "
            "can be off by one update's worth (run more requests for a longer window)"
        )
    offered, rate = row_number(row, "offered_req_s"), row_number(row, "rate_rps")
    # a random schedule of n requests offers rate x (1 +- about 1/sqrt(shape x (n - 1))), the gamma
    # shape being 1 for Poisson (burstier draws spread wider): twice that is unusual
    shape = row_number(row, "burstiness") or 1.0
    n_req = row_count(row, "requests")
    spread = 2 / math.sqrt(shape * max(1, n_req - 1))
    if offered is not None and rate and abs(offered - rate) > max(OFFERED_RATE_OFF, spread) * rate:
        out.append(
            f"the arrival draw offered {offered:.3g} req/s, not the point's {rate:g} ({n_req} requests are "
            "a short sample of a random schedule): compare points by offered_req_s, or send more requests"
        )
    tail, e2e = row_number(row, "arrivals_tail_s"), row_number(row, "e2e_s_p99")
    if tail is not None and win and rate and tail > ARRIVALS_TAIL_SHARE * win:
        keep = (
            f" (cooldown_requests of about rate x E2E p99 = {math.ceil(rate * e2e)} keep it up)"
            if e2e
            else ""
        )
        out.append(
            f"no request arrived in the last {tail:.2f} s of the {win:.2f} s window ({tail / win:.0%}): the "
            f"requests in flight drained as the load fell off, so the point's end measured less than "
            f"{rate:g} req/s{keep}"
        )
    sent = row_number(row, "sent_req_s")
    if offered and sent is not None and sent < (1 - SENT_RATE_SHORT) * offered:
        why = (
            "they waited for a max_concurrency slot (the wait is in their TTFT and E2E)"
            if row_count(row, "max_concurrency")
            else "the client sent them late (see its send lag)"
        )
        out.append(f"requests reached the server at {sent:.3g} req/s, not the {offered:.3g} offered: {why}")
    return out


def _load_flags(row: dict[str, Any]) -> list[str]:
    """What the engine and host did to the load: a short KV cache, a failing tail, steal, other load."""
    out = []
    if fit := kv_cache_short(row):
        held, each, conc = fit
        out.append(
            f"the engine's KV cache holds {held:,.0f} tokens: about {held // each:.0f} of the {conc} "
            f"concurrent requests ({each:,.0f} tokens each) fit at once, the others waited (or were "
            "preempted), so latencies include that queue"
        )
    tail, win = row_number(row, "failed_tail_s"), row_number(row, "window_s")
    if tail is not None and win and tail > FAILED_TAIL_SHARE * win:
        out.append(
            f"failed requests ended {tail:.1f} s after the last successful one: {tail / win:.0%} of the "
            "window, over which tok/s and req/s are counted, is failures only"
        )
    if (steal := row_number(row, "host_cpu_steal_pct_mean")) is not None and steal > STEAL_LIMIT_PCT:
        out.append(
            f"the VM's hypervisor took {steal:.0f} % of its CPU time during the point (steal): what ran on "
            "the CPU (a CPU engine or offload, the client's timestamps) was slower than on this machine alone"
        )
    others, busy = other_busy_cores(row), row_number(row, "host_cpu_pct_mean")
    if (
        others is not None
        and busy is not None
        and others > OTHER_LOAD_LIMIT_CORES
        and busy >= HOST_BUSY_LIMIT_PCT
    ):
        out.append(
            f"the host's CPUs were {busy:.0f} % busy during the point, about {others:.1f} cores of it other "
            "processes (besides the engine and the client): a CPU engine or offload had less CPU than on "
            "this machine alone, and the client's timestamps can be late"
        )
    return out


def other_busy_cores(row: dict[str, Any]) -> float | None:
    """Cores busy on the host beyond the engine's process tree and the client's processes, over the
    point's window: host busy cores − engine CPU % / 100 − client CPU s / window s. None without the
    engine's CPU (an external engine) or the host's."""
    host, engine = row_number(row, "host_busy_cores_mean"), row_number(row, "engine_cpu_pct_mean")
    client, win = row_number(row, "client_cpu_s"), row_number(row, "window_s")
    if host is None or engine is None or client is None or not win:
        return None
    return host - engine / 100 - client / win


def client_saturated(row: Any) -> bool:
    """Whether a point's busiest client process neared a whole core (`client_saturated`: a bool, numpy's
    too, or 1 as a table reads it back)."""
    return row.get("client_saturated") in (True, 1)


def _client_flags(row: dict[str, Any]) -> list[str]:
    """Whether the client kept up: its CPU, its send lag, its event loop."""
    out = []
    if client_saturated(row):
        util = row_number(row, "client_cpu_util_max") or 0.0
        out.append(
            f"the client is near saturation (busiest client process at {util:.0%} of a core): numbers may be "
            "the client's limit; raise load.workers"
        )
    lag = row_number(row, "send_lag_s_p99")
    # open loop only: a closed loop has no schedule to fall behind (its sends wait for a free worker, and a
    # late-waking loop is the flag below), and max_concurrency's slot waits are not the client's lag
    # (rows from before the column existed cannot say whether a cap was set: not judged)
    open_loop = (
        row.get("mode") == "open" and "max_concurrency" in row and not row_count(row, "max_concurrency")
    )
    if lag is not None and lag > CLIENT_LAG_LIMIT_S and open_loop:
        out.append(
            f"requests went out late (send lag p99 {lag * 1e3:.1f} ms): the client fell behind the schedule, "
            "so the load offered was lower than planned; raise load.workers (on a host with idle cores) or "
            "lower the rate"
        )
    connect = row_number(row, "connect_s_max")
    if connect is not None and connect > CLIENT_LAG_LIMIT_S and row_count(row, "new_connections"):
        counted = (
            "counted from the schedule, include it"
            if row.get("mode") == "open"
            else "counted from the send, leave it out"
        )
        out.append(
            f"{row_count(row, 'new_connections')} request(s) opened a new connection to the server first, "
            f"taking up to {connect * 1e3:.1f} ms (not counted as send lag): their TTFT and E2E, {counted}"
        )
    # a late-waking loop delays the stamps it takes: it matters next to what they measure, the gaps
    # between tokens (over 5 ms and over a tenth of the median ITL)
    loop = row_number(row, "client_loop_lag_s_p99")
    itl = row_number(row, "itl_s_p50")
    if loop is not None and loop > max(CLIENT_LAG_LIMIT_S, 0.1 * (itl or 0.0)):
        # with one-token outputs there are no gaps between tokens, and no median to quote
        beside = f"; median ITL {itl * 1e3:.1f} ms" if itl is not None else ""
        out.append(
            f"the client's event loop woke up to {loop * 1e3:.1f} ms late (p99{beside}): its timestamps can "
            "be that late too (a host whose CPUs the engine or other work fills or the hypervisor takes, or "
            "too few client processes)"
        )
    return out


# count columns that warnings (`flags`) and the report read, by the check each one makes: a points table
# written before a column existed had that check not made, and an absent count reads as none found
# (the open-loop offered rate and the engine's KV-cache size are said where present, not listed here)
CHECK_COLUMNS = {
    "prompt_token_mismatch": "prompt tokens against the plan",
    "prompts_off_asked": "prompts against the lengths asked",
    "prompts_over_asked": "prompts over the lengths asked",
    "prompts_above_asked": "prompts on one side of the lengths asked",
    "missing_prompt_tokens": "prompts without a count",
    "chunk_token_mismatch": "chunks against usage",
    "text_token_mismatch": "re-tokenized text against usage",
    "missing_usage": "streams without usage",
    "chunk_counted": "outputs counted by chunks",
    "short_outputs": "outputs shorter than asked",
    "long_outputs": "outputs longer than asked",
    "prompt_cache_hits": "prompt-cache hits",
    "one_read_streams": "streams read in one piece",
    "itl_zero_frac": "chunks delivered together",
    "hidden_reasoning": "reasoning the stream did not carry",
    "failed_tail_s": "failures that stretch the window",
    "new_connections": "time spent opening connections",
}


def unmade_checks(columns: Iterable[str]) -> list[str]:
    """The checks (`CHECK_COLUMNS`) whose column a points table lacks: made by an older harness."""
    have = set(columns)
    return [what for col, what in CHECK_COLUMNS.items() if col not in have]


def flags(row: dict[str, Any]) -> list[str]:
    """Plain-language warnings for a summarized point (empty when nothing looks wrong). Pure on the row, so
    a report made later from the points table says the same as the run did."""
    n = row_count(row, "ok")
    out = _output_flags(row, n) + _usage_flags(row, n) + _window_flags(row)
    if not n:
        return out  # nothing succeeded: the client's figures (a few fast failures) say nothing of it
    return out + _load_flags(row) + _client_flags(row) + server_flags(row)
