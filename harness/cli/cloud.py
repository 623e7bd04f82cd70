"""`harness cloud launch`: run a scenario on rented GPUs through SkyPilot and bring the results back."""

from __future__ import annotations

import functools
import os
import re
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from harness.cli.common import PipeConsole, finite, write_stdout
from harness.cloud import cost, launcher
from harness.cloud.checks import check_launch
from harness.cloud.task import (
    CloudError,
    LaunchOptions,
    build_task,
    cluster_name,
    resolve_accelerators,
    source_tree,
    task_yaml,
    untracked,
)
from harness.engines.base import looks_secret
from harness.extras import pip_install
from harness.scenario import Scenario, ScenarioError, load_scenario
from harness.scenario.timing import describe, load_time

cloud_app = typer.Typer(
    no_args_is_help=True,
    help="Rent GPUs through SkyPilot: run a scenario there, bring the run directories back.",
)
err = PipeConsole(stderr=True, soft_wrap=True, highlight=False, emoji=False)


def _fail(messages: list[str] | str, code: int = 2) -> typer.Exit:
    for m in [messages] if isinstance(messages, str) else messages:
        err.print(m, markup=False)
    return typer.Exit(code)


@dataclass
class _Plan:
    cluster: str
    opts: LaunchOptions
    yaml_text: str
    task: dict[str, object]
    price: cost.Price | None
    devices: list[str]  # the catalog devices the accelerator can be on this launch (`cost.launch_devices`)


def _parse_envs(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise CloudError([f"--env: invalid value {item!r} (allowed: NAME=VALUE)"])
        password = _has_password(value)
        if looks_secret(key) or password:
            # --env values are written into task.yaml and cloud.json under results/, which get committed
            what = " (a URL with a password)" if password else ""
            raise CloudError(
                [
                    f"--env: {key} looks like a secret{what}; pass it as --secret {key} (its value is read"
                    " from your environment and sent to the cluster without being written to any file)"
                ]
            )
        out[key] = value
    return out


def _has_password(value: str) -> bool:
    """A URL with a password in it (`postgres://user:pw@host/db`)."""
    return re.search(r"[A-Za-z][A-Za-z0-9+.-]*://[^/@\s:]*:[^/@\s]+@", value) is not None


def _check_secrets(names: list[str]) -> tuple[str, ...]:
    """`--secret NAME`s: each a variable set in this environment, where SkyPilot reads its value."""
    for name in names:
        if not name.isidentifier():
            raise CloudError(
                [
                    f"--secret: invalid value {name!r} (allowed: the NAME of an environment variable; "
                    "its value is read from your environment)"
                ]
            )
        if name not in os.environ:
            raise CloudError(
                [f"--secret: {name} is not set in your environment (its value is read from there)"]
            )
    return tuple(names)


def parse_gpu_prices(items: list[str]) -> dict[str, float]:
    """`--price` values: `2.99` (every accelerator: key "") or `H100=2.99` (that SkyPilot accelerator name,
    lower-cased), USD per GPU-hour."""
    from harness.catalog.prices import repeated
    from harness.keyvalues import RepeatedName, name_numbers

    try:
        return {k.lower(): v for k, v in name_numbers(items, bare=True).items()}
    except RepeatedName as e:
        raise CloudError([f"--price: {repeated(e)}"]) from None
    except ValueError as e:
        raise CloudError(
            [
                f"--price: invalid value {e.args[0]!r} (allowed: USD_PER_GPU_HOUR > 0, or NAME=USD such as "
                "H100=2.99)"
            ]
        ) from None


def _cost_lines(plans: list[_Plan], max_hours: float, idle_minutes: int | None = None) -> list[str]:
    """Estimated cost of `max_hours` of benchmarking per machine. Not a bound: provisioning, the image
    pull, setup, and the idle time before autodown are billed on top (the last line says so)."""
    lines: list[str] = []
    total_lo = total_hi = 0.0
    unknown: list[str] = []
    for p in plans:
        acc, nodes = p.opts.accelerators, p.opts.nodes
        head = f"{p.cluster}: {acc} × {nodes} node{'s' if nodes > 1 else ''}"
        head += " (spot)" if p.opts.spot else ""
        if p.price is None:
            unknown.append(acc.name)
            lines.append(f"{head}: no price known for {acc.name}")
            continue
        per_h = cost.hourly_usd(p.price, acc.count, nodes)
        run = cost.run_cost_usd(p.price, acc.count, nodes, max_hours)
        total_lo, total_hi = total_lo + run[0], total_hi + run[1]
        lines.append(
            f"{head}: {cost.fmt_range(*per_h)}/h; {max_hours:g} h of benchmark: {cost.fmt_range(*run)}"
            f"  [{p.price.source}]"
        )
    if len(plans) > len(unknown) and (len(plans) > 1 or unknown):  # nothing priced: no total to give
        tail = f" + {', '.join(sorted(set(unknown)))} (unpriced)" if unknown else ""
        lines.append(f"sweep, benchmark time: {cost.fmt_range(total_lo, total_hi)}{tail}")
    if unknown:
        lines.append("pass --price USD_PER_GPU_HOUR to price it; SkyPilot's launch table shows live prices")
    if any(p.opts.spot for p in plans):
        lines.append("spot prices are usually lower than these on-demand ranges")
    idle = f", and up to {idle_minutes} idle minutes before autodown" if idle_minutes else ""
    lines.append(f"estimates: start-up (provisioning, image pull, setup){idle} are billed on top")
    return lines


@cloud_app.command()
def launch(
    scenario: Annotated[Path, typer.Argument(help="scenario YAML file")],
    gpus: Annotated[
        list[str] | None,
        typer.Option("--gpus", help="NAME:COUNT per node, e.g. H100:8; repeat for a sweep over machines"),
    ] = None,
    cloud: Annotated[
        str | None, typer.Option("--cloud", "--infra", help="aws, gcp, lambda, runpod, aws/us-east-1, …")
    ] = None,
    nodes: Annotated[int | None, typer.Option(min=1, help="nodes (default: hardware.nodes)")] = None,
    network_tier: Annotated[
        str,
        typer.Option(
            help="multi-node interconnect: best (the fastest the cloud offers: AWS, GCP, Nebius) or "
            "default (the cloud's ordinary network; Lambda and Azure have only this)"
        ),
    ] = "best",
    spot: Annotated[bool, typer.Option("--spot", help="spot/preemptible instances")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the SkyPilot task(s) only")] = False,
    keep: Annotated[bool, typer.Option("--keep", help="leave the cluster up afterwards")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask before launching")] = False,
    results: Annotated[Path, typer.Option(help="local results root; runs land in RESULTS/CLUSTER/")] = Path(
        "results"
    ),
    image: Annotated[
        str | None, typer.Option(help="docker:IMAGE[:TAG] (default: the engine's pinned image) or none")
    ] = None,
    price: Annotated[
        list[str] | None,
        typer.Option(
            help="USD per GPU-hour for the estimate: a number for every --gpus, or NAME=USD for one "
            "(H100=2.99, or h100-sxm=2.99 where the cloud has SXM cards only; repeatable)"
        ),
    ] = None,
    max_hours: Annotated[
        float, typer.Option(**finite(0.05), help="stop the benchmark after this long")
    ] = 2.0,
    disk_size: Annotated[
        int, typer.Option("--disk-gb", "--disk-size", min=50, help="disk per node, GB")
    ] = 256,
    idle_minutes: Annotated[int, typer.Option(min=1, help="autodown after this idle time")] = 30,
    env: Annotated[list[str] | None, typer.Option("--env", help="NAME=VALUE set on the cluster")] = None,
    secret: Annotated[
        list[str] | None, typer.Option("--secret", help="NAME of a local env var sent as a secret")
    ] = None,
) -> None:
    """Rent the GPUs a scenario needs (SkyPilot), run it there, fetch the run directories, tear down."""
    try:
        s = load_scenario(scenario)
    except ScenarioError as e:
        raise _fail(e.messages) from None
    workdir = source_tree()
    if workdir is None and (image is None or image == "none"):
        raise _fail("--image: needed when the harness is not a source checkout (nothing to sync)")
    try:
        options = functools.partial(
            LaunchOptions,
            nodes=nodes or s.hardware.nodes,
            infra=cloud,
            spot=spot,
            image=image,
            disk_size_gb=disk_size,
            max_hours=max_hours,
            envs=_parse_envs(env or []),
            secrets=_check_secrets(secret or []),
            network_tier=network_tier,
        )
        plans, warnings = _plans(s, scenario, gpus, options, parse_gpu_prices(price or []), workdir)
    except CloudError as e:
        raise _fail(e.messages) from None
    if not dry_run:
        _check_can_launch(plans, results)
    # SkyPilot's refusal (a cloud it does not know, a feature the cloud lacks) comes before anything else:
    # the warnings would be about a launch that cannot happen, and a dry run prints no task it refuses
    _validate(plans, quiet_unavailable=not dry_run)
    for w in dict.fromkeys(warnings):
        err.print(f"warning: {w}", markup=False)
    if workdir is not None and (extra := untracked(workdir)):
        more = f" (+{len(extra) - 5} more)" if len(extra) > 5 else ""
        err.print(
            f"note: {workdir} is synced to the rented machine, with {len(extra)} file(s) git does not track:"
            f" {', '.join(extra[:5])}{more}; what .gitignore lists stays here",
            markup=False,
        )
    err.print(f"plan: {describe(load_time(s))}", markup=False)
    idle = None if keep else idle_minutes
    if dry_run:
        _print_dry_run(plans, results, keep, idle_minutes, max_hours)
        return
    for line in _cost_lines(plans, max_hours, idle):
        err.print(line, markup=False)
    _confirm(yes, len(plans))
    done: list[launcher.MachineRun] = []
    for p in plans:
        try:
            done.append(
                launcher.launch_one(
                    _machine_run(p, results, max_hours),
                    p.yaml_text,
                    err.print,
                    p.opts.secrets,
                    keep,
                    idle_minutes,
                )
            )
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
    _print_outcome(done)
    if not all(m.ok for m in done):
        raise typer.Exit(3)


def _plans(
    s: Scenario,
    scenario: Path,
    gpus: list[str] | None,
    options: Callable[..., LaunchOptions],
    prices: dict[str, float],
    workdir: Path | None,
) -> tuple[list[_Plan], list[str]]:
    """One plan (cluster name, options, SkyPilot task, price) per `--gpus`, and the checks' warnings."""
    plans: list[_Plan] = []
    warnings: list[str] = []
    for spec in list(gpus) if gpus else [None]:
        acc = resolve_accelerators(s, str(scenario), spec)
        opts = options(accelerators=acc)
        warnings += check_launch(s, str(scenario), opts)
        name = cluster_name(s.name, acc, opts.nodes)
        if any(p.cluster == name for p in plans):
            raise CloudError([f"--gpus: {acc} is given twice"])
        t = build_task(s, scenario, opts, workdir, name)
        cloud = (opts.infra or "").split("/")[0].lower() or None
        can_be = cost.launch_devices(acc.name, cloud)
        own = can_be[0] if len(can_be) == 1 else None  # the catalog key that names this launch's device
        # the device's own key wins over the name that covers it, as `--price` elsewhere
        usd = (
            prices[own] if own is not None and own in prices else prices.get(acc.name.lower(), prices.get(""))
        )
        plans.append(_Plan(name, opts, task_yaml(t), t, cost.lookup_price(acc.name, usd, cloud), can_be))
    named = {p.opts.accelerators.name.lower(): p.opts.accelerators.name for p in plans}
    keys = {p.devices[0] for p in plans if len(p.devices) == 1}
    for key in prices:
        if key and key not in named and key not in keys:  # its price would go unused
            raise CloudError([_unused_price(key, plans)])
    return plans, warnings


def _unused_price(key: str, plans: list[_Plan]) -> str:
    """Why `--price key` prices no machine of the launch: a device the launch's accelerator name may or
    may not get (H100: h100-sxm or h100-pcie, unless the cloud has SXM parts only), or no name of it."""
    allowed = ", ".join(dict.fromkeys(f"{p.opts.accelerators.name}=USD" for p in plans))
    for p in plans:
        if key in p.devices:
            acc = p.opts.accelerators.name
            return (
                f"--price {key}: {acc} can be {' or '.join(p.devices)} on this launch, so that price may not"
                f" be what it pays; price the accelerator as --gpus names it (allowed: {allowed}, or USD"
                " alone)"
            )
    return (
        f"--price {key}: no accelerator of this launch has that name (allowed: {allowed}, as --gpus names it,"
        " a catalog device it is sure to be, or USD alone)"
    )


def _print_dry_run(
    plans: list[_Plan], results: Path, keep: bool, idle_minutes: int, max_hours: float
) -> None:
    """The tasks on stdout; the cost and the commands a launch would run."""
    for i, p in enumerate(plans):
        write_stdout(("---\n" if i else "") + f"# cluster: {p.cluster}\n" + p.yaml_text)
    for line in _cost_lines(plans, max_hours, None if keep else idle_minutes):
        err.print(line, markup=False)
    for p in plans:
        local = results / p.cluster
        cmds = [
            launcher.sky_launch_argv(p.cluster, local / "task.yaml", p.opts.secrets, keep, idle_minutes),
            launcher.rsync_argv(p.cluster, local),
        ]
        if not keep:
            cmds.append(launcher.sky_down_argv(p.cluster))
        err.print("would run:\n" + "\n".join("  " + " ".join(c) for c in cmds), markup=False)


def _check_can_launch(plans: list[_Plan], results: Path) -> None:
    """Refuse before renting anything: a cluster name an earlier launch wrote under, tools missing."""
    taken = [str(results / p.cluster) for p in plans if (results / p.cluster / "cloud.json").exists()]
    if taken:
        # one cluster name per scenario x GPUs: a second launch would share (and tear down) the first's
        raise _fail(
            f"{', '.join(taken)}: an earlier launch of the same cluster name wrote here (it may still be "
            "running: sky status); move that directory away or pass --results DIR"
        )
    missing = launcher.missing_tools()
    if missing:
        raise _fail(
            f"cannot launch: {', '.join(missing)} not found on PATH "
            f"({pip_install('cloud')} or pipx install skypilot, then `sky check`; "
            "rsync and ssh from your OS)"
        )


def _confirm(yes: bool, clusters: int) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise _fail("--yes: needed to launch without a terminal to confirm on")
    if not typer.confirm(f"Launch {clusters} cluster(s) now?", default=False, err=True):
        raise _fail("not launched", 1)


def _machine_run(p: _Plan, results: Path, max_hours: float) -> launcher.MachineRun:
    return launcher.MachineRun(
        cluster=p.cluster,
        accelerators=str(p.opts.accelerators),
        nodes=p.opts.nodes,
        local_dir=str(results / p.cluster),
        task=dict(p.task),
        price_usd_per_gpu_hour=(
            [p.price.low_usd_per_gpu_hour, p.price.high_usd_per_gpu_hour] if p.price else None
        ),
        price_source=p.price.source if p.price else None,
        max_hours=max_hours,
    )


def _print_outcome(done: list[launcher.MachineRun]) -> None:
    for m in done:
        status = (
            "ok"
            if m.ok
            else f"launch exit {m.launch_rc}, fetch exit {m.fetch_rc}"
            + (f", sky down exit {m.down_rc}" if m.down_rc not in (0, None) else "")
            + ("" if m.run_dirs else ", no run directory came back (the job's output is above)")
        )
        err.print(f"{m.cluster}: {status}; {len(m.run_dirs)} run dir(s) in {m.local_dir}", markup=False)
    runs = [r for m in done for r in m.run_dirs]
    if runs:
        err.print("compare them: " + shlex.join(["harness", "compare", *runs]), markup=False)


# what to change when the named cloud lacks a feature the task needs (SkyPilot's feature names)
FEATURE_HINTS = {
    "custom_network_tier": " (pass --network-tier default: the nodes then use the cloud's ordinary network)",
    "multi-node": " (multi-node launches need another cloud: aws, gcp, nebius, kubernetes)",
    "spot_instance": " (drop --spot)",
    "docker_image": " (pass --image none and a scenario whose engine the harness can install)",
}


def _validate(plans: list[_Plan], quiet_unavailable: bool = False) -> None:
    """Exit 2 where SkyPilot's loader refuses a task or its cloud lacks a feature it needs. Without an
    importable SkyPilot (`sky` from pipx), a note, or nothing for a launch (`sky launch` checks then) unless
    HARNESS_SKYPILOT_PYTHON names a Python that does not answer."""
    from harness.cloud.validate import (
        ENV_PYTHON,
        SkyPilotUnavailable,
        TaskInvalid,
        unknown_cloud,
        validate_task_yamls,
    )

    try:
        got = validate_task_yamls([p.yaml_text for p in plans])
    except SkyPilotUnavailable as e:
        if not quiet_unavailable or os.environ.get(ENV_PYTHON):  # a Python named that does not answer: said
            err.print(f"not checked with SkyPilot's loader: {e}", markup=False)
        return
    except TaskInvalid as e:
        raise _fail(unknown_cloud(str(e), plans[0].opts.infra) or f"SkyPilot rejects the task: {e}") from None
    problems = []
    for p, g in zip(plans, got, strict=True):
        for cloud, feature, reason in g.get("unsupported") or []:
            hint = FEATURE_HINTS.get(feature, "")
            problems.append(f"--cloud {p.opts.infra}: {p.cluster}: {cloud} lacks {feature}: {reason}{hint}")
    if problems:
        raise _fail([f"SkyPilot {got[0]['skypilot_version']} would refuse the launch:", *problems])
    for p, g in zip(plans, got, strict=True):
        err.print(f"{p.cluster}: task accepted by SkyPilot {g['skypilot_version']}'s loader", markup=False)
        for cloud, why in g.get("unchecked") or []:
            err.print(
                f"{p.cluster}: whether {cloud} has the features the task needs was not checked "
                f"({why.splitlines()[0][:200] if why else '?'}): `sky launch` checks them",
                markup=False,
            )
