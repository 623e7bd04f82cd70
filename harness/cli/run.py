"""`harness validate` and `harness run`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from harness.cli.common import EXIT_RUN_FAILED, dangling, err, fail, out
from harness.scenario import Scenario, ScenarioError, load_scenario


def load(path: Path) -> tuple[Scenario, bool]:
    """The scenario file at `path`, or the scenario a run directory's manifest stored (`path` is the run
    directory or its manifest.json), with whether that run searched with `--find-max-goodput`."""
    from harness.rerun import run_manifest, stored_scenario

    if run_manifest(path) is not None:
        return stored_scenario(path)
    return load_scenario(path), False


def validate(
    files: Annotated[
        list[Path], typer.Argument(help="scenario YAML files, or run directories (the scenario they ran)")
    ],
) -> None:
    """Check scenario files; print `file: field: problem (allowed: ...)` for each error, exit 2."""
    bad: list[str] = []
    for f in files:
        try:
            s, _ = load(f)
            from harness.scenario import (
                combination_warnings,
                input_file_errors,
                machine_warnings,
            )
            from harness.scenario.timing import counts, load_time

            missing = input_file_errors(s, str(f))
            if missing:
                raise ScenarioError(missing)
            out.print(f"{f}: ok ({counts(load_time(s))})", markup=False, highlight=False)
            for w in combination_warnings(s, str(f)) + machine_warnings(s, str(f)):
                err.print(f"[yellow]warning[/] {escape(w)}", highlight=False)
        except ScenarioError as e:
            bad.extend(e.messages)
    if bad:
        raise fail(bad)


# measured requests a rate-search probe should send at least: fewer leave the engine nearly idle
MIN_SEARCH_REQUESTS = 10


def _unwritable(results: Path) -> str | None:
    """Why run directories cannot be made under `results` (None: they can; it is created if missing)."""
    if results.exists() and not results.is_dir():
        return "exists and is not a directory"
    if why := dangling(results):
        return why
    try:
        results.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return f"cannot create it: {e.strerror or e}"
    if not os.access(results, os.W_OK | os.X_OK):
        return "not writable"
    return None


def run(
    scenario: Annotated[
        Path,
        typer.Argument(
            help="scenario YAML file, or a run directory: run the scenario its manifest stored again "
            "(a --find-max-goodput search searches again)"
        ),
    ],
    results: Annotated[
        Path | None, typer.Option(help="directory holding run directories (default: results)")
    ] = None,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="no progress bars")] = False,
    resume: Annotated[
        Path | None,
        typer.Option(
            help="continue this unfinished run directory (same scenario, in place): skip finished points"
        ),
    ] = None,
    find_max_goodput: Annotated[
        bool,
        typer.Option(
            "--find-max-goodput",
            help="open loop: bisect over rate (from the first of load.rates_rps) for the highest rate "
            "at which slo.attainment of the requests meet every SLO",
        ),
    ] = False,
) -> None:
    """Run a scenario: start the engine, sweep the load points, write results/<time>-<name>/."""
    from harness import report
    from harness.hostinfo import raise_open_files_limit
    from harness.load.search import attainment_resolution_note
    from harness.resume import ResumeError
    from harness.runner import InterruptedAgain, InterruptedStarting, RunFailed, RunWriteFailed, run_scenario
    from harness.scenario import combination_warnings, input_file_errors, machine_warnings

    try:
        s, searched = load(scenario)
    except ScenarioError as e:
        raise fail(e.messages) from None
    find_max_goodput = find_max_goodput or searched
    # the proxy warnings come with each engine's start (its manifest entry keeps them)
    for w in combination_warnings(s, str(scenario)) + machine_warnings(s, str(scenario), proxies=False):
        err.print(f"[yellow]warning[/] {escape(w)}", highlight=False)
    missing = input_file_errors(s, str(scenario))
    if missing:
        raise fail(missing)
    if find_max_goodput and s.load.mode != "open":
        raise fail(f"{scenario}: load.mode: --find-max-goodput needs open (allowed: open)")
    if find_max_goodput and s.load.requests < MIN_SEARCH_REQUESTS:
        err.print(
            f"[yellow]warning[/] {escape(str(scenario))}: load.requests: {s.load.requests} requests a probe "
            "are over before they load the engine at the probe's rate, so the search judges a nearly idle "
            f"engine (allowed: >= {MIN_SEARCH_REQUESTS}, or more)",
            highlight=False,
        )
    if find_max_goodput and (why := attainment_resolution_note(s.load.requests, s.slo.attainment)):
        err.print(f"[yellow]warning[/] {escape(str(scenario))}: {escape(why)}", highlight=False)
    if resume is not None and results is not None:
        raise fail(f"--results: not used with --resume (the run continues in {resume} itself)")
    from harness.client.http1 import trust_env_problem

    if why := trust_env_problem():
        raise fail(why)
    results = Path("results") if results is None else results
    if resume is None and (why := _unwritable(results)):  # last: it makes the directory
        raise fail(f"--results {results}: {why}")
    raise_open_files_limit()  # a socket for each request in flight, in this process and its client workers
    try:
        res = run_scenario(
            s,
            results,
            str(scenario),
            console=err,
            show_progress=not no_progress,
            resume=resume,
            find_max_goodput=find_max_goodput,
        )
    except ResumeError as e:
        raise fail(str(e)) from None
    except InterruptedStarting as e:  # a resumed run, before its first point: it keeps its points
        raise fail(
            "interrupted while the run was starting: nothing new was measured "
            f"(continue with: harness run {scenario} --resume {e.run_dir})",
            130,
        ) from None
    except InterruptedAgain as e:
        raise fail(
            "interrupted again: stopped at once; the run directory is marked interrupted "
            f"(continue with: harness run {scenario} --resume {e.run_dir})",
            130,
        ) from None
    except KeyboardInterrupt:  # before the run's own Ctrl-C handling was in place: nothing was measured
        raise fail("interrupted while the run was starting: nothing was measured", 130) from None
    except RunWriteFailed as e:
        then = (
            f"continue with: harness run {scenario} --resume {e.run_dir}"
            if e.resumable
            else "a rate search is not resumed: run it again"
        )
        raise fail(
            f"cannot write the run's files in {e.run_dir}: {e}; what was written so far is kept ({then})",
            EXIT_RUN_FAILED,
        ) from None
    except OSError as e:  # the results disk, before the run directory was made or after the run
        raise fail(
            f"cannot write the run's files: {e.strerror or e}{f' ({e.filename})' if e.filename else ''}; "
            "what was written so far is kept (harness run --resume continues a run whose manifest was saved)",
            EXIT_RUN_FAILED,
        ) from None
    except RunFailed as e:
        if (e.run_dir / "points.parquet").exists():
            report.report_run(e.run_dir, out)
        raise fail(str(e), EXIT_RUN_FAILED) from None
    md = report.report_run(res.run_dir, out)
    err.print(f"results: {res.run_dir} (table: {md})", markup=False)
