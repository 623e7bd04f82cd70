"""Runs a scenario: engine per variant, load points, records and points written as they happen."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from harness import llama_bench
from harness.engines import make_engine
from harness.engines.base import Engine, redact
from harness.engines.process import EngineError, hurry, set_abort_check, stop_all
from harness.load.search import PointPlan, RateSearch
from harness.load.workload import DatasetError, DatasetRow, load_dataset
from harness.models import ModelError
from harness.point import gpu_mismatch, measure_point, prompt_counters
from harness.results import RunDir, iter_records
from harness.resume import reopen
from harness.runconsole import RequestCount, print_telemetry, search_result_text, start_task
from harness.runstart import hardware_inventory, model_changed, new_run
from harness.scenario import Point, Scenario, expand_points
from harness.telemetry import default_samplers
from harness.telemetry.base import TelemetrySet


class RunFailed(Exception):
    """The run stopped early; the message says why and where the data is."""

    def __init__(self, message: str, run_dir: Path) -> None:
        super().__init__(message)
        self.run_dir = run_dir


class RunWriteFailed(Exception):
    """A run's files could not be written (a full disk, one gone read-only or removed); `resumable`: a
    resume can continue it (a rate search is run again instead)."""

    def __init__(self, run_dir: Path, error: OSError, resumable: bool) -> None:
        where = f" ({error.filename})" if error.filename else ""
        super().__init__(f"{error.strerror or error}{where}")
        self.run_dir, self.resumable = run_dir, resumable


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
            hurry()  # the engine stop on the way out skips its SIGTERM grace
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
        hurry(False)
        for sig, h in old.items():
            signal.signal(sig, h)


class InterruptedAgain(KeyboardInterrupt):
    """A second Ctrl-C stopped the run at once; `run_dir` is marked interrupted."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = run_dir


class InterruptedStarting(InterruptedAgain):
    """A Ctrl-C before the run's own handling was in place stopped a resumed run: nothing new was
    measured, and `run_dir` (with its earlier points) is marked interrupted."""


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
        run, rows, next_id, attempt = reopen(resume, s, find_max_goodput, hardware_inventory())
        console.print(
            f"resuming [bold]{escape(str(run.path))}[/]: {len(rows)} of {len(points)} point(s) already done"
        )
    else:
        run, rows, next_id = new_run(s, results_root, scenario_file, points, find_max_goodput), [], 0
        console.print(f"run directory: [bold]{escape(str(run.path))}[/]")
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        RequestCount(),
        TimeElapsedColumn(),
        console=console,
        disable=not show_progress,
    )
    sweep = _Sweep(
        s,
        run,
        points,
        rows,
        next_id,
        attempt,
        dataset,
        console,
        progress,
        telemetry or default_samplers,
        scenario_file=scenario_file,
        find_max_goodput=find_max_goodput,
    )
    try:
        return _sweep_all(sweep)
    finally:
        run.unlock()  # the run's status is written: a --resume of it may go ahead


def _sweep_all(sweep: _Sweep) -> RunResult:
    """Every variant's points not yet done, then the run's status; the manifest is left `running` only
    by a kill, or by a disk that cannot take the status write."""
    s, run, points = sweep.s, sweep.run, sweep.points
    try:
        with _abort_on_signals() as abort_flag, sweep.progress:
            sweep.abort_flag = abort_flag
            for vi in sorted({p.variant_index for p in points}):
                vpoints = [p for p in points if p.variant_index == vi and p.point_id not in sweep.done]
                if not vpoints or sweep.interrupted:
                    continue
                if sweep.failures and s.on_engine_failure == "stop":
                    break
                sweep.variant(vi, vpoints)
    except BaseException as e:  # a second Ctrl-C, or a bug: the manifest must not stay "running"
        # a Ctrl-C before the run's own handling was in place (no abort asked for) measured nothing here:
        # a new run directory goes; a resumed one keeps its points, marked interrupted
        early = isinstance(e, KeyboardInterrupt) and not sweep.abort_flag
        if early and sweep.attempt == 0 and not sweep.rows and run.discard_unstarted():
            raise
        again = isinstance(e, KeyboardInterrupt) and not early
        if early:
            status, why = "interrupted", "interrupted while starting"
        elif again:
            status, why = "interrupted", "a second Ctrl-C stopped it at once"
        else:
            status, why = "failed", f"{type(e).__name__}: {e}".rstrip(": ")
        try:
            run.close()
            run.set_status(status, why)
        except OSError:
            pass  # the disk that failed the run cannot take its status either: `running` stays, as on a kill
        if again:
            # the engine's SIGTERM grace is what the second Ctrl-C cut short: no waiting for it again
            stop_all(grace_s=0)
            raise InterruptedAgain(run.path) from None
        if early:
            raise InterruptedStarting(run.path) from None
        if isinstance(e, OSError):
            raise RunWriteFailed(run.path, e, not sweep.find_max_goodput) from e
        raise
    try:
        run.close()
        return sweep.finish()
    except OSError as e:  # the last records, or the status
        raise RunWriteFailed(run.path, e, not sweep.find_max_goodput) from e


@dataclass
class _Sweep:
    """One run's sweep over its variants: what has been measured, and what stopped it."""

    s: Scenario
    run: RunDir
    points: list[Point]
    rows: list[dict[str, Any]]
    next_id: int
    attempt: int
    dataset: list[DatasetRow] | None
    console: Console
    progress: Progress
    telemetry: TelemetryFactory
    abort_flag: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    interrupted: str | None = None
    engine: Engine | None = None  # the variant's, from when it is made (a failed start stops it too)
    scenario_file: str | None = None  # as the user named it, for the resume command the run's end prints
    find_max_goodput: bool = False  # a rate search instead of the planned points
    done: set[str] = field(init=False)

    def __post_init__(self) -> None:
        self.done = {r["point_id"] for r in self.rows}

    def variant(self, vi: int, vpoints: list[Point]) -> None:
        """Start variant `vi`'s engine and measure its points (or search its rate); the engine and its
        telemetry stop however this ends."""
        tel: TelemetrySet | None = None
        entry: dict[str, Any] = {}  # this engine's manifest entry
        tag = f"v{vi}" + (f"-a{self.attempt}" if self.attempt else "")  # telemetry and llama-bench file names
        try:
            started = self._start(vi, vpoints, tag)
            if started is None:
                return
            engine, base_url, counters = started
            entry = {"variant": vi, "attempt": self.attempt, **engine.describe()}
            self._warn(vi, entry, vpoints[0].engine)
            self.run.manifest["engines"].append(entry)
            tel = self.telemetry(self.s, engine)
            tel.start()
            print_telemetry(self.console, tel)
            self.run.update_manifest(engines=self.run.manifest["engines"])
            search = RateSearch(vpoints[0].rate_rps or 1.0) if self.find_max_goodput else None
            failed_before = len(self.failures)  # an earlier variant's failure is not this one's
            self._measure(PointPlan(vpoints, search), engine, base_url, counters, tel, entry, tag)
            variant_failed = len(self.failures) > failed_before
            if search is not None:
                self._searched(vi, vpoints, search, variant_failed)
        finally:
            if tel is not None:
                tel.stop(self.run.path, tag)
                _keep_telemetry(self.run, entry, tel)
            if self.engine is not None:
                self.engine.stop()
                self.engine = None
            self.run.sync()

    def _start(self, vi: int, vpoints: list[Point], tag: str) -> tuple[Engine, str, Any] | None:
        """The variant's engine started and healthy, with its base URL and prompt counters; None when it
        did not start (the failure, or the interruption, is kept)."""
        stage = f"engine (variant {vi}) start-up"  # what a Ctrl-C before the first point stopped
        cfg = vpoints[0].engine
        try:
            self.engine = engine = make_engine(cfg, self.run.path / f"engine-v{vi}.log")
            if why := model_changed(self.run.manifest, vi, engine):
                raise ModelError(why)
            if getattr(cfg, "llama_bench", None) is not None:
                stage = f"llama-bench (variant {vi})"
                _llama_bench(cfg, engine, self.s, self.run, tag, self.console, vi, self.attempt)
                stage = f"engine (variant {vi}) start-up"
            doing = (
                "reaching the external endpoint" if cfg.type == "external" else f"starting {cfg.type} engine"
            )
            self.console.print(f"{doing} (variant {vi}) ...")
            t0 = time.monotonic()
            with start_task(self.progress, f"v{vi} start-up", self.run.path / f"engine-v{vi}.log"):
                base_url = engine.start()
            counters = prompt_counters(self.s, engine, base_url, self.run, vi)
        except (EngineError, ModelError) as e:
            if self.abort_flag:
                self.interrupted = f"{stage}: {self.abort_flag[0]}"
            else:
                self.failures.append(f"engine (variant {vi}) did not start: {e}")
                self._record_failed_start(vi, e)
            return None
        self.console.print(f"engine healthy at {base_url} after {time.monotonic() - t0:.1f} s", markup=False)
        return engine, base_url, counters

    def _record_failed_start(self, vi: int, error: Exception) -> None:
        """A start that failed goes into the manifest's `failed_starts` (there is no `engines` entry for
        it): why, and the command line it ran, if it got as far as one."""
        argv = redact(getattr(self.engine, "argv", None) or [])
        failed = {"variant": vi, "attempt": self.attempt, "error": str(error), "command": argv or None}
        self.run.update_manifest(failed_starts=[*self.run.manifest.get("failed_starts", []), failed])

    def _warn(self, vi: int, entry: dict[str, Any], cfg: Any) -> None:
        """Print the engine's warnings, the GPU the run is labelled with among them (that of the GPUs its
        configuration `cfg` was given), which goes into its manifest entry too (report gives them again)."""
        if mismatch := gpu_mismatch(self.s, entry, self.run.manifest, cfg):
            entry["warnings"] = [*(entry.get("warnings") or []), mismatch]
        for w in entry.get("warnings") or []:
            self.console.print(f"[yellow]warning[/] engine (variant {vi}): {escape(w)}", highlight=False)

    def _should_abort(self, engine: Any) -> str | None:
        if self.abort_flag:
            return self.abort_flag[0]
        if not engine.alive():
            code = engine.proc.poll() if getattr(engine, "proc", None) else None
            return f"engine process exited (code {code})"
        return None

    def _measure(
        self,
        plan: PointPlan,
        engine: Engine,
        base_url: str,
        counters: Any,
        tel: TelemetrySet,
        entry: dict[str, Any],
        tag: str,
    ) -> None:
        """Measure the plan's points in turn; the first point cut short ends the variant."""
        s, run = self.s, self.run
        for n_point, p in enumerate(plan):
            row, aborted, self.next_id = measure_point(
                s,
                p,
                engine,
                base_url,
                run,
                tel,
                self.progress,
                self.next_id,
                lambda: self._should_abort(engine),
                counters,
                self.dataset,
                self.console,
                self.attempt,
                warmup=s.load.warmup_scope == "point" or n_point == 0,
            )
            if row is not None:
                self.rows.append(row)
                run.write_points(self.rows)
                tel.checkpoint(run.path, tag)  # a harness killed later keeps the samples so far
                _keep_telemetry(run, entry, tel)
            if row is None and not aborted:
                # no measured request ended (a duration_s shorter than the first one): not a
                # measurement; a rate search cannot judge it and would probe it again and again
                aborted = "no measured request ended in the point (duration_s too short?)"
            plan.observe(p, row["slo_met"] if row is not None and not aborted else None, row)
            if not aborted:
                self.done.add(p.point_id)
            # one manifest write a point: points done, and this engine's entry with its telemetry
            self._points_done()
            if aborted:
                log = engine.log_path()
                msg = f"point {p.point_id}: {aborted}" + (f"; engine log: {log}" if log else "")
                if self.abort_flag:
                    self.interrupted = msg
                else:
                    self.failures.append(msg)
                return

    def _points_done(self) -> None:
        self.run.update_manifest(points_done=[q.point_id for q in self.points if q.point_id in self.done])

    def _searched(self, vi: int, vpoints: list[Point], search: RateSearch, variant_failed: bool) -> None:
        """Keep what the variant's rate search found, and say it."""
        if not self.interrupted and not variant_failed:
            self.done.update(q.point_id for q in vpoints)  # the search replaces the planned rates
            self._points_done()
        found = {"variant": vi, **search.summary()}
        stopped = "interrupted" if self.interrupted else "failed" if variant_failed else None
        if stopped:
            found["stopped"] = stopped
        self.run.update_manifest(max_goodput=[*self.run.manifest.get("max_goodput", []), found])
        self.console.print(
            f"variant {vi}: {search_result_text(found, self.rows, vi)}", markup=False, highlight=False
        )

    def finish(self) -> RunResult:
        """The run's status, kept in its manifest; a run that is not complete raises `RunFailed`."""
        run, rows, points, done = self.run, self.rows, self.points, self.done
        missing = [p.point_id for p in points if p.point_id not in done]
        # every point ran and every measured request failed
        measured_nothing = (
            not self.interrupted
            and not missing
            and bool(rows)
            and not any((r.get("ok") or 0) > 0 for r in rows)
        )
        if self.interrupted:
            status, message = "interrupted", self.interrupted
        elif measured_nothing:
            # not a measurement (compare would take its empty points over an earlier run's); a run again,
            # not a resume, is what measures it
            first = next(
                (
                    r.error
                    for r in iter_records(run.path)
                    if not r.warmup and r.attempt == self.attempt and r.error
                ),
                None,
            )
            status = "failed"
            message = "every measured request failed: the run measures nothing"
            message += f" (first error: {first[:300]})" if first else ""
        elif not missing:
            status, message = "complete", None
        else:
            status = "partial" if done else "failed"
            message = "; ".join(self.failures) or f"points not run: {', '.join(missing)}"
        run.set_status(status, message)
        if status == "complete":
            return RunResult(run.path, rows, status)
        if measured_nothing:
            did = f"their records are in {run.path / 'requests.jsonl'}"
        else:
            # an engine that never started leaves logs and the manifest, not requests
            if _has_records(run.path):
                kept = "finished requests kept in"
            elif any(run.path.glob("engine-*.log")):
                kept = "no request finished; logs in"
            else:  # an external endpoint, or an engine that was never started, writes no log
                kept = "no request finished; the run's manifest is in"
            if self.find_max_goodput:  # probes, not the planned points; a search starts again, not resumes
                judged = sum(1 for r in rows if not r.get("aborted"))
                did = f"{judged} probe(s) measured; {kept} {run.path} (a rate search is not resumed: run it "
                did += "again)"
            elif not done and not self.interrupted:  # nothing to continue; a resume refuses a mended scenario
                did = f"0 of {len(points)} point(s) done; {kept} {run.path} (run it again once the cause "
                did += "is mended)"
            else:
                did = f"{len(done)} of {len(points)} point(s) done; {kept} {run.path} (continue with: "
                did += f"harness run {self.scenario_file or 'SCENARIO'} --resume {run.path})"
        # a message that ends in an engine's log lines gets the rest on a line of its own
        sep = "\n" if "\n" in (message or "") else ". "
        raise RunFailed(f"run {status}: {message}{sep}{did}", run.path)


def _has_records(run: Path) -> bool:
    return next(iter_records(run), None) is not None


def _llama_bench(
    cfg: Any, engine: Any, s: Scenario, run: RunDir, tag: str, console: Console, vi: int, attempt: int
) -> None:
    """llama-bench on the variant's model and settings, before its server starts; what it measured (or
    why it could not) is printed and kept in the manifest's `llama_bench` list at once (also when the
    server then fails to start)."""
    console.print(f"llama-bench (variant {vi}) on {engine.model.path.name} ...", markup=False)
    got = llama_bench.run(cfg, str(engine.model.path), s.workload, run.path, tag)
    run.update_manifest(
        llama_bench=[*run.manifest.get("llama_bench", []), {"variant": vi, "attempt": attempt, **got}]
    )
    if left := got.get("server_args_not_carried"):
        console.print(
            f"[yellow]warning[/] llama-bench (variant {vi}): server options it was not given: "
            f"{escape(' '.join(left))}",
            highlight=False,
        )
    if err := got.get("error"):
        console.print(f"[yellow]warning[/] llama-bench (variant {vi}): {escape(err)}", highlight=False)
    if got.get("tests"):
        said = ", ".join(f"{t['test']} {t['avg_ts']:.1f} tok/s" for t in got["tests"])
        console.print(f"llama-bench (variant {vi}): {said}", markup=False, highlight=False)


def _keep_telemetry(run: RunDir, entry: dict[str, Any], tel: TelemetrySet) -> None:
    """The telemetry manifest into the engine's entry (its own, with the files of its samples) and the
    run's top-level `telemetry` (the last engine's); written with the next manifest update."""
    got = tel.manifest()
    run.manifest.setdefault("telemetry", {}).update(got)
    entry["telemetry"] = got
