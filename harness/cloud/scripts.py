"""The bash that a SkyPilot task runs: `setup` (install the harness) and `run` (Ray if multi-node, then
`harness run` on the head node). SkyPilot runs both under ~/sky_workdir on every node; it sets
SKYPILOT_NODE_RANK, SKYPILOT_NODE_IPS (one per line, head first) and SKYPILOT_NUM_NODES.

tests/unit/test_cloud_task.py runs shellcheck over every script generated here.
"""

from __future__ import annotations

import posixpath
import shlex

from harness.cloud.images import LLAMACPP_SERVER_BINARY as SERVER

REMOTE_RESULTS = "harness-results"  # relative to the remote $HOME; rsync resolves it the same way
RAY_PORT = 6379
RAY_JOIN_TIMEOUT_S = 600


def setup_script(
    from_source: bool,
    multi_node: bool = False,
    extras: tuple[str, ...] = ("gpu",),
    results: str = REMOTE_RESULTS,
    packages: tuple[str, ...] = (),
) -> str:
    """Install the harness with `extras` (and `packages`, pip requirements: the engine on a VM image)
    unless the image already has this version (HARNESS_VERSION).

    The results directory is made first: when setup fails, the fetch then finds it (empty) and the
    launcher tears the cluster down, instead of taking a missing directory for a failed fetch."""
    if from_source:
        install = f'python3 -m pip install --no-cache-dir "$HOME/sky_workdir[{",".join(extras)}]"'
        install += "".join(f" {shlex.quote(p)}" for p in packages)
    else:
        install = (
            'echo "the image has llm-harness ${have:-none}, this launch needs $HARNESS_VERSION:'
            ' rebuild the image (docker/README.md) or launch from a source checkout" >&2\n'
            "  exit 1"
        )
    lines = [
        "set -euo pipefail",
        f'mkdir -p "$HOME/{results}"',
        "export PIP_BREAK_SYSTEM_PACKAGES=1",
        'as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }',
        "py_ok() { python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; }",
        'have="$(python3 -c \'import importlib.metadata as m; print(m.version("llm-harness"))\''
        ' 2>/dev/null || true)"',
        'if [ "$have" = "$HARNESS_VERSION" ]; then',
        '  echo "llm-harness $have is already installed"',
        "else",
        "  if ! py_ok; then",
        "    # e.g. the llama.cpp CUDA image ships no Python; Ubuntu 24.04's python3 is 3.12",
        "    as_root apt-get update -q",
        "    as_root apt-get install -y -q python3 python3-pip python3-venv",
        "  fi",
        "  if ! py_ok; then",
        '    echo "llm-harness needs Python >= 3.11 on the cluster: pass --image with one" >&2',
        "    exit 1",
        "  fi",
        f"  {install}",
        "fi",
    ]
    if multi_node:
        lines += [
            "# vLLM's multi-node executor runs on Ray (the vLLM image ships it)",
            "if ! command -v ray >/dev/null 2>&1; then",
            "  python3 -m pip install --no-cache-dir 'ray[default]'",
            "fi",
        ]
    return "\n".join(lines) + "\n"


def _harness_run(scenario_arg: str, results: str) -> str:
    """`harness run` bounded by HARNESS_MAX_SECONDS (SIGTERM: the run is marked interrupted, kept)."""
    return (
        'timeout --signal=TERM --kill-after=120 "$HARNESS_MAX_SECONDS" \\\n'
        f'  python3 -m harness run {scenario_arg} --results "$HOME/{results}" --no-progress'
    )


def single_node_run_script(scenario_arg: str, results: str) -> str:
    return (
        "\n".join(
            [
                "set -euo pipefail",
                f'mkdir -p "$HOME/{results}"',
                # llama.cpp's CUDA image keeps llama-server off PATH, where `launcher: llama-server`
                # without `binary:` looks for it
                f'if [ -x {SERVER} ]; then export PATH="{posixpath.dirname(SERVER)}:$PATH"; fi',
                "nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv || true",
                _harness_run(scenario_arg, results),
            ]
        )
        + "\n"
    )


def multi_node_run_script(scenario_arg: str, results: str) -> str:
    """Rank 0: Ray head, wait for every node, run the benchmark, stop Ray. Others: join, wait for the
    head's Ray to go away (the benchmark is over), leave. Every node's script ends, so the job does."""
    return (
        "\n".join(
            [
                "set -euo pipefail",
                f'RAY_PORT="${{HARNESS_RAY_PORT:-{RAY_PORT}}}"',
                'HEAD_IP="$(echo "$SKYPILOT_NODE_IPS" | head -n1)"',
                'VLLM_HOST_IP="$(echo "$SKYPILOT_NODE_IPS" | sed -n "$((SKYPILOT_NODE_RANK + 1))p")"',
                "export VLLM_HOST_IP",
                # the model directory vLLM is given (a catalog model's config and tokenizer, written
                # under ~/.cache) at the same path on every node, for Ray workers that read it
                f"python3 -m harness model prepare {scenario_arg} || "
                'echo "warning: could not prepare the scenario\'s models on node $SKYPILOT_NODE_RANK" >&2',
                # this cluster's Ray processes only (their command lines name its port): SkyPilot runs
                # its own Ray on every node (port 6380) and runs this script as one of its tasks, so
                # `ray stop`, which stops every Ray process on the host, would fail the job
                "ray_down() {",
                '  pkill -f "ray.*[=:]$RAY_PORT( |\\$)" 2>/dev/null || true',
                "  for _ in 1 2 3 4 5 6 7 8 9 10; do",
                '    pgrep -f "ray.*[=:]$RAY_PORT( |\\$)" >/dev/null 2>&1 || return 0',
                "    sleep 1",
                "  done",
                '  pkill -9 -f "ray.*[=:]$RAY_PORT( |\\$)" 2>/dev/null || true',
                "}",
                'if [ "$SKYPILOT_NODE_RANK" = "0" ]; then',
                "  trap 'ray_down' EXIT",
                "  trap 'exit 143' TERM",
                '  ray start --head --port="$RAY_PORT" --disable-usage-stats',
                '  export RAY_ADDRESS="127.0.0.1:$RAY_PORT"  # vLLM joins this cluster, never SkyPilot\'s',
                '  python3 -m harness.cloud.ray_wait --address "$RAY_ADDRESS" --nodes "$SKYPILOT_NUM_NODES"'
                f" --timeout-s {RAY_JOIN_TIMEOUT_S}",
                f'  mkdir -p "$HOME/{results}"',
                "  nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv || true",
                "  " + _harness_run(scenario_arg, results).replace("\n", "\n  "),
                "else",
                "  joined=0",
                f"  for _ in $(seq 1 {RAY_JOIN_TIMEOUT_S // 5}); do",
                '    if ray start --address="$HEAD_IP:$RAY_PORT" --disable-usage-stats; then',
                "      joined=1",
                "      break",
                "    fi",
                "    sleep 5",
                "  done",
                '  if [ "$joined" != 1 ]; then',
                '    echo "could not join the Ray head at $HEAD_IP:$RAY_PORT" >&2',
                "    exit 1",
                "  fi",
                "  # stay in the cluster while the head is up: leave after 4 failed probes in a row (one",
                "  # slow answer from a busy head must not take this node's share of vLLM away mid-run)",
                "  deadline=$((SECONDS + HARNESS_MAX_SECONDS + 900))",
                "  misses=0",
                '  while [ "$SECONDS" -lt "$deadline" ] && [ "$misses" -lt "${HARNESS_RAY_MISSES:-4}" ]; do',
                '    if ray status --address="$HEAD_IP:$RAY_PORT" >/dev/null 2>&1; then',
                "      misses=0",
                "    else",
                "      misses=$((misses + 1))",
                "    fi",
                '    sleep "${HARNESS_RAY_PROBE_S:-15}"',
                "  done",
                "  ray_down",
                "fi",
            ]
        )
        + "\n"
    )
