"""Output tokens where a stream reported no usage (max_tokens, the engine's tokenizer, else its chunks,
flagged), and the tokens a window's energy is divided by."""

from __future__ import annotations

from typing import Any

from harness.engines.base import Engine
from harness.records import RequestRecord
from harness.telemetry.window import j_per_token


def count_without_usage(r: RequestRecord, by_chunks: bool = False) -> None:
    """No usage in the stream: if it ended for `length`, it produced exactly max_tokens, else (`by_chunks`:
    no tokenizer pass follows) one token per content chunk, as the engines stream them (approximate, and
    flagged); and its prompt has the length the server's tokenizer gave it when it was built
    (`expected_input_tokens`)."""
    if r.output_tokens is None and r.ok and r.finish_reason == "length" and r.expected_output_tokens:
        r.output_tokens, r.output_tokens_source = r.expected_output_tokens, "max_tokens"
    if r.output_tokens is None and r.ok and by_chunks and r.chunk_ns:
        r.output_tokens, r.output_tokens_source = len(r.chunk_ns), "chunks"
    if r.prompt_tokens is None and r.ok and r.expected_input_tokens is not None:
        r.prompt_tokens, r.prompt_tokens_source = r.expected_input_tokens, "prompt_fit"


def count_missing_usage(engine: Engine | None, records: list[RequestRecord]) -> None:
    """Engines without usage in streams: streams that stopped early are counted by tokenizing the streamed
    text (approximate: re-tokenizing generated text can merge pieces differently); not without an engine
    to ask (None: the point was cut short)."""
    for r in records:
        count_without_usage(r)
        if engine is not None and r.output_tokens is None and r.ok and r.output_text is not None:
            r.output_tokens, r.output_tokens_source = engine.tokenize(r.output_text), "tokenizer"


def uncounted_tokens_in(
    records: list[RequestRecord], t0_ns: int, t1_ns: int, tokens_per_chunk: float = 1.0
) -> float:
    """Tokens streamed inside [t0_ns, t1_ns] by the requests the point's `output_tokens` leaves out:
    unmeasured ones (warmup, cooldown) and measured ones that failed. Their content chunks stamped
    there, each worth the request's tokens per chunk where it reported usage, else `tokens_per_chunk`
    (the point's own ratio: engines may put several tokens in a chunk)."""
    total = 0.0
    for r in records:
        if (r.ok and not r.warmup) or not r.chunk_ns:
            continue
        per_chunk = r.output_tokens / len(r.chunk_ns) if r.output_tokens else tokens_per_chunk
        total += per_chunk * sum(1 for t in r.chunk_ns if t0_ns <= t <= t1_ns)
    return total


def tokens_per_chunk(records: list[RequestRecord]) -> float:
    """Output tokens per content chunk of the requests whose token count did not come from their chunks
    (usage, max_tokens, a tokenizer) (1.0 when none)."""
    known = [r for r in records if r.output_tokens and r.chunk_ns and r.output_tokens_source != "chunks"]
    chunks = sum(len(r.chunk_ns) for r in known)
    return sum(r.output_tokens or 0 for r in known) / chunks if chunks else 1.0


def energy_per_token(row: dict[str, Any], uncounted_tokens: float = 0.0) -> dict[str, Any]:
    """J per output token of a point: the window's energy over every token generated in it, the measured
    requests' and those the count leaves out that streamed inside the window (warmup, cooldown, failed
    measured ones: `uncounted_tokens_in`; `energy_tokens_source: client+unmeasured`). Counted from the
    stream, on the window's own clock: engines' token counters are scraped off the window's edges, and
    llama.cpp's counts a request only when it ends (a cooldown request cut at the window's end never)."""
    tokens = row.get("output_tokens")
    source = "client"
    if not row.get("ok"):  # nothing measured succeeded: what failed streams cost is no price per token
        return {"energy_j_per_output_token": None, "energy_tokens_source": None}
    if uncounted_tokens and tokens is not None:
        tokens, source = tokens + uncounted_tokens, "client+unmeasured"
    return {
        "energy_j_per_output_token": j_per_token(row["energy_j"], tokens),
        "energy_tokens_source": source,
    }
