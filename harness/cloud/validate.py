"""Check a task YAML with SkyPilot's own loader (`sky.Task.from_yaml`: its JSON schema and resource
parsing; works offline, no cloud credentials).

The loader runs in a child process: of this interpreter when it can import `sky`, else of the one
named by HARNESS_SKYPILOT_PYTHON (a pipx/uv tool environment, or the separate venv CI makes),
because skypilot pins click<8.2 and uvicorn<0.36 and may live apart from the harness.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from harness.extras import pip_install

ENV_PYTHON = "HARNESS_SKYPILOT_PYTHON"

_CHECK = """
import json
import sys

import sky
from sky import exceptions

for i, path in enumerate(sys.argv[1:]):
    try:
        task = sky.Task.from_yaml(path)
    except Exception as e:
        print(f"task {i}: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
    res = list(task.resources)
    # a resource on a named cloud: the features the task needs that the cloud lacks (the loader does not
    # check them; `sky launch` refuses them before provisioning)
    unsupported, unchecked = [], []
    for r in res:
        if r.cloud is None:
            continue
        needed = r.get_required_cloud_features() | task.get_required_cloud_features()
        for feature in sorted(needed, key=lambda f: f.value):
            try:
                r.cloud.check_features_are_supported(r, {feature})
            except exceptions.NotSupportedError as e:
                lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
                reason = lines[-1].split(None, 1)[-1].strip() if len(lines) > 1 else str(e)
                unsupported.append([str(r.cloud), feature.value, reason])
            except Exception as e:  # a cloud whose optional dependencies are missing: not checked, said
                unchecked.append([str(r.cloud), f"{type(e).__name__}: {e}"])
                break
    print(json.dumps({
        "unsupported": unsupported,
        "unchecked": unchecked,
        "skypilot_version": sky.__version__,
        "name": task.name,
        "num_nodes": task.num_nodes,
        "accelerators": [r.accelerators for r in res],
        "use_spot": [r.use_spot for r in res],
        "image_id": [list((r.image_id or {}).values()) for r in res],
        "cloud": [str(r.cloud) if r.cloud is not None else None for r in res],
        "disk_size": [r.disk_size for r in res],
        "file_mounts": task.file_mounts,
        "workdir": task.workdir,
        "envs": task.envs,
    }), flush=True)
"""


class SkyPilotUnavailable(Exception):
    """Neither an importable `sky` nor HARNESS_SKYPILOT_PYTHON."""


class TaskInvalid(Exception):
    """SkyPilot's loader rejected the task; the message is SkyPilot's."""


def validate_task_yamls(texts: list[str], python: str | None = None) -> list[dict[str, Any]]:
    """Load each text as a SkyPilot task (one child process for all); return what SkyPilot made of
    each: skypilot_version, name, num_nodes, accelerators, use_spot, image_id, cloud, disk_size,
    file_mounts, workdir, envs, and `unsupported`: [cloud, feature, SkyPilot's reason] for each feature
    the task needs that its named cloud (`infra`) does not have, and `unchecked`: [cloud, error] where
    SkyPilot could not check them (a cloud whose optional dependencies are not installed).

    Raises TaskInvalid (SkyPilot's error, naming the task's index) or SkyPilotUnavailable."""
    python = python or os.environ.get(ENV_PYTHON) or None
    if python is None:
        if importlib.util.find_spec("sky") is None:
            raise SkyPilotUnavailable(
                f"skypilot is not importable and {ENV_PYTHON} is not set "
                f"({pip_install('cloud')}, or point it at a Python that has skypilot)"
            )
        python = sys.executable
    with tempfile.TemporaryDirectory(prefix="harness-sky-") as d:
        paths = []
        for i, text in enumerate(texts):
            paths.append(Path(d) / f"task-{i}.yaml")
            paths[-1].write_text(text, encoding="utf-8")
        try:
            proc = subprocess.run(
                [python, "-c", _CHECK, *map(str, paths)],
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
        except OSError as e:
            raise SkyPilotUnavailable(f"{ENV_PYTHON}={python}: cannot run: {e}") from None
    if proc.returncode != 0:
        msg = proc.stderr.strip().splitlines()
        if any("No module named 'sky'" in line for line in msg):
            raise SkyPilotUnavailable(f"{python}: skypilot is not installed there")
        raise TaskInvalid(msg[-1] if msg else f"exit {proc.returncode}")
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def unknown_cloud(message: str, infra: str | None) -> str | None:
    """SkyPilot's refusal of an `infra` it cannot read, said as a bad --cloud value: a cloud it does not know
    with the names its schema takes (the refusal quotes the schema's pattern, `(?i:(aws|azure|...))`), or
    a known cloud whose region or zone part is empty or one too many."""
    groups = re.findall(r"\(\?i:\(?([a-z0-9_|-]+)\)?\)", message)
    if not infra or not groups or "does not match" not in message or "$.infra" not in message:
        return None
    names = [n for g in groups for n in g.split("|")]
    cloud = infra.split("/")[0]
    if cloud.lower() in names:  # a known cloud: the region or zone after it is what SkyPilot refused
        return (
            f"--cloud: {infra!r}: a region or zone after {cloud} is empty or one too many (allowed: CLOUD, "
            "CLOUD/REGION, CLOUD/REGION/ZONE)"
        )
    close = difflib.get_close_matches(cloud.lower(), names, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    return f"--cloud: {cloud!r} is not a cloud SkyPilot knows ({hint}allowed: {', '.join(names)})"
