"""Drive SkyPilot's CLI for one machine: launch (waits for the job), fetch the results, tear down.

The `sky` command is used rather than the Python SDK because `sky launch` (SkyPilot 0.14) is what
writes the cluster's SSH alias that rsync needs (the SDK leaves that to the CLI) and exits with the
job's exit code; and it lets SkyPilot live in its own environment (pipx/uv tool), apart from the
harness's dependencies. Results come back with
`rsync -az --no-links --partial CLUSTER:harness-results/ LOCAL/`, the download path SkyPilot documents;
on multi-node clusters the run directory is on the head node.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.cloud.task import REMOTE_RESULTS
from harness.fileio import write_text_whole


def sky_launch_argv(
    cluster: str, task_file: Path, secrets: tuple[str, ...] = (), keep: bool = False, idle_minutes: int = 30
) -> list[str]:
    """`sky launch`, streaming logs until the job ends. Unless --keep, SkyPilot itself tears the cluster
    down after `idle_minutes` without jobs (a safety net should this process die before `sky down`)."""
    argv = ["sky", "launch", "--yes", "--cluster", cluster]
    if not keep:
        argv += ["--idle-minutes-to-autostop", str(idle_minutes), "--down"]
    for name in secrets:
        argv += ["--secret", name]  # value read from this process's environment by SkyPilot
    return [*argv, str(task_file)]


def rsync_argv(cluster: str, local_dir: Path) -> list[str]:
    """Copy every run directory from the head node; never deletes local files. Links are not copied
    (`--no-links`): a run directory has none, and one planted on the rented machine would have later
    writes here (cloud.json, a resumed run's records) go wherever it points."""
    return ["rsync", "-az", "--no-links", "--partial", f"{cluster}:{REMOTE_RESULTS}/", f"{local_dir}/"]


def sky_down_argv(cluster: str) -> list[str]:
    return ["sky", "down", "--yes", cluster]


def sky_autostop_argv(cluster: str, idle_minutes: int) -> list[str]:
    """Autodown for a cluster already up (what `sky launch -i N --down` sets, set again)."""
    return ["sky", "autostop", cluster, "-i", str(idle_minutes), "--down"]


def missing_tools() -> list[str]:
    """Commands a real launch needs that are not on PATH."""
    return [t for t in ("sky", "rsync", "ssh") if shutil.which(t) is None]


@dataclass
class MachineRun:
    """What happened to one machine of a launch; written to LOCAL_DIR/cloud.json."""

    cluster: str
    accelerators: str
    nodes: int
    local_dir: str
    task: dict[str, Any]
    price_usd_per_gpu_hour: list[float] | None = None
    price_source: str | None = None
    max_hours: float | None = None
    started_utc: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat())
    finished_utc: str | None = None
    launch_rc: int | None = None
    fetch_rc: int | None = None
    down_rc: int | None = None
    autostop_rc: int | None = None
    run_dirs: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Ran, fetched at least one run directory, and (unless kept) torn down."""
        return (
            self.launch_rc == 0 and self.fetch_rc == 0 and self.down_rc in (0, None) and bool(self.run_dirs)
        )

    def save(self) -> None:
        write_text_whole(Path(self.local_dir) / "cloud.json", json.dumps(asdict(self), indent=2) + "\n")


# a run directory's name: <UTC time>-<scenario name>, whose characters the scenario's name allows
RUN_DIR_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def fetched_runs(local: Path) -> list[str]:
    """The run directories fetched into `local`. A name no run directory has (shell or terminal control
    characters, from the rented machine) is left out, so the commands printed with these paths are
    safe to paste."""
    return sorted(
        str(p)
        for p in local.iterdir()
        if RUN_DIR_NAME.fullmatch(p.name) and not p.is_symlink() and (p / "manifest.json").is_file()
    )


def _run(argv: list[str], say: Callable[[str], None]) -> int:
    say("$ " + shlex.join(argv))
    try:
        return subprocess.run(argv, check=False).returncode
    except OSError as e:
        say(f"cannot run {argv[0]}: {e}")
        return 127


def launch_one(
    m: MachineRun,
    task_yaml: str,
    say: Callable[[str], None],
    secrets: tuple[str, ...] = (),
    keep: bool = False,
    idle_minutes: int = 30,
) -> MachineRun:
    """Launch, wait, fetch, tear down. A failed job still has its (partial) results fetched; a failed
    fetch leaves the cluster up (SkyPilot's autodown still applies) so nothing measured is lost."""
    local = Path(m.local_dir)
    local.mkdir(parents=True, exist_ok=True)
    task_file = local / "task.yaml"
    task_file.write_text(task_yaml, encoding="utf-8")
    m.save()
    try:
        m.launch_rc = _run(sky_launch_argv(m.cluster, task_file, secrets, keep, idle_minutes), say)
        m.save()
        m.fetch_rc = _run(rsync_argv(m.cluster, local), say)
        m.run_dirs = fetched_runs(local)
        if m.fetch_rc != 0:
            if not keep:  # make sure it goes down by itself once idle, whatever stage it reached
                m.autostop_rc = _run(sky_autostop_argv(m.cluster, idle_minutes), say)
            say(
                f"{m.cluster}: fetching results failed (rsync exit {m.fetch_rc}); not tearing down: it"
                f" may still be up (check: sky status {m.cluster})"
                + ("" if keep else f"; it tears itself down after {idle_minutes} idle minutes")
                + f".\nRetry: {shlex.join(rsync_argv(m.cluster, local))}"
                f"\nthen: {shlex.join(sky_down_argv(m.cluster))}"
            )
        elif keep:
            say(f"{m.cluster}: kept up (--keep); tear it down with: {shlex.join(sky_down_argv(m.cluster))}")
        else:
            m.down_rc = _run(sky_down_argv(m.cluster), say)
            if m.down_rc != 0:
                say(
                    f"{m.cluster}: `sky down` failed (exit {m.down_rc}): it may still be up and billing "
                    f"(check: sky status {m.cluster}; retry: {shlex.join(sky_down_argv(m.cluster))})"
                )
    except KeyboardInterrupt:
        say(
            f"\ninterrupted; {m.cluster} may still be up. Fetch: {shlex.join(rsync_argv(m.cluster, local))}\n"
            f"Tear down: {shlex.join(sky_down_argv(m.cluster))}"
        )
        raise
    finally:
        m.finished_utc = dt.datetime.now(dt.UTC).isoformat()
        m.save()
    return m
