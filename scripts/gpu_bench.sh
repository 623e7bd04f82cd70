#!/usr/bin/env bash
# Real-GPU evidence for llama.cpp: CPU-offload sweep with NVML telemetry, on a GPU machine that has
# CUDA's compiler but no internet. Three steps, run from the repository root:
#
#   scripts/gpu_bench.sh prepare        # where PyPI is reachable: writes .gpu-bench/ (trimmed llama.cpp
#                                       #   source from the llama-cpp-python sdist, wheels for Python 3.12)
#   scripts/gpu_bench.sh device OUT     # on the GPU machine (with .gpu-bench/ copied along): builds
#                                       #   llama-server with CUDA, records NVML traces, runs scenarios/gpu/,
#                                       #   packs it into OUT: device.log + 3 tarballs
#   scripts/gpu_bench.sh collect DIR    # back here: unpacks DIR into results/gpu/ and tests/fixtures/nvml/,
#                                       #   rewrites the table in results/gpu/README.md
#
# `prepare` is `source` (the trimmed llama.cpp source) then `wheels` (the Python 3.12 wheels); each can
# run alone. `build` alone builds llama-server and llama-bench beside it from .gpu-bench/ (CUDA when a
# GPU is there; GPU_BENCH_CUDA=0: CPU only).
# `prebuild` (optional, on any machine with CUDA's compiler, no GPU needed; about an hour on 2 cores)
# compiles the CUDA backend into .gpu-bench/prebuilt/, so that `device` builds only the C++ rest and
# spends its minutes measuring; if that backend does not load there, `device` builds it itself.
#
# Knobs (environment):
#   GPU_BENCH_BUDGET_S   seconds `device` may take in all (default 540); 20 s are kept for packing, so
#                        scenarios that would start with under 80 s left are skipped, and a running one is
#                        interrupted 20 s before the deadline (SIGINT: the run directory keeps every
#                        finished point; SIGKILL 30 s later)
#   GPU_BENCH_SCENARIOS  scenario files to run, in order (default: scenarios/gpu/*.yaml, sorted)
#   GPU_BENCH_CUDA       1 / 0: build with / without CUDA (default: 1 when nvidia-smi sees a GPU)
#   GPU_BENCH_ARCH       CMAKE_CUDA_ARCHITECTURES (default 90-real: H100 / H200 machine code only)
#   GPU_BENCH_JOBS       build jobs (default: cores - 2, so the model writer and NVML recorder keep a core)
#   GPU_BENCH_LLAMA_SERVER  an llama-server executable to use instead of building one
#   GPU_BENCH_PREBUILT   0: ignore .gpu-bench/prebuilt/ (default 1: use it when it loads)
#   GPU_BENCH_DEST_ROOT  where `collect` puts results/gpu/ and tests/fixtures/nvml/ (default: this checkout)
#   LLAMA_CPP_PYTHON_VERSION  sdist whose vendored llama.cpp is built (default 0.3.36)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WORK=$ROOT/.gpu-bench
SRC_TGZ=$WORK/llama.cpp-src.tar.gz
LCP_VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
BUILD_ROOT=${GPU_BENCH_BUILD_DIR:-/tmp/gpu-bench-llama.cpp}
PY=${PYTHON:-python3}
GPU_BENCH_RESULTS=${GPU_BENCH_RESULTS:-/tmp/gpu-bench-results}
CUDA_LIBS=${CUDA_LIBS:-}  # set by `device` for the build it starts

log() { printf '[gpu_bench %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ------------------------------------------------------------------ prepare (internet side)
source_tarball() {
  mkdir -p "$WORK"
  if [ -f "$SRC_TGZ" ]; then log "source: $SRC_TGZ exists"; return; fi
  local tmp; tmp=$(mktemp -d)
  log "source: downloading the llama-cpp-python $LCP_VERSION sdist"
  "$PY" -m pip download -q --no-binary :all: --no-deps "llama-cpp-python==$LCP_VERSION" -d "$tmp"
  tar xzf "$tmp"/llama_cpp_python-"$LCP_VERSION".tar.gz -C "$tmp"
  local src=$tmp/llama_cpp_python-$LCP_VERSION/vendor/llama.cpp
  [ -f "$src/tools/server/server.cpp" ] || die "no tools/server in the vendored llama.cpp of $LCP_VERSION"
  # what the llama-server target needs: the CMake tree, ggml (CPU and CUDA backends), src, include,
  # common, vendor and tools (tools/CMakeLists.txt adds every tool's directory); no models, docs,
  # tests, examples, web UI sources or other GPU backends
  rm -rf "${src:?}"/{models,docs,media,tests,examples,pocs,benches,gguf-py,conversion,grammars,requirements,app}
  rm -rf "$src"/.git* "$src"/*.py "$src"/scripts/*.py "$src"/scripts/*.sh
  find "$src/tools/ui" -mindepth 1 -maxdepth 1 ! -name CMakeLists.txt ! -name '*.in' ! -name sources.cmake \
    -exec rm -rf {} +
  rm -rf "$src/tools/server/tests" "$src/tools/server/bench" "$src/tools/server/public"*
  for b in "$src"/ggml/src/ggml-*/; do
    case "$(basename "$b")" in ggml-cpu|ggml-cuda|ggml-blas) ;; *) rm -rf "$b" ;; esac
  done
  # the fine-tune/export tools add_subdirectory'd unconditionally still need their (small) sources
  printf 'llama-cpp-python %s vendored llama.cpp, trimmed by scripts/gpu_bench.sh\n' "$LCP_VERSION" \
    >"$src/TRIMMED"
  tar czf "$SRC_TGZ.part" -C "$(dirname "$src")" llama.cpp
  mv "$SRC_TGZ.part" "$SRC_TGZ"
  rm -rf "$tmp"
  log "source: $SRC_TGZ ($(du -h "$SRC_TGZ" | cut -f1))"
}

wheels() {
  # the GPU image has Python 3.12 with torch, numpy, pandas, httpx, typer, rich, psutil,
  # prometheus-client, pyyaml, pyarrow and nvidia-ml-py, but not these harness dependencies
  mkdir -p "$WORK/whl"
  # (typing-extensions too: pydantic wants a newer one than such an image may hold)
  local pins=() name
  for name in pydantic pydantic-core annotated-types typing-inspection typing-extensions gguf; do
    pins+=("$name==$("$PY" -c "import importlib.metadata as m; print(m.version('$name'))")")
  done
  log "wheels (cp312, manylinux x86_64): ${pins[*]}"
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$WORK/whl" "${pins[@]}"
}

prepare() {
  source_tarball
  wheels
  log "ready: $(du -sh "$WORK" | cut -f1) in .gpu-bench/ (git ignores it: pass it along explicitly)"
}

# ------------------------------------------------------------------ build (either side)
want_cuda() {
  case "${GPU_BENCH_CUDA:-auto}" in
    1) return 0 ;;
    0) return 1 ;;
    *) nvidia-smi -L >/dev/null 2>&1 ;;
  esac
}

find_nvcc() {
  local c
  for c in "$(command -v nvcc 2>/dev/null)" /usr/local/cuda/bin/nvcc /usr/local/cuda-*/bin/nvcc; do
    if [ -n "$c" ] && [ -x "$c" ]; then echo "$c"; return 0; fi
  done
  return 1
}

# CPU backend flags from this machine's /proc/cpuinfo instead of -march=native, without AMX: on
# Firecracker VMs whose CPUID lists AMX, ggml's AMX kernels (used for Q8_0 on the CPU) die on their first
# `ldtilecfg` (seen: SIGILL, and SIGSEGV under gdb, kernel 6.18.44-fc)
cpu_flags() {
  local f
  f=" $(grep -m1 '^flags' "${GPU_BENCH_CPUINFO:-/proc/cpuinfo}" 2>/dev/null | cut -d: -f2) "
  local o=(-DGGML_NATIVE=OFF -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON)
  [[ $f == *" bmi2 "* ]] && o+=(-DGGML_BMI2=ON)
  if [[ $f != *" avx2 "* ]]; then echo "-DGGML_NATIVE=ON"; return; fi
  [[ $f == *" avx512f "* ]] && o+=(-DGGML_AVX512=ON)
  [[ $f == *" avx512vbmi "* ]] && o+=(-DGGML_AVX512_VBMI=ON)
  [[ $f == *" avx512_vnni "* ]] && o+=(-DGGML_AVX512_VNNI=ON)
  [[ $f == *" avx512_bf16 "* ]] && o+=(-DGGML_AVX512_BF16=ON)
  [[ $f == *" avx_vnni "* ]] && o+=(-DGGML_AVX_VNNI=ON)
  echo "${o[@]}"
}

# the flags every build shares: backends as loadable libraries (GGML_BACKEND_DL), so a CUDA backend
# built elsewhere (`prebuild`) can sit beside a server built here; no VMM pool (the prebuilt backend
# cannot link the driver library on a machine without one, and every build is kept alike)
common_flags() {
  echo -DCMAKE_BUILD_TYPE=Release -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
    -DLLAMA_OPENSSL=OFF -DGGML_CCACHE=OFF -DGGML_BACKEND_DL=ON -DGGML_CUDA_NO_VMM=ON
}

jobs() { echo "${GPU_BENCH_JOBS:-$(($(nproc) > 3 ? $(nproc) - 2 : $(nproc)))}"; }

# a build directory per source version, kind and flags (a finished build is reused only if all match)
build_dir() {
  local kind=$1
  shift
  echo "$BUILD_ROOT/$LCP_VERSION-$kind-$(printf '%s ' "$(common_flags)" "$@" | md5sum | cut -c1-8)"
}

# unpack the source into $1 and configure it with the common flags plus the rest of the arguments
configure() {
  local dir=$1
  shift
  rm -rf "$dir" && mkdir -p "$dir"
  tar xzf "$SRC_TGZ" -C "$dir"
  local gen=() flags
  if command -v ninja >/dev/null 2>&1; then gen=(-G Ninja); fi
  read -r -a flags <<<"$(common_flags)"
  cmake -S "$dir/llama.cpp" -B "$dir/llama.cpp/build" "${gen[@]}" "${flags[@]}" "$@" >&2
}

# folders holding libcublas / libcudart: the CUDA toolkit's, then Python's nvidia-* wheels (torch's)
cuda_lib_dirs() {
  "$PY" - <<'PYEOF'
import glob, os, site
found = []
roots = ["/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib"]
for base in site.getsitepackages():
    roots += sorted(glob.glob(os.path.join(base, "nvidia", "*", "lib")))
    roots += sorted(glob.glob(os.path.join(base, "nvidia", "*", "*", "lib")))
for d in roots:
    if d not in found and (glob.glob(os.path.join(d, "libcublas.so*")) or glob.glob(os.path.join(d, "libcudart.so*"))):
        found.append(d)
print(":".join(found))
PYEOF
}

# does this llama-server see a CUDA device? (with the backends found beside it)
sees_cuda() {
  local o
  o=$(with_cuda_libs "$1" --list-devices 2>&1 || true)
  [[ $o == *CUDA0* ]]
}

with_cuda_libs() { LD_LIBRARY_PATH=$CUDA_LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} "$@"; }

# a finished build: llama-server and llama-bench (the harness runs it where a scenario sets llama_bench)
built() { [ -x "$1" ] && [ -x "$(dirname "$1")/llama-bench" ]; }

build() {
  [ -f "$SRC_TGZ" ] || die "$SRC_TGZ is missing: run \`scripts/gpu_bench.sh prepare\` (or \`source\`) first"
  local arch=${GPU_BENCH_ARCH:-90-real} cpu
  read -r -a cpu <<<"$(cpu_flags)"
  log "build: CPU backend ${cpu[*]}, $(jobs) jobs"
  if ! want_cuda; then
    local dir; dir=$(build_dir cpu "${cpu[@]}")
    local bin=$dir/llama.cpp/build/bin/llama-server
    if built "$bin"; then log "build: $bin exists"; echo "$bin"; return; fi
    log "build: llama-server and llama-bench for the CPU only"
    configure "$dir" "${cpu[@]}"
    cmake --build "$dir/llama.cpp/build" --target llama-server llama-bench -j "$(jobs)" >&2
    built "$bin" || die "build finished without $bin and llama-bench beside it"
    echo "$bin"
    return
  fi
  # a CUDA backend from `prebuild` (same source and flags): build only the server and CPU parts here
  local pre=$WORK/prebuilt/libggml-cuda.so.gz
  if [ -f "$pre" ] && [ "${GPU_BENCH_PREBUILT:-1}" = 1 ]; then
    local dir; dir=$(build_dir prebuilt "${cpu[@]}")
    local bin=$dir/llama.cpp/build/bin/llama-server
    log "build: server + CPU backend here, CUDA backend from .gpu-bench/prebuilt ($(cat "$WORK/prebuilt/BUILD.txt" 2>/dev/null | head -n 1))"
    configure "$dir" "${cpu[@]}"
    cmake --build "$dir/llama.cpp/build" --target llama-server llama-bench -j "$(jobs)" >&2
    gzip -dc "$pre" >"$(dirname "$bin")/libggml-cuda.so"
    if built "$bin" && sees_cuda "$bin"; then
      log "build: the prebuilt CUDA backend loads: $(with_cuda_libs "$bin" --list-devices 2>&1 | grep CUDA0)"
      echo "$bin"
      return
    fi
    log "build: the prebuilt CUDA backend does not load here (list-devices said, then what it lacks:)"
    with_cuda_libs "$bin" --list-devices 2>&1 | tail -n 5 >&2 || true
    with_cuda_libs ldd "$(dirname "$bin")/libggml-cuda.so" 2>&1 | grep -i 'not found' >&2 || true
  fi
  # the whole CUDA backend is ~144 nvcc jobs (about 6 minutes on 14 cores): not begun where the device
  # step's deadline would cut it short (GPU_BENCH_DEADLINE, epoch seconds, set by `device`)
  local need=${GPU_BENCH_CUDA_BUILD_S:-420}
  if [ -n "${GPU_BENCH_DEADLINE:-}" ] && [ $(($(date +%s) + need + 120)) -gt "$GPU_BENCH_DEADLINE" ]; then
    die "no time left for a full CUDA build (about ${need}s, $((GPU_BENCH_DEADLINE - $(date +%s)))s left)"
  fi
  local nvcc
  nvcc=$(find_nvcc) || die "a CUDA build needs nvcc (not on PATH, not in /usr/local/cuda*/bin); GPU_BENCH_CUDA=0 builds for the CPU"
  local cuda=(-DGGML_CUDA=ON "-DCMAKE_CUDA_COMPILER=$nvcc" "-DCMAKE_CUDA_ARCHITECTURES=$arch")
  local dir; dir=$(build_dir cuda "${cpu[@]}" "${cuda[@]}")
  local bin=$dir/llama.cpp/build/bin/llama-server
  if built "$bin"; then log "build: $bin exists"; echo "$bin"; return; fi
  log "build: llama-server and llama-bench with CUDA ($("$nvcc" --version | tail -n 1), arch $arch)"
  configure "$dir" "${cpu[@]}" "${cuda[@]}"
  cmake --build "$dir/llama.cpp/build" --target llama-server llama-bench ggml-cuda -j "$(jobs)" >&2
  built "$bin" || die "build finished without $bin and llama-bench beside it"
  sees_cuda "$bin" || log "build: warning: $bin --list-devices shows no CUDA0"
  echo "$bin"
}

# ------------------------------------------------------------------ prebuild (no GPU needed)
# The CUDA backend alone (the long part of a CUDA build: ~144 nvcc jobs), on a machine with CUDA's
# compiler but no GPU, against cuBLAS from PyPI; `device` then builds only the rest (C++). Needs nvcc
# of the same major version as the GPU machine's driver (13 for driver 580).
prebuild() {
  [ -f "$SRC_TGZ" ] || die "$SRC_TGZ is missing: run \`scripts/gpu_bench.sh source\` (or \`prepare\`) first"
  local nvcc arch=${GPU_BENCH_ARCH:-90-real} ver=${GPU_BENCH_CUBLAS_VERSION:-13.0.2.14}
  nvcc=$(find_nvcc) || die "prebuild needs CUDA's compiler (nvcc)"
  local cub=${GPU_BENCH_CUBLAS_DIR:-/tmp/gpu-bench-cublas-$ver}
  if [ ! -d "$cub/nvidia" ]; then
    log "prebuild: cuBLAS $ver headers and libraries from PyPI (nvidia-cublas, about 420 MB)"
    local tmp; tmp=$(mktemp -d)
    "$PY" -m pip download -q --no-deps --only-binary=:all: "nvidia-cublas==$ver" -d "$tmp"
    mkdir -p "$cub" && (cd "$cub" && unzip -q "$tmp"/nvidia_cublas-*.whl) && rm -rf "$tmp"
  fi
  local inc lib
  inc=$(dirname "$(find "$cub" -name cublas_v2.h | head -n 1)")
  lib=$(dirname "$(find "$cub" -name 'libcublas.so.*' | head -n 1)")
  ln -sf "$(basename "$(find "$lib" -name 'libcublas.so.*' | head -n 1)")" "$lib/libcublas.so"
  ln -sf "$(basename "$(find "$lib" -name 'libcublasLt.so.*' | head -n 1)")" "$lib/libcublasLt.so"
  local dir; dir=$(build_dir prebuild "$arch" "$ver")
  log "prebuild: CUDA backend ($("$nvcc" --version | tail -n 1), arch $arch, cuBLAS $ver), $(jobs) jobs"
  configure "$dir" -DGGML_NATIVE=OFF -DGGML_CUDA=ON "-DCMAKE_CUDA_COMPILER=$nvcc" \
    "-DCMAKE_CUDA_ARCHITECTURES=$arch" "-DCUDA_cublas_LIBRARY=$lib/libcublas.so" \
    "-DCUDA_cublasLt_LIBRARY=$lib/libcublasLt.so" "-DCMAKE_CUDA_FLAGS=-I$inc" "-DCMAKE_CXX_FLAGS=-I$inc"
  cmake --build "$dir/llama.cpp/build" --target ggml-cuda -j "$(jobs)" >&2
  mkdir -p "$WORK/prebuilt"
  gzip -9c "$dir/llama.cpp/build/bin/libggml-cuda.so" >"$WORK/prebuilt/libggml-cuda.so.gz"
  printf 'llama-cpp-python %s vendored llama.cpp, CUDA backend for %s, %s, cuBLAS %s, %s\n' \
    "$LCP_VERSION" "$arch" "$("$nvcc" --version | tail -n 1)" "$ver" "$(date -u +%FT%TZ)" >"$WORK/prebuilt/BUILD.txt"
  log "prebuild: $WORK/prebuilt/libggml-cuda.so.gz ($(du -h "$WORK/prebuilt/libggml-cuda.so.gz" | cut -f1))"
}

# ------------------------------------------------------------------ device (GPU side)
# step NAME SECONDS LOG CMD...: CMD with a time limit, its output to LOG (- : to device.log); under 5 s
# left it is not started; a failure or a timeout is logged, and `device` goes on
step() {
  local name=$1 limit=$2 to=$3 rc=0
  shift 3
  if [ "$limit" -lt 5 ]; then log "$name: skipped (${limit}s left for it)"; return 0; fi
  if [ "$to" = - ]; then
    timeout -k 10 "$limit" "$@" || rc=$?
  else
    timeout -k 10 "$limit" "$@" >"$to" 2>&1 || rc=$?
  fi
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    log "$name: stopped at its limit of ${limit}s"
  elif [ "$rc" != 0 ] && [ "$to" = - ]; then
    log "$name: failed (status $rc)"
  elif [ "$rc" != 0 ]; then
    log "$name: failed (status $rc; see logs/$(basename "$to"))"
  fi
  return 0
}

# finish_build PID BY: wait for the background build until epoch second BY; a build still running then
# is stopped (its whole session), and that is a failure
finish_build() {
  local pid=$1 by=$2
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$(date +%s)" -ge "$by" ]; then
      log "build: still running at its limit: stopped"
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      sleep 5
      kill -KILL -- "-$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
      return 1
    fi
    sleep 2
  done
  wait "$pid"
}

device() {
  local out=${1:?usage: gpu_bench.sh device OUT_DIR}
  local logs=$out/logs
  mkdir -p "$logs"
  local t0 budget deadline
  t0=$(date +%s)
  budget=${GPU_BENCH_BUDGET_S:-540}
  deadline=$((t0 + budget))
  exec 2> >(tee -a "$out/device.log" >&2)
  # shellcheck disable=SC2064  # $out is fixed now
  trap "pack '$out'" EXIT
  export GPU_BENCH_DEADLINE=$deadline
  log "budget ${budget}s; $(nproc) cores; disk: $(df -h /tmp | awk 'NR == 2 { print $4 " free in " $6 }')"

  if ! "$PY" -c 'import pydantic, gguf' 2>/dev/null && ls "$WORK"/whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/gpu-bench-site "$WORK"/whl/*.whl
    export PYTHONPATH=/tmp/gpu-bench-site:$ROOT${PYTHONPATH:+:$PYTHONPATH}
  else
    export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
  fi
  export HARNESS_CACHE=${HARNESS_CACHE:-/tmp/gpu-bench-cache} PYTHONUNBUFFERED=1
  "$PY" -c 'import harness.cli, pydantic, gguf' || die "the harness does not import (missing wheels?)"
  log "python: $("$PY" --version 2>&1), harness from $ROOT"
  { nvidia-smi || true; } >"$logs/nvidia-smi.txt" 2>&1
  "$PY" -m harness gpu-info >"$logs/gpu-info.json" || log "gpu-info failed (see above)"
  local gpu=0
  if nvidia-smi -L >/dev/null 2>&1; then
    gpu=1
    log "gpu: $(nvidia-smi -L | head -n 1)"
    # where a prebuilt CUDA backend finds cuBLAS and the CUDA runtime (set for llama-server only,
    # not for torch)
    CUDA_LIBS=$(cuda_lib_dirs)
    log "cuda libraries for llama-server: ${CUDA_LIBS:-none found}"
  fi

  local scenarios=()
  if [ -n "${GPU_BENCH_SCENARIOS:-}" ]; then
    read -r -a scenarios <<<"$GPU_BENCH_SCENARIOS"
  else
    mapfile -t scenarios < <(printf '%s\n' scenarios/gpu/*.yaml | sort)
  fi
  "$PY" -m harness validate "${scenarios[@]}"

  # the build keeps the CPUs busy for minutes; meanwhile write the models and record NVML traces. Every
  # step has a time limit from the deadline and a failed one is logged, not fatal: what the others
  # measured still comes back
  local build_pid=""
  if [ -n "${GPU_BENCH_LLAMA_SERVER:-}" ]; then
    echo "$GPU_BENCH_LLAMA_SERVER" >"$logs/.bin"
    echo "using GPU_BENCH_LLAMA_SERVER=$GPU_BENCH_LLAMA_SERVER" >"$logs/build.log"
  else
    # a session of its own where setsid is there, so that a build still running at its limit is stopped
    # whole
    local session=()
    if command -v setsid >/dev/null 2>&1; then session=(setsid); fi
    CUDA_LIBS=$CUDA_LIBS PYTHON=$PY "${session[@]}" bash "$ROOT/scripts/gpu_bench.sh" build \
      >"$logs/.bin" 2>"$logs/build.log" &
    build_pid=$!
  fi
  log "models: writing every model the scenarios name"
  step "model prepare" $((deadline - $(date +%s) - 150)) - "$PY" -m harness model prepare "${scenarios[@]}"
  mkdir -p "$out/traces"
  log "nvml: idle / bf16 matmul / idle trace (tests/gpu)"
  HARNESS_NVML_TRACE_DIR=$out/traces step "tests/gpu" 90 "$logs/nvml-test.log" \
    "$PY" -m pytest -q -s -p no:cacheprovider tests/gpu
  if [ "$gpu" = 1 ]; then
    log "nvml: sampler overhead (thread CPU time at 100 ms)"
    step "telemetry overhead benchmark" 60 "$logs/telemetry-overhead.log" \
      "$PY" -m benchmarks.telemetry_overhead --seconds 6 --trace-hours 0.25
  fi
  if [ -n "$build_pid" ] && ! finish_build "$build_pid" $((deadline - 90)); then
    tail -n 40 "$logs/build.log" >&2
    log "llama-server did not build (logs/build.log): no scenarios"
    return 1
  fi
  local bin; bin=$(tail -n 1 "$logs/.bin"); rm -f "$logs/.bin"
  PATH=$(dirname "$bin"):$PATH
  export PATH
  log "build done after $(($(date +%s) - t0)) s: $bin"
  if [ "$gpu" = 1 ] && ! sees_cuda "$bin"; then  # the scenarios would measure the CPU alone
    log "$bin --list-devices shows no CUDA0: no scenarios (logs/build.log)"
    with_cuda_libs "$bin" --list-devices 2>&1 | tail -n 5 >&2 || true
    return 1
  fi

  local results=$GPU_BENCH_RESULTS
  mkdir -p "$results"
  if [ -n "$CUDA_LIBS" ]; then export LD_LIBRARY_PATH=$CUDA_LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}; fi
  for scn in "${scenarios[@]}"; do
    local left=$((deadline - $(date +%s) - 20))
    if [ "$left" -lt 60 ]; then log "skipped $scn: ${left}s left"; continue; fi
    log "run $scn (at most ${left}s)"
    timeout -s INT -k 30 "$left" "$PY" -m harness run "$scn" --results "$results" --no-progress \
      >>"$logs/runs.log" 2>&1 || log "$scn ended with status $? (logs/runs.log)"
  done
  # the offload sweep first; with time left, the same 8B shape under transformers (NVML evidence of
  # another engine)
  if [ "$gpu" = 1 ] && [ $(($(date +%s) + 110)) -lt "$deadline" ]; then
    log "nvml: transformers generate, Llama-3.1-8B shape, random weights"
    step "transformers benchmark" $((deadline - $(date +%s) - 25)) "$logs/transformers.log" \
      "$PY" benchmarks/gpu_transformers_energy.py --seconds 12 --out "$out/traces"
  fi
  log "done after $(($(date +%s) - t0)) s"
}

# few files may come back from a GPU machine: device.log plus three tarballs (run directories, NVML
# traces, logs), packed on every exit so that what was measured is not lost when a step fails
pack() {
  local out=$1
  set +e  # every part is packed whatever happens to another (an EXIT trap runs under errexit too)
  if [ -d "$GPU_BENCH_RESULTS" ]; then packed "$out/runs.tar.gz" -C "$GPU_BENCH_RESULTS" .; fi
  if [ -d "$out/traces" ]; then packed "$out/traces.tar.gz" -C "$out" traces && rm -rf "$out/traces"; fi
  if [ -d "$out/logs" ]; then
    rm -f "$out/logs/.bin"
    if [ -f "$out/logs/build.log" ]; then
      tail -n 400 "$out/logs/build.log" >"$out/build.tail" && mv "$out/build.tail" "$out/logs/build.log"
    fi
    packed "$out/logs.tar.gz" -C "$out" logs && rm -rf "$out/logs"
  fi
  log "packed: $(cd "$out" && printf '%s ' *)"
}

# packed TARBALL TAR-ARGS...: tar czf, where a file that changed while it was read (a server that had not
# quite stopped writing its log) is no failure (GNU tar's status 1)
packed() {
  local to=$1 rc=0
  shift
  tar czf "$to" --warning=no-file-changed --ignore-failed-read "$@" || rc=$?
  [ "$rc" -le 1 ] || { log "pack: $to failed (tar status $rc)"; return 1; }
}

# ------------------------------------------------------------------ collect (back here)
collect() {
  local from=${1:?usage: gpu_bench.sh collect DIR (the files that came back from device)}
  [ -d "$from" ] || die "$from is not a directory"
  local stamp dest fixtures
  stamp=$(date -u +%Y%m%dT%H%M%SZ)  # one folder per collect: two in a day do not mix
  dest=${GPU_BENCH_DEST_ROOT:-$ROOT}/results/gpu
  fixtures=${GPU_BENCH_DEST_ROOT:-$ROOT}/tests/fixtures/nvml
  mkdir -p "$dest" "$fixtures"
  if [ -f "$from/runs.tar.gz" ]; then
    tar xzf "$from/runs.tar.gz" -C "$dest"
  else
    log "no runs.tar.gz in $from (no scenario ran?): collecting the logs and traces"
  fi
  local dev=$dest/device-$stamp
  mkdir -p "$dev"
  if [ -f "$from/device.log" ]; then cp "$from/device.log" "$dev/"; fi
  if [ -f "$from/logs.tar.gz" ]; then tar xzf "$from/logs.tar.gz" -C "$dev" --strip-components=1; fi
  if [ -f "$from/traces.tar.gz" ]; then
    local tr; tr=$(mktemp -d)
    tar xzf "$from/traces.tar.gz" -C "$tr"
    cp "$tr"/traces/*.jsonl.gz "$fixtures/" 2>/dev/null || true
    cp "$tr"/traces/*.json "$dev/" 2>/dev/null || true
    # per trace and window: energy (counter and integrated power), power, utilization, clocks
    for t in "$tr"/traces/*.jsonl.gz; do
      if [ -f "$t" ]; then "$PY" -m harness telemetry show "$fixtures/$(basename "$t")" >>"$dev/traces.txt" || true; fi
    done
    rm -rf "$tr"
  fi
  "$PY" scripts/gpu_table.py "$dest" --readme "$dest/README.md"
  log "collected into results/gpu/ and tests/fixtures/nvml/: review, then commit"
}

case "${1:-}" in
  prepare) prepare ;;
  source) source_tarball ;;
  cpu-flags) cpu_flags ;;
  wheels) wheels ;;
  build) build ;;
  prebuild) prebuild ;;
  device) shift; device "$@" ;;
  collect)
    shift
    # back here the tables need pandas: the checkout's environment unless PYTHON says otherwise
    if [ -z "${PYTHON:-}" ] && [ -x "$ROOT/.venv/bin/python" ]; then PY=$ROOT/.venv/bin/python; fi
    collect "$@"
    ;;
  *) awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"; exit 2 ;;
esac
