"""One load point against a running engine: its requests sent and recorded, counted, summarized into the
point's row with the telemetry window's columns."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress

from harness import flags, metrics
from harness.catalog.hardware import devices
from harness.client.aio import no_full_collections, run_loop
from harness.client.openai_stream import RequestSpec, StreamClient
from harness.engines.base import Engine
from harness.engines.process import EngineError
from harness.load import tokens
from harness.load.arrivals import point_seed
from harness.load.driver import PointLoad, PointOutcome, run_point
from harness.load.search import slo_met
from harness.load.workload import DatasetRow, build_specs
from harness.records import RequestRecord
from harness.results import RunDir
from harness.rundevice import detected_gpu, machine_gpu, ran_on_cpu, run_gpu
from harness.scenario import Point, Scenario
from harness.telemetry.base import TelemetrySet
from harness.telemetry.window import j_per_token


def gpu_key(s: Scenario, described: dict[str, Any], manifest: dict[str, Any]) -> str | None:
    """The GPU a point ran on (`rundevice.run_gpu`); for an external endpoint on another host, always the
    scenario's `hardware.gpu`."""
    if described.get("local") is False:
        return s.hardware.gpu
    return run_gpu(manifest, s.hardware.gpu, s.engine.type)


def gpu_mismatch(s: Scenario, described: dict[str, Any], manifest: dict[str, Any]) -> str | None:
    """A warning when the scenario names one GPU and this machine has another, or none."""
    declared = s.hardware.gpu
    if not declared or described.get("local") is False:
        return None
    key = gpu_key(s, described, manifest)
    here = machine_gpu(manifest)
    if key is None:  # llama.cpp launched here, and NVML says there is no NVIDIA GPU
        return (
            f"the scenario says hardware.gpu {declared!r} but this machine has no NVIDIA GPU "
            f"({here.reason}); points and tables name its CPU"
        )
    if key != declared:
        lacks = (
            "" if key in devices() else ", which the hardware catalog lacks (no roofline; --price prices it)"
        )
        return (
            f"the scenario says hardware.gpu {declared!r} but this machine's GPU is {key!r}{lacks}; "
            f"points and tables use {key!r}"
        )
    if s.engine.type == "external" and here.key != declared and (here.key is not None or here.none_here):
        seen = f"whose GPU is {here.key!r}" if here.key else "which has no NVIDIA GPU"
        return (
            f"the endpoint's address is this machine's, {seen}: points and tables take it to run on "
            f"hardware.gpu {declared!r}, as the scenario says (a port tunnelled from another host looks "
            "local)"
        )
    return None


def _on_cpu(s: Scenario, p: Point, described: dict[str, Any], manifest: dict[str, Any]) -> bool:
    """The point's engine ran on the host CPU (`rundevice.ran_on_cpu`: vLLM's CPU build, llama.cpp whose
    log shows no weights on a GPU, ...): its row names no GPU, as the tables name the CPU."""
    if described.get("local") is False:
        return False
    cfg = p.engine.model_dump(mode="json")
    return ran_on_cpu(cfg, s.hardware.model_dump(mode="json"), described, detected_gpu(manifest) is not None)


def _point_row(
    s: Scenario, p: Point, engine: Engine, summary: dict[str, Any], manifest: dict[str, Any]
) -> dict[str, Any]:
    d = engine.describe()
    on_cpu = _on_cpu(s, p, d, manifest)
    row: dict[str, Any] = {
        "scenario": s.name,
        "point_id": p.point_id,
        "variant": p.variant_index,
        "engine": d.get("name"),
        "launcher": d.get("launcher"),
        "model": (d.get("model") or {}).get("name"),
        "precision": d.get("precision") or getattr(p.engine, "precision", None),
        "n_gpu_layers": getattr(p.engine, "n_gpu_layers", None),
        "gpu": None if on_cpu else gpu_key(s, d, manifest),
        "gpu_declared": s.hardware.gpu,
        "gpus": 0 if on_cpu else s.hardware.gpus,  # the scenario's default 1 is no GPU a CPU run used
        "mode": s.load.mode,
        "concurrency": p.concurrency,
        "rate_rps": p.rate_rps,
        "max_concurrency": s.load.max_concurrency if s.load.mode == "open" else None,
        "arrival": s.load.arrival if s.load.mode == "open" else None,
        "burstiness": s.load.burstiness if s.load.mode == "open" and s.load.arrival == "gamma" else None,
        # what the requests carried, which the warnings read (flags.flags)
        "ignore_eos": engine.request_extras(s.workload).get("ignore_eos") is True,
        "shared_prefix_tokens": s.workload.shared_prefix_tokens,
        # the tokens the engine's KV cache holds, where it says (vLLM's start-up log)
        "kv_cache_tokens": d.get("kv_cache_tokens"),
    }
    row.update(summary)
    return row


# request failures that an engine no longer answering would give
_LOST_KINDS = ("connect", "disconnected", "timeout")


def lost_message(engine: Engine, records: list[RequestRecord]) -> str:
    """What a point whose engine stopped answering its health check says, with its failures."""
    measured = [r for r in records if not r.warmup]
    failed = [r for r in measured if r.error_kind in _LOST_KINDS]
    kinds: dict[str, int] = {}
    for r in failed:
        kinds[str(r.error_kind)] = kinds.get(str(r.error_kind), 0) + 1
    said = ",".join(f"{k}:{n}" for k, n in sorted(kinds.items())) or "none"
    who = "the endpoint"
    if getattr(engine, "proc", None) is not None:
        who = "the engine (its process still runs: hung?)"
    return (
        f"{who} stopped answering its health check ({len(failed)} of {len(measured)} measured requests "
        f"failed: {said})"
    )


def endpoint_lost(engine: Engine, records: list[RequestRecord]) -> str | None:
    """Why a point whose measured requests failed to connect, were cut or timed out lost its engine, when
    the engine's health check no longer answers (asked once the point is over, nothing in flight): an
    external endpoint has no process whose death the run would see, and a launched engine's process can
    be alive and hung (frozen, deadlocked). `healthy()` None: the engine cannot tell (a health route that
    waits for the model), never taken for lost."""
    healthy = getattr(engine, "healthy", None)
    failed = [r for r in records if not r.warmup and r.error_kind in _LOST_KINDS]
    if healthy is None or not failed or healthy() is not False:
        return None
    return lost_message(engine, records)


class LostWatch:
    """During a point: once `STREAK` requests in a row failed as a lost engine's would (no answer, cut,
    timed out), the engine's health check is asked, off the event loop; `reason` is set when it does not
    answer *and* nothing was heard from the engine meanwhile (no stream received an event, no request
    ended well), and the point's abort check returns it. A frozen engine's requests would otherwise time
    out one after another, each after `request_timeout_s`; a busy one whose health route waits behind
    generation (llama-cpp-python's /v1/models, an overloaded server's HTTP threads) is still streaming.

    `heard_ns()`: perf_counter_ns of the last event a stream of this process received (0: none); with
    several client processes, the records they send back as requests end say what was heard."""

    STREAK = 2
    REASON = "the engine stopped answering its health check"

    def __init__(self, engine: Engine, heard_ns: Callable[[], int] = lambda: 0) -> None:
        self.healthy: Callable[[], bool | None] | None = getattr(engine, "healthy", None)
        self.heard_ns = heard_ns
        self.streak = 0
        self.reason: str | None = None
        self.last_heard_ns = 0
        self._probing = False

    def saw(self, rec: RequestRecord) -> None:
        # what the engine last sent: a finished request's end, or the last chunk of any request (with
        # client processes the records are all the parent hears of the streams, as each one ends)
        if rec.ok:
            self.last_heard_ns = max(self.last_heard_ns, rec.done_ns or 0)
        if rec.chunk_ns:
            self.last_heard_ns = max(self.last_heard_ns, rec.chunk_ns[-1])
        if self.healthy is None or self.reason is not None:
            return
        if rec.error_kind in _LOST_KINDS:
            self.streak += 1
        elif rec.ok:
            self.streak = 0
        if self.streak >= self.STREAK and not self._probing:
            self.streak, self._probing = 0, True
            threading.Thread(target=self._probe, name="health-probe", daemon=True).start()

    def _probe(self) -> None:
        try:
            t0 = time.perf_counter_ns()
            answered = self.healthy() if self.healthy is not None else None
            heard = max(self.heard_ns(), self.last_heard_ns)
            if answered is False and heard < t0:
                self.reason = self.REASON
        finally:
            self._probing = False


class _Aborted(Exception):
    """The run was asked to stop (Ctrl-C, the engine died) while a point's prompts were being made."""


def _abortable(count: Callable[[str], int | None] | None, should_abort: Callable[[], str | None]) -> Any:
    """`count` checking `should_abort` before each call: fitting a prompt asks the tokenizer many times,
    and a hung engine holds each call for its timeout."""
    if count is None:
        return None

    def checked(text: str) -> int | None:
        if why := should_abort():
            raise _Aborted(why)
        return count(text)

    return checked


def _unmeasured_in(outcome: PointOutcome) -> int:
    """Unmeasured requests (warmup, cooldown) that were at the engine during the measured window: its
    counters over the window count their tokens too."""
    t0, t1 = outcome.started_ns, outcome.ended_ns
    return sum(
        1
        for r in outcome.records
        if r.warmup and r.sent_ns and r.sent_ns < t1 and (r.done_ns or t1) > t0  # sent_ns 0: never sent
    )


def _count_without_usage(r: RequestRecord, by_chunks: bool = False) -> None:
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


def _count_missing_usage(engine: Engine | None, records: list[RequestRecord]) -> None:
    """Engines without usage in streams: streams that stopped early are counted by tokenizing the streamed
    text (approximate: re-tokenizing generated text can merge pieces differently); not without an engine
    to ask (None: the point was cut short)."""
    for r in records:
        _count_without_usage(r)
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


def make_client(s: Scenario, engine: Engine, base_url: str, keep_text: bool) -> StreamClient:
    w = s.workload
    return StreamClient(
        base_url,
        engine.model_name,
        api_prefix=engine.api_prefix,
        api=w.api,
        temperature=w.temperature,
        seed=w.seed,
        max_tokens_field=w.max_tokens_field,
        timeout_s=w.request_timeout_s,
        extra_body=engine.request_extras(w),
        headers=engine.headers() if hasattr(engine, "headers") else {},
        keep_text=keep_text,
    )


Counters = tuple[Any, Any]  # (prompt counter incl. server offset, plain text counter)


def prompt_counters(s: Scenario, engine: Engine, base_url: str, run: RunDir, vi: int) -> Counters:
    """Tokenizer for exact prompt lengths, calibrated once per engine by a probe request."""
    try:
        prompt, text, info = tokens.prepare_counter(
            s.workload.tokenizer, engine, make_client(s, engine, base_url, False), run_loop
        )
    except tokens.TokenizerError as e:
        raise EngineError(f"workload.tokenizer: {e}") from None
    run.update_manifest(prompt_tokens=[*run.manifest.get("prompt_tokens", []), {"variant": vi, **info}])
    return prompt, text


def measure_point(
    s: Scenario,
    p: Point,
    engine: Engine,
    base_url: str,
    run: RunDir,
    tel: TelemetrySet,
    progress: Progress,
    next_id: int,
    should_abort: Callable[[], str | None],
    counters: Counters = (None, None),
    dataset: list[DatasetRow] | None = None,
    console: Console | None = None,
    attempt: int = 0,
    warmup: bool = True,
) -> tuple[dict[str, Any] | None, str | None, int]:
    """Measure one point: its row (None when nothing was measured), why it was cut short (None: it was
    not), and the next request id."""
    # (None, None): no tokenizer, prompt lengths approximate (see prompt_counters)
    count, count_text = counters
    label = f"{p.point_id} " + (f"concurrency {p.concurrency}" if p.concurrency else f"{p.rate_rps:g} req/s")
    # fitting prompts asks the tokenizer for each: thousands of requests take a while, said meanwhile
    task = progress.add_task(f"{label} (preparing prompts)", total=s.load.requests)

    def made(n: int) -> None:
        progress.update(task, completed=n)

    try:
        counted = _abortable(count, should_abort)
        warm, specs, cool = _point_specs(s, run, next_id, counted, dataset, warmup, should_abort, made)
    except _Aborted as e:  # nothing was sent: no row
        progress.remove_task(task)
        return None, str(e), next_id
    progress.update(task, description=label, completed=0)  # from here it counts measured requests done
    next_after = next_id + len(warm) + len(specs) + len(cool)

    client = make_client(s, engine, base_url, not engine.usage_in_stream() or count_text is not None)
    watch = LostWatch(engine, lambda: client.heard_ns[0])

    def on_record(rec: RequestRecord) -> None:
        watch.saw(rec)
        rec.attempt = attempt
        # also where usage should be in the stream: an endpoint that ignores stream_options sends none
        # (counted as 0 tokens, it lowered tok/s without a word)
        _count_without_usage(rec, by_chunks=engine.usage_in_stream())
        run.append_record(rec)
        if not rec.warmup:
            live = tel.live()
            progress.update(task, advance=1, description=f"{label} {live}" if live else label)

    async def go() -> Any:
        async with client:
            return await run_point(
                client,
                point_load(s, p),
                warm,
                specs,
                next_id,
                on_record,
                lambda: should_abort() or watch.reason,
                on_measure_start=lambda t: tel.begin_window(p.point_id, t),
                cooldown_specs=cool,
            )

    with no_full_collections():
        outcome = run_loop(go())
    tel_cols = tel.end_window(p.point_id, outcome.ended_ns)
    if outcome.aborted is not None and outcome.aborted == watch.reason:
        outcome.aborted = lost_message(engine, outcome.records)
    elif not outcome.aborted and (lost := endpoint_lost(engine, outcome.records)):
        outcome.aborted = lost  # cut short like a point whose engine died: nothing more is asked of it
    measured = _settle_counts(engine, outcome, count_text, run)
    if not measured:
        return None, outcome.aborted, next_after
    row = _measured_row(s, p, engine, run, outcome, measured, tel_cols, attempt)
    if console is not None:
        for msg in flags.flags(row):
            console.print(f"[yellow]warning[/] {p.point_id}: {escape(msg)}", highlight=False)
    return row, outcome.aborted, next_after


def _point_specs(
    s: Scenario,
    run: RunDir,
    next_id: int,
    count: Callable[[str], int] | None,
    dataset: list[DatasetRow] | None,
    warmup: bool,
    should_abort: Callable[[], str | None],
    progress: Callable[[int], None],
) -> tuple[list[RequestSpec], list[RequestSpec], list[RequestSpec]]:
    """The point's warmup, measured and cooldown requests. Every point measures the same lengths and
    dataset rows (slots 0..requests-1); warmup and cooldown take the slots after those. Raises _Aborted
    when asked to stop meanwhile (`progress` is told every thousand measured prompts made)."""
    w, ld = s.workload, s.load
    n_warm, n_cool = (ld.warmup_requests if warmup else 0), ld.cooldown_requests
    salt = (run.manifest.get("seeds") or {}).get("prompt_salt")  # None in runs made before there was one

    def stop_if_asked(made: int) -> None:
        # without a tokenizer there is no count to stop at: a Ctrl-C waited for a million prompts
        if why := should_abort():
            raise _Aborted(why)

    def every_1k(made: int) -> None:
        stop_if_asked(made)
        progress(made)

    def some(n: int, first_id: int, slot: int, told: Callable[[int], None]) -> list[RequestSpec]:
        return build_specs(w, n, first_id, count, w.seed, dataset, salt, slot, told) if n else []

    warm = some(n_warm, next_id, ld.requests, stop_if_asked)
    specs = build_specs(w, ld.requests, next_id + n_warm, count, w.seed, dataset, salt, 0, every_1k)
    cool = some(n_cool, next_id + n_warm + ld.requests, ld.requests + n_warm, stop_if_asked)
    return warm, specs, cool


def point_load(s: Scenario, p: Point) -> PointLoad:
    """How point `p` of scenario `s` is driven: its level, arrival draw and client processes."""
    ld = s.load
    return PointLoad(
        p.point_id,
        concurrency=p.concurrency,
        rate_rps=p.rate_rps,
        arrival=ld.arrival,
        burstiness=ld.burstiness,
        max_concurrency=ld.max_concurrency,
        duration_s=ld.duration_s,
        # a search's probes share one draw (see harness.load.search); a sweep's rates each get their own
        seed=point_seed(ld.seed, None if p.probe else p.rate_rps),
        # each client process holds at least one request: a closed-loop point below `workers` uses fewer
        workers=min(ld.workers, p.concurrency) if p.concurrency else ld.workers,
    )


def _settle_counts(
    engine: Engine, outcome: PointOutcome, count_text: Callable[[str], int] | None, run: RunDir
) -> list[RequestRecord]:
    """Count the tokens the stream did not (no usage in it; the answers' text for the tokenizer check),
    write those counts beside the records, and return the measured records."""
    # a point cut short may have a hung or dead engine behind it: nothing more is asked of it (each
    # tokenize call would wait out its timeout), and the counts it would have given stay unknown
    if not engine.usage_in_stream():
        _count_missing_usage(None if outcome.aborted else engine, outcome.records)
    measured = [r for r in outcome.records if not r.warmup]
    if count_text is not None and not outcome.aborted:
        for r in measured:
            if r.ok and r.output_text is not None:
                r.output_text_tokens = count_text(r.output_text)
    # counts made after the records were written go beside them, so the records stay the whole input
    late = [
        r
        for r in outcome.records
        if r.output_tokens_source == "tokenizer" or r.output_text_tokens is not None
    ]
    run.append_counts(late)
    return measured


def _measured_row(
    s: Scenario,
    p: Point,
    engine: Engine,
    run: RunDir,
    outcome: PointOutcome,
    measured: list[RequestRecord],
    tel_cols: dict[str, Any],
    attempt: int,
) -> dict[str, Any]:
    """The point's row: its metrics, telemetry, engine-counter comparison, energy per token and client."""
    open_loop = p.rate_rps is not None
    summary = metrics.summarize(measured, open_loop, s.slo.ttft_s, s.slo.tpot_s, s.slo.e2e_s)
    row = _point_row(s, p, engine, summary, run.manifest)
    row.update(tel_cols)
    row.update(flags.server_comparison(row, unmeasured_in_window=_unmeasured_in(outcome)))
    if "energy_j" in row:
        uncounted = uncounted_tokens_in(
            outcome.records, outcome.started_ns, outcome.ended_ns, tokens_per_chunk(measured)
        )
        row.update(energy_per_token(row, uncounted))
    row.update(outcome.client)
    row["slo_met"] = slo_met(row, s.slo.attainment)
    row["aborted"] = outcome.aborted or ""
    row["attempt"] = attempt  # 0: the run's first engine start; K: its K-th --resume
    return row
