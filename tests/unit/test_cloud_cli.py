"""`harness cloud launch` as a user runs it: dry runs, cost lines, refusals; the sky/rsync command
lines it would run; the cloud.json it keeps; the price table."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from harness.catalog.prices import prices
from harness.cloud import cost, launcher
from harness.cloud.task import CATALOG_TO_SKYPILOT
from tests.conftest import run_harness

ROOT = Path(__file__).resolve().parents[2]
CLOUD = ROOT / "scenarios" / "cloud"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`harness cloud launch ARGS`, without SkyPilot's own Python (keeps these fast)."""
    return run_harness(
        "cloud", "launch", *args, env={"HARNESS_SKYPILOT_PYTHON": None, **(env or {})}, timeout=300
    )


def test_dry_run_sweep_prints_one_task_per_machine_and_the_cost() -> None:
    res = run_cli(
        str(CLOUD / "llama-3.1-8b-1gpu.yaml"), "--gpus", "A100-80GB:1", "--gpus", "H100:1", "--dry-run"
    )
    assert res.returncode == 0, res.stderr
    docs = list(yaml.safe_load_all(res.stdout))
    assert [d["name"] for d in docs] == ["h-llama-3-1-8b-1gpu-a100-80gbx1", "h-llama-3-1-8b-1gpu-h100x1"]
    assert [d["resources"]["accelerators"] for d in docs] == ["A100-80GB:1", "H100:1"]
    # default --max-hours 2: A100 1.49*2 = 2.98, 2.49*2 = 4.98; H100 2.49*2 = 4.98, 3.99*2 = 7.98;
    # sweep 2.98 + 4.98 = 7.96 to 4.98 + 7.98 = 12.96
    err = res.stderr
    a100, h100 = "h-llama-3-1-8b-1gpu-a100-80gbx1", "h-llama-3-1-8b-1gpu-h100x1"
    # the price catalog's defaults: A100 80GB SXM $1.49-2.49, PCIe $2.10; H100 SXM $2.49-3.99, PCIe $2.86
    assert f"{a100}: A100-80GB:1 × 1 node: $1.49-2.49/h; 2 h of benchmark: $2.98-4.98" in err
    assert f"{h100}: H100:1 × 1 node: $2.49-3.99/h; 2 h of benchmark: $4.98-7.98" in err
    assert "sweep, benchmark time: $7.96-12.96" in err
    # 2 variants × 5 concurrencies of up to 180 s
    assert (
        "plan: 10 points on 2 engines: up to 30 min of load (load.duration_s), before engine start-ups" in err
    )
    # not a bound: what is billed besides the benchmark is said
    assert "estimates: start-up (provisioning, image pull, setup), and up to 30 idle minutes" in err
    assert (
        f"  sky launch --yes --cluster {h100} --idle-minutes-to-autostop 30 --down results/{h100}/task.yaml"
        in err
    )
    assert f"  rsync -az --no-links --partial {h100}:harness-results/ results/{h100}/" in err
    assert f"  sky down --yes {h100}" in err


def test_price_override_multi_node_and_keep() -> None:
    res = run_cli(
        str(CLOUD / "llama-3.1-405b-2node.yaml"),
        "--dry-run",
        "--price",
        "2.99",
        "--max-hours",
        "1.5",
        "--keep",
    )
    assert res.returncode == 0, res.stderr
    (doc,) = yaml.safe_load_all(res.stdout)
    assert doc["num_nodes"] == 2 and doc["resources"]["accelerators"] == "H100:8"
    # 2.99 $/GPU-h × 8 GPUs × 2 nodes = 47.84 $/h; × 1.5 h = 71.76
    assert "H100:8 × 2 nodes: $47.84/h; 1.5 h of benchmark: $71.76  [--price]" in res.stderr
    assert "--down" not in res.stderr and "sky down" not in res.stderr  # --keep


def test_prices_per_accelerator_name_in_a_sweep() -> None:
    """`--price NAME=USD` as the other commands take it: one price per --gpus of a sweep."""
    scen = str(CLOUD / "llama-3.1-70b-tp8.yaml")
    args = ["--gpus", "H100:8", "--gpus", "A100-80GB:8", "--dry-run", "--max-hours", "1"]
    res = run_cli(scen, *args, "--price", "h100=3", "--price", "A100-80GB=1.5")
    assert res.returncode == 0, res.stderr
    assert "H100:8 × 1 node: $24.00/h; 1 h of benchmark: $24.00  [--price]" in res.stderr
    assert "A100-80GB:8 × 1 node: $12.00/h; 1 h of benchmark: $12.00  [--price]" in res.stderr
    # a catalog device the launch may not get: an H100 can be an SXM or a PCIe card
    res = run_cli(scen, *args, "--price", "h100-sxm=3")
    assert res.returncode == 2 and (
        "--price h100-sxm: H100 can be h100-sxm or h100-pcie on this launch, so that price may not be what it"
        " pays; price the accelerator as --gpus names it (allowed: H100=USD, A100-80GB=USD, or USD alone)"
        in " ".join(res.stderr.split())
    ), res.stderr
    # a name no --gpus has (a typo): its price would go unused
    res = run_cli(scen, *args, "--price", "h10=3")
    assert res.returncode == 2 and (
        "--price h10: no accelerator of this launch has that name (allowed: H100=USD, A100-80GB=USD, as"
        " --gpus names it, a catalog device it is sure to be, or USD alone)" in " ".join(res.stderr.split())
    ), res.stderr
    res = run_cli(scen, *args, "--price", "h100-pcie=3")  # either card the name can be
    assert res.returncode == 2 and "--price h100-pcie: H100 can be h100-sxm or h100-pcie" in res.stderr
    # each accelerator name once in what is allowed, however many machines have it
    small = str(CLOUD / "llama-3.1-8b-1gpu.yaml")
    res = run_cli(small, "--gpus", "H100:1", "--gpus", "H100:2", "--dry-run", "--price", "h10=3")
    assert res.returncode == 2 and " ".join(res.stderr.split()).count("H100=USD") == 1, res.stderr
    # a key prices only the machine sure to be that device: RunPod's H100-SXM, not the H100 beside it
    res = run_cli(scen, "--gpus", "H100-SXM:8", "--gpus", "H100:8", "--dry-run", "--price", "h100-sxm=3")
    assert res.returncode == 0, res.stderr
    assert "H100-SXM:8 × 1 node: $24.00/h" in res.stderr and "[--price]" in res.stderr
    assert "H100:8 × 1 node: $24.00/h" not in res.stderr
    # on a cloud with SXM parts only an H100 is an h100-sxm: its key prices it, and wins over the name
    for cloud in ("aws", "aws/us-east-1"):  # the cloud, with or without its region
        res = run_cli(scen, *args, "--cloud", cloud, "--price", "h100-sxm=3", "--price", "H100=9")
        assert res.returncode == 0, res.stderr
        assert "H100:8 × 1 node: $24.00/h; 1 h of benchmark: $24.00  [--price]" in res.stderr
    # the A100 keeps the catalog's range, the SXM card's alone on AWS: 1.49 and 2.49 $/GPU-h × 8
    assert "A100-80GB:8 × 1 node: $11.92-19.92/h; 1 h of benchmark: $11.92-19.92  [prices.yaml" in res.stderr
    res = run_cli(scen, "--dry-run", "--price", "h100-sxm=")
    assert (
        res.returncode == 2 and "--price: invalid value 'h100-sxm=' (allowed: USD_PER_GPU_HOUR" in res.stderr
    )
    # one name twice, in any case, at two prices (the last had won without a word)
    res = run_cli(scen, *args, "--price", "H100=3", "--price", "h100=3.5")
    assert res.returncode == 2 and (
        "--price: 'H100=3' and 'h100=3.5' give one name two prices (give each name once)" in res.stderr
    ), res.stderr
    res = run_cli(scen, *args, "--price", "3", "--price", "3.5")
    assert res.returncode == 2 and (
        "--price: '3' and '3.5' give every accelerator two prices (give one)" in res.stderr
    ), res.stderr


def test_unpriced_accelerator_says_so() -> None:
    res = run_cli(str(CLOUD / "llama-3.1-70b-tp8.yaml"), "--gpus", "B200:8", "--dry-run")
    assert res.returncode == 0, res.stderr
    assert "B200:8 × 1 node: no price known for B200" in res.stderr
    assert "pass --price USD_PER_GPU_HOUR" in res.stderr
    assert "$0.00" not in res.stderr and "sweep" not in res.stderr  # nothing priced: no total of $0
    # a sweep with one of two priced: its total, and the unpriced one named beside it
    res = run_cli(
        str(CLOUD / "llama-3.1-70b-tp8.yaml"),
        "--gpus",
        "B200:8",
        "--gpus",
        "H100:8",
        "--dry-run",
        "--price",
        "h100=3",
        "--max-hours",
        "1",
    )
    assert res.returncode == 0, res.stderr
    assert "sweep, benchmark time: $24.00 + B200 (unpriced)" in res.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--gpus", "H100:4"],
            "variants[0].tensor_parallel_size: tensor_parallel_size 8 × pipeline_parallel_size",
        ),
        (["--gpus", "H100"], "needs 8 GPUs; the launch has 1 (H100:1 × 1 node)"),
        (["--gpus", "H100:eight"], "--gpus: invalid value 'H100:eight' (allowed: NAME or NAME:COUNT"),
        (["--image", "vllm/vllm-openai"], "--image: invalid value 'vllm/vllm-openai' (allowed: docker:"),
        (["--env", "NO_VALUE"], "--env: invalid value 'NO_VALUE' (allowed: NAME=VALUE)"),
        (["--network-tier", "fast"], "--network-tier: invalid value 'fast' (allowed: best, default)"),
        (["--env", "HF_TOKEN=hf_abc"], "--env: HF_TOKEN looks like a secret; pass it as --secret HF_TOKEN"),
        (
            ["--env", "GITHUB_PAT=ghp_1"],
            "--env: GITHUB_PAT looks like a secret; pass it as --secret GITHUB_PAT",
        ),
        (
            ["--env", "DB=postgres://me:pw@db/x"],
            "--env: DB looks like a secret (a URL with a password); pass it as --secret DB",
        ),
        (["--max-hours", "inf"], "inf is not a finite number"),  # had overflowed into a traceback
    ],
)
def test_impossible_launches_exit_2_without_traceback(args: list[str], message: str) -> None:
    res = run_cli(str(CLOUD / "llama-3.1-70b-tp8.yaml"), "--dry-run", *args)
    assert res.returncode == 2
    assert message in res.stderr and "Traceback" not in res.stderr
    assert res.stdout == ""


def test_bad_scenario_is_reported_as_file_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\nengine: {type: vllm, model: {source: catalog, name: x}, tensor_parallel_size: 0}\n"
    )
    res = run_cli(str(bad), "--gpus", "H100:1", "--dry-run")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[0].startswith(f"{bad}: engine.tensor_parallel_size:")


def test_real_launch_needs_skypilot_and_rsync_on_path(tmp_path: Path) -> None:
    res = run_cli(
        str(CLOUD / "llama-3.1-70b-tp8.yaml"),
        "--yes",
        "--results",
        str(tmp_path),
        env={"PATH": str(tmp_path)},
    )
    assert res.returncode == 2
    assert "cannot launch: sky, rsync, ssh not found on PATH" in res.stderr
    assert list(tmp_path.iterdir()) == []  # nothing launched, nothing written


# ---------------------------------------------------------------- command lines and records
def test_sky_and_rsync_command_lines() -> None:
    task = Path("results/c1/task.yaml")
    assert launcher.sky_launch_argv("c1", task) == [
        "sky", "launch", "--yes", "--cluster", "c1", "--idle-minutes-to-autostop", "30", "--down",
        "results/c1/task.yaml",
    ]  # fmt: skip
    assert launcher.sky_launch_argv("c1", task, secrets=("HF_TOKEN",), keep=True) == [
        "sky", "launch", "--yes", "--cluster", "c1", "--secret", "HF_TOKEN", "results/c1/task.yaml",
    ]  # fmt: skip
    assert launcher.rsync_argv("c1", Path("results/c1")) == [
        "rsync", "-az", "--no-links", "--partial", "c1:harness-results/", "results/c1/",
    ]  # fmt: skip
    assert launcher.sky_down_argv("c1") == ["sky", "down", "--yes", "c1"]
    # set again after a failed fetch, whatever stage the launch reached
    assert launcher.sky_autostop_argv("c1", 30) == ["sky", "autostop", "c1", "-i", "30", "--down"]


def test_the_fetch_leaves_links_on_the_rented_machine(tmp_path: Path) -> None:
    """The fetch's own options, run by the system's rsync from a folder here in place of the head node:
    run files come, a link planted beside them (at a name a later write uses, or to a folder) does not."""
    if shutil.which("rsync") is None:
        pytest.fail("rsync is not installed (.ci/run installs it)")
    remote, local = tmp_path / "remote", tmp_path / "results" / "c1"
    (remote / "run1").mkdir(parents=True)
    (remote / "run1" / "manifest.json").write_text("{}\n")
    (remote / "run1" / "requests.jsonl").symlink_to(tmp_path / "victim")
    (remote / ".cloud.json.tmp").symlink_to(tmp_path / "victim")
    (remote / "etc").symlink_to("/etc")
    local.mkdir(parents=True)
    argv = launcher.rsync_argv("c1", local)
    assert argv[-2] == "c1:harness-results/"
    res = subprocess.run([*argv[:-2], f"{remote}/", argv[-1]], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    found = sorted(str(p.relative_to(local)) for p in local.rglob("*"))
    assert found == ["run1", "run1/manifest.json"]


def test_only_run_directories_fetched_are_named_and_the_command_printed_pastes_safely(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Names come from the rented machine: one with `$(...)` or a terminal escape in it is no run
    directory of the harness's, and is not printed in a command to paste."""
    from harness.cli.cloud import _print_outcome

    local = tmp_path / "my results" / "c1"
    for name in (
        "20261206T120000Z-b",
        "20261206T120000Z-a",
        "run-$(id)",
        "x; rm -rf ~",
        "x\x1b]0;t\x07",
        "no-manifest",
    ):
        (local / name).mkdir(parents=True)
        if name != "no-manifest":
            (local / name / "manifest.json").write_text("{}\n")
    (local / "linked").symlink_to(local / "20261206T120000Z-a")
    listed = Path.iterdir
    monkeypatch.setattr(Path, "iterdir", lambda p: iter(sorted(listed(p), reverse=True)))  # any order
    runs = launcher.fetched_runs(local)
    monkeypatch.undo()
    assert runs == [str(local / "20261206T120000Z-a"), str(local / "20261206T120000Z-b")]  # in order
    m = launcher.MachineRun("c1", "H100:1", 1, str(local), {}, launch_rc=0, fetch_rc=0, down_rc=0)
    m.run_dirs = runs
    _print_outcome([m])
    said = capsys.readouterr().err
    assert f"compare them: harness compare '{local}/20261206T120000Z-a' '{local}/20261206T120000Z-b'" in said


def test_machine_record_is_written_as_json(tmp_path: Path) -> None:
    m = launcher.MachineRun(
        cluster="c1", accelerators="H100:8", nodes=1, local_dir=str(tmp_path), task={"name": "c1"},
        price_usd_per_gpu_hour=[2.49, 6.0], price_source="prices.yaml", max_hours=2.0,
    )  # fmt: skip
    m.launch_rc, m.fetch_rc = 0, 0
    m.save()
    got = json.loads((tmp_path / "cloud.json").read_text())
    assert got["cluster"] == "c1" and got["launch_rc"] == 0 and got["task"] == {"name": "c1"}
    assert not m.ok  # ran and fetched, but no run directory came back (it had said "ok; 0 run dir(s)")
    m.run_dirs = [str(tmp_path / "20261206T000000Z-s")]
    assert m.ok
    m.fetch_rc = 23
    assert not m.ok
    m.fetch_rc, m.down_rc = 0, 1  # `sky down` failed: the cluster may still be billing
    assert not m.ok
    m.down_rc = 0
    assert m.ok


# ---------------------------------------------------------------- price table
def test_cost_formulas_with_literal_values() -> None:
    p = cost.Price(2.0, 3.0, "test")
    assert cost.hourly_usd(p, gpus_per_node=8, nodes=2) == (32.0, 48.0)  # 2*8*2, 3*8*2
    assert cost.run_cost_usd(p, gpus_per_node=4, nodes=1, hours=0.5) == (4.0, 6.0)  # 2*4*0.5, 3*4*0.5
    assert cost.fmt_range(4.0, 6.0) == "$4.00-6.00" and cost.fmt_range(4.0, 4.0) == "$4.00"
    assert cost.lookup_price("H100", 1.25) == cost.Price(1.25, 1.25, "--price")
    assert cost.lookup_price("NO-SUCH-GPU") is None


def test_launch_prices_are_the_price_catalogs_defaults_for_the_devices_a_name_can_be() -> None:
    """SkyPilot's `H100` is the SXM or the PCIe card: the range spans both defaults of prices.yaml (PCIe
    $2.86, SXM $2.49-3.99); RunPod's `H100-SXM` is the SXM one alone; every catalog GPU with a SkyPilot
    name and a default price is priced (the launch's own table had only A100-80GB and H100)."""
    h100 = cost.lookup_price("H100")
    assert h100 is not None and (h100.low_usd_per_gpu_hour, h100.high_usd_per_gpu_hour) == (2.49, 3.99)
    assert "h100-pcie (lambda-1x" in h100.source and "h100-sxm (typical-gpu-cloud" in h100.source
    sxm = cost.lookup_price("H100-SXM")
    assert sxm is not None and "h100-pcie" not in sxm.source
    assert cost.catalog_devices("A100-80GB") == ["a100-80gb-sxm", "a100-80gb-pcie"]
    assert cost.catalog_devices("A100-80GB-SXM") == ["a100-80gb-sxm"]
    h200 = cost.lookup_price("H200")
    assert h200 is not None and (h200.low_usd_per_gpu_hour, h200.high_usd_per_gpu_hour) == (3.5, 4.5)
    assert {p.device for p in prices() if p.default} >= set(CATALOG_TO_SKYPILOT)
    assert all(cost.lookup_price(name) is not None for name in CATALOG_TO_SKYPILOT.values())
    assert cost.lookup_price("V100") is None  # no catalog device of that name


def test_a_launch_price_follows_the_cloud_and_the_name_in_any_case() -> None:
    """`--cloud aws` had been priced with Lambda's H100 PCIe (AWS rents SXM parts only), as if its own
    prices were those; `--gpus h100:1` (SkyPilot takes any case) had no price at all."""
    aws = cost.lookup_price("H100", cloud="aws")
    assert aws is not None and "h100-pcie" not in aws.source
    assert (aws.low_usd_per_gpu_hour, aws.high_usd_per_gpu_hour) == (2.49, 3.99)  # h100-sxm's default range
    assert aws.source.endswith(
        "; not aws's own prices, which can be far higher: SkyPilot's launch table has them"
    )
    lam = cost.lookup_price("H100", cloud="lambda")
    assert lam is not None and "h100-pcie (lambda-1x" in lam.source and "not lambda's" not in lam.source
    assert cost.lookup_price("h100") == cost.lookup_price("H100")
    assert cost.catalog_devices("h100-sxm") == ["h100-sxm"]


def test_a_second_launch_of_the_same_cluster_name_is_refused(tmp_path: Path) -> None:
    # the same scenario and GPUs give the same cluster name: the second launch would share the first's
    # cluster and tear it down when it ends
    args = [str(CLOUD / "llama-3.1-70b-tp8.yaml"), "--gpus", "H100:8", "--yes", "--results", str(tmp_path)]
    dry = run_cli(*args[:3], "--dry-run")
    lines = dry.stdout.splitlines()
    cluster = next(x.removeprefix("# cluster: ") for x in lines if x.startswith("# cluster: "))
    (tmp_path / cluster).mkdir()
    (tmp_path / cluster / "cloud.json").write_text("{}")
    res = run_cli(*args, env={"PATH": str(tmp_path)})
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"{tmp_path / cluster}: an earlier launch of the same cluster name wrote here" in res.stderr


def test_a_cloud_skypilot_does_not_know_is_said_as_a_bad_cloud_value() -> None:
    """`--cloud lamda` printed SkyPilot's schema pattern; its refusal, as SkyPilot 0.14.1 words it:"""
    from harness.cloud.validate import unknown_cloud

    refusal = (
        "task 0: InvalidSkyPilotConfigError: Invalid resources YAML: 'lamda' does not match "
        "'^(?:(?i:(aws|azure|gcp|ibm|lambda|scp|oci|runpod|vast|vsphere|cudo|fluidstack|paperspace|"
        "primeintellect|do|nebius|ssh|slurm|hyperbolic|seeweb|shadeform|yotta|mithril|verda))(?:/[^/]+(?:/[^/]+)"
        "?)?|\\*(?:/[^/]+(?:/[^/]+)?)?|(?i:kubernetes|k8s)(?:/.+)?)$'. Check problematic field(s): $.infra"
    )
    got = unknown_cloud(refusal, "lamda/us-east-1")
    assert got is not None and got.startswith(
        "--cloud: 'lamda' is not a cloud SkyPilot knows (did you mean lambda? "
    )
    assert got.endswith("yotta, mithril, verda, kubernetes, k8s)")
    assert unknown_cloud("task 0: something else", "aws") is None
    # a cloud SkyPilot knows, with an empty region: said so, not as SkyPilot's pattern
    assert unknown_cloud(refusal.replace("'lamda'", "'aws/'"), "aws/") == (
        "--cloud: 'aws/': a region or zone after aws is empty or one too many (allowed: CLOUD, CLOUD/REGION, "
        "CLOUD/REGION/ZONE)"
    )


@pytest.mark.slow
def test_skypilots_refusal_comes_first_and_before_anything_is_launched(tmp_path: Path) -> None:
    """`--cloud lamda` had printed the task YAML and a warning about H100s "on lamda" before the refusal
    in a dry run, and a real launch was not checked with SkyPilot's loader before asking to rent."""
    import os

    from harness.cloud.validate import ENV_PYTHON

    sky_python = os.environ.get(ENV_PYTHON)
    if not sky_python:
        pytest.skip(f"{ENV_PYTHON} not set (.ci/run sets it)")
    scen = str(CLOUD / "llama-3.1-70b-tp8.yaml")
    env = {ENV_PYTHON: sky_python}
    dry = run_cli(scen, "--gpus", "H100:8", "--cloud", "lamda", "--dry-run", env=env)
    assert dry.returncode == 2 and dry.stdout == ""
    assert dry.stderr.splitlines()[0].startswith("--cloud: 'lamda' is not a cloud SkyPilot knows"), dry.stderr
    assert "warning" not in dry.stderr
    # a real launch, with SkyPilot's own `sky` and the system's rsync and ssh on PATH: refused before the
    # cost, the question and `sky launch` (which the launcher prints as `$ sky launch ...` before running it)
    sky = Path(sky_python).parent / "sky"
    assert sky.is_file(), sky
    missing = [t for t in ("rsync", "ssh") if shutil.which(t) is None]
    assert not missing, f"{missing} not installed (.ci/run installs them)"
    path = f"{sky.parent}{os.pathsep}{os.environ['PATH']}"
    args = [scen, "--gpus", "H100:8", "--yes", "--results", str(tmp_path / "r")]
    res = run_cli(*args, "--cloud", "lamda", env={**env, "PATH": path})
    assert res.returncode == 2 and "is not a cloud SkyPilot knows" in res.stderr, res.stderr
    assert "$ sky" not in res.stderr and "$" not in res.stderr and not (tmp_path / "r").exists()
    # a cloud lacking a feature the task needs: refused too (Lambda has no network tier for two nodes)
    res = run_cli(
        str(CLOUD / "llama-3.1-405b-2node.yaml"), *args[1:], "--cloud", "lambda", env={**env, "PATH": path}
    )
    assert res.returncode == 2 and "would refuse the launch" in res.stderr, res.stderr
    assert "$ sky" not in res.stderr and not (tmp_path / "r").exists()


@pytest.mark.slow
def test_a_cloud_skypilot_could_not_check_is_said_to_be_unchecked() -> None:
    """SkyPilot without its Kubernetes extra cannot check that cloud's features: the check had skipped it
    without a word, and the task read as accepted."""
    import os

    from harness.cloud.validate import ENV_PYTHON

    sky_python = os.environ.get(ENV_PYTHON)
    if not sky_python:
        pytest.skip(f"{ENV_PYTHON} not set (.ci/run sets it)")
    scen = str(CLOUD / "llama-3.1-8b-1gpu.yaml")
    res = run_cli(
        scen, "--gpus", "H100:1", "--cloud", "kubernetes", "--dry-run", env={ENV_PYTHON: sky_python}
    )
    assert res.returncode == 0, res.stderr
    said = " ".join(res.stderr.split())
    assert "task accepted by SkyPilot" in said
    assert "whether Kubernetes has the features the task needs was not checked (ImportError: " in said
    assert said.count("was not checked") == 1  # once for the cloud, not once per feature
    assert "`sky launch` checks them" in said


def test_a_url_with_a_password_in_an_env_value_is_told_apart() -> None:
    from harness.cli.cloud import _has_password

    for value in (
        "postgres://me:pw@db/x",
        "s3://AKIA:sec@b",
        "jdbc:postgresql://u:pw@h/db",
        "x=redis://:pw@h",
    ):
        assert _has_password(value), value
    for value in ("postgres://me:@db", "postgres://me@db", "http://h:8000/v1", "a:b@c"):
        assert not _has_password(value), value
