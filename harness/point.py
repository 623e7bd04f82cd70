"""One load point against a running engine: its requests sent and recorded, counted, summarized into the
point's row with the telemetry window's columns."""

from __future__ import annotations

import dataclasses
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
from harness.lost_engine import LostWatch, endpoint_lost, lost_message
from harness.records import RequestRecord
from harness.results import RunDir
from harness.rundevice import (
    detected_gpu,
    engine_gpu_indices,
    machine_gpu,
    models_unknown,
    models_unknown_note,
    ran_on_cpu,
    run_gpu,
)
from harness.scenario import Point, Scenario
from harness.server_view import server_comparison
from harness.telemetry.base import TelemetrySet
from harness.token_counts import (
    count_missing_usage,
    count_without_usage,
    energy_per_token,
    tokens_per_chunk,
    uncounted_tokens_in,
)


def gpu_key(
    s: Scenario, described: dict[str, Any], manifest: dict[str, Any], engine: Any = None
) -> str | None:
    """The GPU a point ran on (`rundevice.run_gpu`: of the GPUs its engine configuration `engine`, default
    the scenario's, was given); for an external endpoint on another host, always the scenario's
    `hardware.gpu`."""
    if described.get("local") is False:
        return s.hardware.gpu
    cfg = (engine or s.engine).model_dump(mode="json")
    return run_gpu(manifest, s.hardware.gpu, s.engine.type, engine_gpu_indices(manifest, cfg, described))


def gpu_mismatch(
    s: Scenario, described: dict[str, Any], manifest: dict[str, Any], engine: Any = None
) -> str | None:
    """A warning when the scenario names one GPU and the engine's (configuration `engine`, default the
    scenario's) is another, or this machine has none, or the engine sees none, or it has several models
    and which the engine ran on is not known (`rundevice.models_unknown`)."""
    declared = s.hardware.gpu
    if not declared or described.get("local") is False:
        return None
    gpus = engine_gpu_indices(manifest, (engine or s.engine).model_dump(mode="json"), described)
    key = run_gpu(manifest, declared, s.engine.type, gpus)
    here = machine_gpu(manifest)
    if models := models_unknown(manifest, gpus, s.engine.type):
        return models_unknown_note(models, declared)
    if gpus == []:
        return (
            f"the scenario says hardware.gpu {declared!r} but the engine sees no GPU (CUDA_VISIBLE_DEVICES"
            " is empty); points and tables name this machine's CPU"
        )
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
    hw, gpus = s.hardware.model_dump(mode="json"), engine_gpu_indices(manifest, cfg, described)
    return ran_on_cpu(cfg, hw, described, detected_gpu(manifest) is not None, gpus)


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
        "gpu": None if on_cpu else gpu_key(s, d, manifest, p.engine),
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


class _Aborted(Exception):
    """The run was asked to stop (Ctrl-C, the engine died) while a point's prompts were being made."""


def _abortable(count: Callable[[str], int | None] | None, should_abort: Callable[[], str | None]) -> Any:
    """`count` checking `should_abort` before each call: fitting a prompt asks the tokenizer many times,
    and a hung engine holds each call for its timeout."""
    if count is None:
        return None
    if isinstance(count, tokens.PromptCounter):  # its offset and template tail kept
        return dataclasses.replace(count, count_text=_abortable(count.count_text, should_abort))

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


def make_client(s: Scenario, engine: Engine, base_url: str, keep_text: bool) -> StreamClient:
    w = s.workload
    return StreamClient(
        base_url,
        engine.model_name,
        api_prefix=engine.api_prefix,
        api=w.api,
        temperature=w.temperature,
        seed=w.seed if w.request_seed else None,
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
        count_without_usage(rec, by_chunks=engine.usage_in_stream())
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
                on_measure_end=tel.edge_samples,
            )

    with no_full_collections():
        outcome = run_loop(go())
    # the same window as tok/s: from the first measured send, not from before the edge samples
    tel_cols = tel.end_window(p.point_id, outcome.ended_ns, outcome.started_ns)
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
        count_missing_usage(None if outcome.aborted else engine, outcome.records)
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
    if open_loop:
        row["arrivals_tail_s"] = metrics.arrivals_tail_s(
            outcome.records, outcome.started_ns, outcome.ended_ns
        )
    row.update(tel_cols)
    row.update(server_comparison(row, unmeasured_in_window=_unmeasured_in(outcome)))
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
