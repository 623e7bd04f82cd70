"""Runs a scenario: engine per variant, load points, records and points written as they happen."""

from __future__ import annotations

import datetime as dt
import secrets
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import harness
from harness import hostinfo, metrics
from harness.client.aio import loop_name, run_loop
from harness.client.openai_stream import StreamClient
from harness.engines import make_engine
from harness.engines.base import Engine, redact, redact_scenario
from harness.engines.process import EngineError, set_abort_check
from harness.load import tokens
from harness.load.driver import PointLoad, run_point
from harness.load.search import PointPlan, RateSearch, slo_met
from harness.load.workload import DatasetError, DatasetRow, build_specs, load_dataset
from harness.models import ModelError
from harness.records import RequestRecord
from harness.results import (
    RunDir,
    RunNotFound,
    iter_records,
    live_runner,
    read_manifest,
    read_points,
    runner_info,
)
from harness.runinfo import detected_gpu
from harness.scenario import Point, Scenario, expand_points, scenario_hash
from harness.telemetry import default_samplers
from harness.telemetry.base import TelemetrySet
from harness.telemetry.window import j_per_token


class RunFailed(Exception):
    """The run stopped early; the message says why and where the data is."""

    def __init__(self, message: str, run_dir: Path) -> None:
        super().__init__(message)
        self.run_dir = run_dir


@dataclass
class RunResult:
    run_dir: Path
    rows: list[dict[str, Any]]
    status: str


TelemetryFactory = Callable[[Scenario, Any], TelemetrySet]


@contextmanager
def _abort_on_signals() -> Iterator[list[str]]:
    """Turn SIGINT, SIGTERM and SIGHUP (the terminal or ssh session gone) into an abort request the driver
    polls (a second one exits at once)."""
    flag: list[str] = []
    old: dict[signal.Signals, Any] = {}

    def handler(signum: int, frame: FrameType | None) -> None:
        if flag:
            raise KeyboardInterrupt
        flag.append(f"interrupted by {signal.Signals(signum).name}")

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        try:
            old[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread
            pass
    set_abort_check(lambda: flag[0] if flag else None)
    try:
        yield flag
    finally:
        set_abort_check(None)
        for sig, h in old.items():
            signal.signal(sig, h)


def _hardware() -> dict[str, Any]:
    """CPU and GPU inventory for the manifest (GPU: `available: false` with the reason, without NVML)."""
    from harness.telemetry.inventory import gpu_inventory

    return {"cpu": hostinfo.cpu_inventory(), "gpu": gpu_inventory()}


def _gpu_key(s: Scenario, described: dict[str, Any], manifest: dict[str, Any]) -> str | None:
    """The GPU a point ran on: the catalog GPU this machine's inventory found, else the scenario's
    `hardware.gpu`; for an external endpoint on another host, always the scenario's."""
    if described.get("local") is False:
        return s.hardware.gpu
    found = detected_gpu(manifest)
    return found.key if found else s.hardware.gpu


def _gpu_mismatch(s: Scenario, described: dict[str, Any], manifest: dict[str, Any]) -> str | None:
    """A warning when the scenario names one GPU and this machine has another."""
    key = _gpu_key(s, described, manifest)
    if s.hardware.gpu and key and key != s.hardware.gpu:
        return (
            f"the scenario says hardware.gpu {s.hardware.gpu!r} but this machine's GPU is {key!r}; "
            f"points and tables use {key!r}"
        )
    return None


def _point_row(
    s: Scenario, p: Point, engine: Engine, summary: dict[str, Any], manifest: dict[str, Any]
) -> dict[str, Any]:
    d = engine.describe()
    row: dict[str, Any] = {
        "scenario": s.name,
        "point_id": p.point_id,
        "variant": p.variant_index,
        "engine": d.get("name"),
        "launcher": d.get("launcher"),
        "model": (d.get("model") or {}).get("name"),
        "precision": d.get("precision") or getattr(p.engine, "precision", None),
        "n_gpu_layers": getattr(p.engine, "n_gpu_layers", None),
        "gpu": _gpu_key(s, d, manifest),
        "gpu_declared": s.hardware.gpu,
        "gpus": s.hardware.gpus,
        "mode": s.load.mode,
        "concurrency": p.concurrency,
        "rate_rps": p.rate_rps,
        "max_concurrency": s.load.max_concurrency if s.load.mode == "open" else None,
        # what the requests carried, which the warnings read (metrics.flags)
        "ignore_eos": engine.request_extras(s.workload).get("ignore_eos") is True,
        "shared_prefix_tokens": s.workload.shared_prefix_tokens,
    }
    row.update(summary)
    return row


def _endpoint_lost(engine: Engine, row: dict[str, Any]) -> str | None:
    """Why a point whose requests failed to connect (or were cut) lost its endpoint, when the endpoint no
    longer answers its health check: an external endpoint has no process whose death the run would see."""
    kinds = str(row.get("error_kinds") or "")
    healthy = getattr(engine, "healthy", None)
    if healthy is None or not ("connect:" in kinds or "disconnected:" in kinds) or healthy():
        return None
    return (
        f"the endpoint stopped answering ({row['errors']} of {row['requests']} measured requests failed: "
        f"{kinds})"
    )


def _count_without_usage(r: RequestRecord) -> None:
    """No usage in the stream: if it ended for `length`, it produced exactly max_tokens; and its prompt
    has the length the server's tokenizer gave it when it was built (`expected_input_tokens`)."""
    if r.output_tokens is None and r.ok and r.finish_reason == "length" and r.expected_output_tokens:
        r.output_tokens, r.output_tokens_source = r.expected_output_tokens, "max_tokens"
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


def search_result_text(found: dict[str, Any], rows: list[dict[str, Any]], variant: int) -> str:
    """What a rate search found, said as what it is: a lower bound when no rate tried failed, with the
    rate the point achieved beside the one offered."""
    best, failing = found["max_rate_rps"], found["lowest_failing_rps"]
    if best is None:
        return "highest rate meeting the SLOs: none of the rates tried"
    row = next(
        (r for r in reversed(rows) if r.get("variant", 0) == variant and r.get("rate_rps") == best), None
    )
    got = row.get("req_s") if row is not None else None
    achieved = f" offered ({got:.3g} req/s achieved)" if isinstance(got, float) and got == got else ""
    if failing is None:
        n = len(found["probes"])
        return (
            f"highest rate meeting the SLOs: at least {best:g} req/s{achieved}: no rate tried failed "
            f"in {n} probes, so the limit is higher"
        )
    return (
        f"highest rate meeting the SLOs: {best:g} req/s{achieved} (the next rate tried, {failing:g}, failed)"
    )


class ResumeError(Exception):
    """The run directory cannot be resumed with this scenario; message is for the user."""


class InterruptedAgain(KeyboardInterrupt):
    """A second Ctrl-C stopped the run at once; `run_dir` is marked interrupted."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = run_dir


def _prompt_salt(s: Scenario) -> int:
    """The scenario's prompt salt, else a fresh one: a repeated run must not hit the prompt cache of an
    engine that outlived the last one (an external endpoint)."""
    return s.workload.prompt_salt if s.workload.prompt_salt is not None else secrets.randbelow(2**31)


def _new_run(
    s: Scenario, results_root: Path, scenario_file: str | None, points: list[Point], find_max_goodput: bool
) -> RunDir:
    run = RunDir.create(results_root, s.name)
    run.write_manifest(
        {
            "run_id": run.path.name,
            "status": "running",
            "started_utc": dt.datetime.now(dt.UTC).isoformat(),
            "harness_version": harness.__version__,
            "git_sha": hostinfo.git_sha(),
            "command": redact(sys.argv),
            "scenario_file": scenario_file,
            "scenario_hash": scenario_hash(s),
            "scenario": redact_scenario(s.model_dump(mode="json")),
            "seeds": {"workload": s.workload.seed, "arrivals": s.load.seed, "prompt_salt": _prompt_salt(s)},
            "host": hostinfo.host(),
            "hardware": _hardware(),
            "points_planned": [p.point_id for p in points],
            "points_done": [],
            "engines": [],
            "telemetry": {},
            "client": {"event_loop": loop_name(), "workers": s.load.workers},
            "find_max_goodput": find_max_goodput,
            "runner": runner_info(),
        }
    )
    return run


def _same_scenario(manifest: dict[str, Any], s: Scenario) -> bool:
    """Whether the run was made with this scenario: by its hash, or, for a run whose hash was made another
    way (before defaults were left out of it), by the scenario stored in its manifest, fields added to the
    harness since left out of the comparison."""
    if manifest.get("scenario_hash") == scenario_hash(s):
        return True
    stored = manifest.get("scenario")
    now = redact_scenario(s.model_dump(mode="json"))
    return isinstance(stored, dict) and _known_part(now, stored) == stored


def _known_part(now: Any, stored: Any) -> Any:
    """`now` with the mapping keys `stored` does not have left out, at every depth."""
    if isinstance(now, dict) and isinstance(stored, dict):
        return {k: _known_part(v, stored[k]) for k, v in now.items() if k in stored}
    if isinstance(now, list) and isinstance(stored, list) and len(now) == len(stored):
        return [_known_part(a, b) for a, b in zip(now, stored, strict=True)]
    return now


def _reopen(path: Path, s: Scenario, find_max_goodput: bool) -> tuple[RunDir, list[dict[str, Any]], int, int]:
    """Reopen a run directory for `--resume`: (run, rows of finished points, next request id, attempt)."""
    try:
        manifest = read_manifest(path)
    except RunNotFound as e:
        raise ResumeError(str(e)) from None
    if find_max_goodput or manifest.get("find_max_goodput"):
        # the search's probes are not planned points, and its state is not kept: a resumed search
        # would start over and overwrite the probes already measured
        raise ResumeError(
            f"{path}: a --find-max-goodput rate search cannot be resumed; start a new run "
            "(its finished probes stay in this directory)"
        )
    if not _same_scenario(manifest, s):
        made_by, this = (
            (manifest.get("harness_version"), manifest.get("git_sha")),
            (harness.__version__, hostinfo.git_sha()),
        )
        other = (
            f"; it was made by harness {made_by[0]} ({made_by[1] or 'commit unknown'}), this is "
            f"{this[0]} ({this[1] or 'commit unknown'}), which may read the same file differently"
            if made_by != this
            else ""
        )
        raise ResumeError(
            f"{path}: was run with a different scenario (hash {str(manifest.get('scenario_hash'))[:12]}, "
            f"this one {scenario_hash(s)[:12]}); resume needs the same scenario file contents{other}"
        )
    if manifest.get("status") == "complete":
        raise ResumeError(f"{path}: run is already complete; nothing to resume")
    if (pid := live_runner(manifest)) is not None:
        raise ResumeError(
            f"{path}: is still being run by process {pid} on this host; stop it (Ctrl-C) or let it finish"
        )
    done = set(manifest.get("points_done") or [])
    old = read_points(path)
    rows = [{str(k): v for k, v in r.items()} for r in old.to_dict("records") if r.get("point_id") in done]
    next_id = 1 + max((r.request_id for r in iter_records(path)), default=-1)
    run = RunDir(Path(path), manifest)
    attempt = len(manifest.get("resumed_utc") or []) + 1
    # how the attempt before ended goes to `previous_status`; its message must not outlive the resume
    ended = {"status": manifest.get("status"), "message": manifest.pop("status_message", None)}
    ended["finished_utc"] = manifest.pop("finished_utc", None)
    run.update_manifest(
        previous_status=[*(manifest.get("previous_status") or []), ended],
        status="running",
        runner=runner_info(),
        resumed_utc=[*(manifest.get("resumed_utc") or []), dt.datetime.now(dt.UTC).isoformat()],
    )
    return run, rows, next_id, attempt


def run_scenario(
    s: Scenario,
    results_root: Path,
    scenario_file: str | None = None,
    console: Console | None = None,
    telemetry: TelemetryFactory | None = None,
    show_progress: bool = True,
    resume: Path | None = None,
    find_max_goodput: bool = False,
) -> RunResult:
    """Run every point of `s` (or, with `resume`, the points a previous run did not finish)."""
    console = console or Console(stderr=True)
    try:
        dataset = load_dataset(s.workload.dataset) if s.workload.dataset else None
    except DatasetError as e:
        raise RunFailed(f"workload.dataset: {e}", Path(results_root)) from None
    points = expand_points(s)
    attempt = 0
    if resume is not None:
        run, rows, next_id, attempt = _reopen(resume, s, find_max_goodput)
        console.print(f"resuming [bold]{run.path}[/]: {len(rows)} of {len(points)} point(s) already done")
    else:
        run, rows, next_id = _new_run(s, results_root, scenario_file, points, find_max_goodput), [], 0
        console.print(f"run directory: [bold]{run.path}[/]")
    done = {r["point_id"] for r in rows}
    failures: list[str] = []
    interrupted: str | None = None
    open_loop = s.load.mode == "open"
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not show_progress,
    )
    try:
        with _abort_on_signals() as abort_flag, progress:
            for vi in sorted({p.variant_index for p in points}):
                vpoints = [p for p in points if p.variant_index == vi and p.point_id not in done]
                if not vpoints or interrupted:
                    continue
                if failures and s.on_engine_failure == "stop":
                    break
                engine: Engine | None = None
                tel: TelemetrySet | None = None
                entry: dict[str, Any] = {}  # this engine's manifest entry
                try:
                    try:
                        engine = make_engine(vpoints[0].engine, run.path / f"engine-v{vi}.log")
                        console.print(f"starting {vpoints[0].engine.type} engine (variant {vi}) ...")
                        t0 = time.monotonic()
                        base_url = engine.start()
                        counters = _prompt_counters(s, engine, base_url, run, vi)
                    except (EngineError, ModelError) as e:
                        if abort_flag:
                            interrupted = f"engine (variant {vi}) start-up: {abort_flag[0]}"
                            continue
                        failures.append(f"engine (variant {vi}) did not start: {e}")
                        continue
                    console.print(f"engine healthy at {base_url} after {time.monotonic() - t0:.1f} s")
                    described = engine.describe()
                    warnings = [*(described.get("warnings") or []), _gpu_mismatch(s, described, run.manifest)]
                    for w in filter(None, warnings):
                        console.print(f"[yellow]warning[/] engine (variant {vi}): {w}", highlight=False)
                    entry = {"variant": vi, "attempt": attempt, **described}
                    run.manifest["engines"].append(entry)
                    tag = f"v{vi}" + (f"-a{attempt}" if attempt else "")  # telemetry file names
                    tel = (telemetry or default_samplers)(s, engine)
                    tel.start()
                    _print_telemetry(console, tel)
                    run.update_manifest(engines=run.manifest["engines"])

                    def should_abort(engine: Any = engine) -> str | None:
                        if abort_flag:
                            return abort_flag[0]
                        if not engine.alive():
                            code = engine.proc.poll() if getattr(engine, "proc", None) else None
                            return f"engine process exited (code {code})"
                        return None

                    search = RateSearch(vpoints[0].rate_rps or 1.0) if find_max_goodput else None
                    plan = PointPlan(vpoints, search)
                    for n_point, p in enumerate(plan):
                        row, aborted, next_id = _run_one_point(
                            s,
                            p,
                            engine,
                            base_url,
                            run,
                            tel,
                            progress,
                            next_id,
                            should_abort,
                            open_loop,
                            counters,
                            dataset,
                            console,
                            attempt,
                            warmup=s.load.warmup_scope == "point" or n_point == 0,
                        )
                        if row is not None and not aborted and (lost := _endpoint_lost(engine, row)):
                            aborted = row["aborted"] = lost  # cut short like a point whose engine died
                        if row is not None:
                            rows.append(row)
                            run.write_points(rows)
                            tel.checkpoint(run.path, tag)  # a harness killed later keeps the samples so far
                            _keep_telemetry(run, entry, tel)
                            run.update_manifest(engines=run.manifest["engines"])
                        plan.observe(p, row["slo_met"] if row is not None and not aborted else None)
                        if aborted:
                            log = engine.log_path()
                            msg = f"point {p.point_id}: {aborted}" + (f"; engine log: {log}" if log else "")
                            if abort_flag:
                                interrupted = msg
                            else:
                                failures.append(msg)
                            break
                        done.add(p.point_id)
                        run.update_manifest(points_done=[q.point_id for q in points if q.point_id in done])
                    if search is not None and not interrupted and not failures:
                        done.update(q.point_id for q in vpoints)  # the search replaces the planned rates
                        run.update_manifest(points_done=[q.point_id for q in points if q.point_id in done])
                    if search is not None:
                        found = {"variant": vi, **search.summary()}
                        run.update_manifest(max_goodput=[*run.manifest.get("max_goodput", []), found])
                        console.print(f"variant {vi}: {search_result_text(found, rows, vi)}", highlight=False)
                finally:
                    if tel is not None:
                        tel.stop(run.path, tag)
                        _keep_telemetry(run, entry, tel)
                    if engine is not None:
                        engine.stop()
                    run.sync()
    except BaseException as e:  # a second Ctrl-C, or a bug: the manifest must not stay "running"
        again = isinstance(e, KeyboardInterrupt)
        try:
            run.close()
            why = "a second Ctrl-C stopped it at once" if again else f"{type(e).__name__}: {e}".rstrip(": ")
            run.set_status("interrupted" if again else "failed", why)
        except OSError:
            pass  # the disk that failed the run cannot take its status either: `running` stays, as on a kill
        if again:
            raise InterruptedAgain(run.path) from None
        raise
    run.close()
    missing = [p.point_id for p in points if p.point_id not in done]
    if interrupted:
        status, message = "interrupted", interrupted
    elif not missing:
        status, message = "complete", None
    else:
        status = "partial" if done else "failed"
        message = "; ".join(failures) or f"points not run: {', '.join(missing)}"
    run.set_status(status, message)
    if status != "complete":
        raise RunFailed(
            f"run {status}: {message}. {len(done)} of {len(points)} point(s) done; finished requests kept in "
            f"{run.path} (continue with: harness run {scenario_file or 'SCENARIO'} --resume {run.path})",
            run.path,
        )
    return RunResult(run.path, rows, status)


def _make_client(s: Scenario, engine: Engine, base_url: str, keep_text: bool) -> StreamClient:
    w = s.workload
    return StreamClient(
        base_url,
        engine.model_name,
        api=w.api,
        temperature=w.temperature,
        seed=w.seed,
        timeout_s=w.request_timeout_s,
        extra_body=engine.request_extras(w),
        headers=engine.headers() if hasattr(engine, "headers") else {},
        keep_text=keep_text,
    )


Counters = tuple[Any, Any]  # (prompt counter incl. server offset, plain text counter)


def _prompt_counters(s: Scenario, engine: Engine, base_url: str, run: RunDir, vi: int) -> Counters:
    """Tokenizer for exact prompt lengths, calibrated once per engine by a probe request."""
    try:
        prompt, text, info = tokens.prepare_counter(
            s.workload.tokenizer, engine, _make_client(s, engine, base_url, False), run_loop
        )
    except tokens.TokenizerError as e:
        raise EngineError(f"workload.tokenizer: {e}") from None
    run.update_manifest(prompt_tokens=[*run.manifest.get("prompt_tokens", []), {"variant": vi, **info}])
    return prompt, text


def _keep_telemetry(run: RunDir, entry: dict[str, Any], tel: TelemetrySet) -> None:
    """The telemetry manifest into the engine's entry (its own, with the files of its samples) and the
    run's top-level `telemetry` (the last engine's); written with the next manifest update."""
    got = tel.manifest()
    run.manifest.setdefault("telemetry", {}).update(got)
    entry["telemetry"] = got


def _print_telemetry(console: Console, tel: TelemetrySet) -> None:
    names = ", ".join(x.name for x in tel.samplers) or "none"
    absent = "; ".join(f"{k}: {v}" for k, v in {**tel.absent, **tel.problems}.items())
    console.print(f"telemetry: {names}" + (f" (absent: {absent})" if absent else ""), highlight=False)


def _run_one_point(
    s: Scenario,
    p: Point,
    engine: Engine,
    base_url: str,
    run: RunDir,
    tel: TelemetrySet,
    progress: Progress,
    next_id: int,
    should_abort: Callable[[], str | None],
    open_loop: bool,
    counters: Counters = (None, None),
    dataset: list[DatasetRow] | None = None,
    console: Console | None = None,
    attempt: int = 0,
    warmup: bool = True,
) -> tuple[dict[str, Any] | None, str | None, int]:
    w, ld = s.workload, s.load
    # (None, None): no tokenizer, prompt lengths approximate (see _prompt_counters)
    count, count_text = counters
    n_warm, n_cool = (ld.warmup_requests if warmup else 0), ld.cooldown_requests
    salt = (run.manifest.get("seeds") or {}).get("prompt_salt")  # None in runs made before there was one
    warm = build_specs(w, n_warm, next_id, count, w.seed, dataset, salt) if n_warm else []
    specs = build_specs(w, ld.requests, next_id + n_warm, count, w.seed, dataset, salt)
    first_cool = next_id + n_warm + ld.requests
    cool = build_specs(w, n_cool, first_cool, count, w.seed, dataset, salt) if n_cool else []
    label = f"{p.point_id} " + (f"concurrency {p.concurrency}" if p.concurrency else f"{p.rate_rps:g} req/s")
    task = progress.add_task(label, total=len(specs))

    usage_in_stream = engine.usage_in_stream()

    def on_record(rec: RequestRecord) -> None:
        rec.attempt = attempt
        if not usage_in_stream:
            _count_without_usage(rec)
        run.append_record(rec)
        if not rec.warmup:
            live = tel.live()
            progress.update(task, advance=1, description=f"{label} {live}" if live else label)

    keep_text = not engine.usage_in_stream() or count_text is not None
    client = _make_client(s, engine, base_url, keep_text)
    load = PointLoad(
        p.point_id,
        concurrency=p.concurrency,
        rate_rps=p.rate_rps,
        arrival=ld.arrival,
        burstiness=ld.burstiness,
        max_concurrency=ld.max_concurrency,
        duration_s=ld.duration_s,
        seed=ld.seed + p.index,
        workers=ld.workers,
    )

    async def go() -> Any:
        async with client:
            return await run_point(
                client,
                load,
                warm,
                specs,
                next_id,
                on_record,
                should_abort,
                on_measure_start=lambda t: tel.begin_window(p.point_id, t),
                cooldown_specs=cool,
            )

    outcome = run_loop(go())
    tel_cols = tel.end_window(p.point_id, outcome.ended_ns)
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
    row = None
    if measured:
        summary = metrics.summarize(measured, open_loop, s.slo.ttft_s, s.slo.tpot_s, s.slo.e2e_s)
        row = _point_row(s, p, engine, summary, run.manifest)
        row.update(tel_cols)
        row.update(metrics.server_comparison(row))
        if "energy_j" in row:
            row["energy_j_per_output_token"] = j_per_token(row["energy_j"], row.get("output_tokens"))
        row.update(outcome.client)
        row["slo_met"] = slo_met(row, s.slo.attainment)
        row["aborted"] = outcome.aborted or ""
        row["attempt"] = attempt  # 0: the run's first engine start; K: its K-th --resume
        if console is not None:
            for msg in metrics.flags(row):
                console.print(f"[yellow]warning[/] {p.point_id}: {msg}", highlight=False)
    return row, outcome.aborted, next_id + n_warm + len(specs) + n_cool
