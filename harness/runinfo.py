"""What a run directory says about its points, in the terms compare/cost/roofline/claims need.

Everything is read from the manifest (scenario, engines, host, telemetry) and points table; nothing
is inferred from directory names. One row per measured point comes out of `points_frame`, with:

* `model`: the catalog key when the scenario names a catalog or packaged model, else the engine's model name
* `precision`: lower case (`bf16`, `fp8`, `f16`, `q4_k_m`)
* `device`: hardware catalog key, from GPU names recorded by telemetry (for an engine the harness launched,
  a GPU the catalog lacks goes by its NVML name, `nvidia-l4`), else the scenario's `hardware.gpu`
  (`harness.rundevice.run_gpu` says when), else the host CPU (a catalog CPU key when /proc/cpuinfo
  names one, else `cpu`);
  for an external endpoint on another host, the scenario's `hardware.gpu` (else `unknown`)
* `device_declared`: the device is only the scenario's `hardware.gpu` (nothing on the machine recorded it,
  or the machine's GPUs are of several models and which the engine ran on is not known: `unknown` where
  the scenario names none of them, `harness.rundevice.run_gpu`)
* `served_by`: for an external endpoint, the engine its scenario declares behind it (`engine.served_by`),
  else None; `owned_by`: what the endpoint's /models said owns the model (the engine's manifest entry)
* `devices`: how many of them one engine instance uses (TP x PP for vLLM; for llama.cpp on GPUs, the GPUs
  NVML sampled, as it splits its layers over all it sees, or with `extra_args` that choose among them
  those its load log put weights on; `hardware.gpus` else)
* `config`: the column label `hardware | engine [| variant overrides]`
* `workload`: mean input/output tokens (`128/64`), or `dataset NAME`: points of different workloads
  are never the same row
* `roofline_tok_s`, `pct_roofline`: the decode ceiling at the point's concurrency (harness.runroofline)
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from harness.catalog.hardware import Device
from harness.models import PACKAGE_CATALOG
from harness.results import RunNotFound, read_manifest
from harness.rundevice import (
    device_as_declared,
    device_of,
    host_cpu_key,
    host_cpu_label,
    partial_offload,
)
from harness.runpoints import aborted_rows, info_columns, read_points, reading
from harness.runroofline import device_table, mean_len, roofline_tok_s

# short names for variant fields in column labels
_SHORT = {
    "tensor_parallel_size": "tp",
    "pipeline_parallel_size": "pp",
    "cpu_offload_gb": "offload_gb",
    "n_gpu_layers": "ngl",
    "kv_cache_dtype": "kv",
    "max_num_seqs": "max_seqs",
}


def engine_config(manifest: dict[str, Any], variant: int) -> dict[str, Any]:
    """The scenario's engine fields with variant `variant`'s overrides applied."""
    scen = manifest.get("scenario") or {}
    cfg = dict(scen.get("engine") or {})
    variants = scen.get("variants") or []
    if 0 <= variant < len(variants):
        cfg.update(variants[variant])
    return cfg


def served_by(cfg: dict[str, Any]) -> str | None:
    """The engine an external endpoint's scenario declares behind it (`engine.served_by`); None for an
    engine the harness launched (its `engine_label` says which) or an endpoint declared as nothing."""
    declared = cfg.get("served_by") if cfg.get("type") == "external" else None
    return declared if isinstance(declared, str) else None


def variant_label(manifest: dict[str, Any], variant: int) -> str:
    variants = (manifest.get("scenario") or {}).get("variants") or []
    if not 0 <= variant < len(variants):
        return ""
    parts = []
    for k, v in variants[variant].items():
        if isinstance(v, dict):
            v = ",".join(f"{a}={b}" for a, b in v.items())
        parts.append(f"{_SHORT.get(k, k)}={v}")
    return " ".join(parts)


def model_key(spec: dict[str, Any], served_name: Any) -> str:
    """The `model` column: the catalog key for catalog and packaged models, else the engine's name."""
    if spec.get("source") == "catalog":
        return str(spec["name"])
    if spec.get("source") in ("path", "served") and spec.get("catalog"):
        return str(spec["catalog"])
    if spec.get("source") == "package" and spec.get("package") in PACKAGE_CATALOG:
        return PACKAGE_CATALOG[spec["package"]]
    return str(served_name or _scenario_name(spec) or "?")


def _scenario_name(spec: dict[str, Any]) -> str | None:
    """The model's name as the scenario gives it, for a run whose engine never said one (it did not
    start): a path's file name (a GGUF's without .gguf, as the engine names it), a served name, or
    `synthetic`."""
    if spec.get("source") == "path" and spec.get("path"):
        name = Path(str(spec["path"])).name
        return name.removesuffix(".gguf") or None
    if spec.get("source") == "served" and spec.get("name"):
        return str(spec["name"])
    return "synthetic" if spec.get("source") == "synthetic" else None


# engine fields that say where things are or how long to wait, not how the engine runs
NOT_SETTINGS = frozenset({"python", "binary", "host", "health_timeout_s"})


def at_rate(load: pd.Series) -> pd.Series:
    """Which `load` labels of points are open-loop arrival rates (`r2`), not concurrencies (`c8`)."""
    return load.astype(str).str.startswith("r")


def load_shape(load: dict[str, Any]) -> dict[str, Any]:
    """What, besides its rate, an open-loop point offers the server: how arrivals are spread and how many
    requests may be in flight (a `max_concurrency` cap queues the rest on the client, inside their
    TTFT). Empty for closed loop, whose `cN` row key says it all. Every key is always present (None
    when unset): a run without the cap must differ from one with it, not lack the field."""
    if load.get("mode") != "open":
        return {}
    arrival = load.get("arrival") or "poisson"
    return {
        "arrival": arrival,
        "burstiness": load.get("burstiness", 1.0) if arrival == "gamma" else None,
        "max_concurrency": load.get("max_concurrency"),
    }


def settings_of(
    cfg: dict[str, Any],
    workload: dict[str, Any],
    host_cpu: str | None = None,
    load: dict[str, Any] | None = None,
    engine_version: str | None = None,
    build_sha256: str | None = None,
) -> str:
    """The effective engine configuration, workload and open-loop shape (`load_shape`) of a point as
    canonical JSON: two runs under one configuration label whose settings differ (a base `engine:`
    field, `api`, a shared prefix, Poisson against constant arrivals) did not measure the same thing.
    `host_cpu` (`host_cpu_label`, for points that ran on the host CPU): CPUs the catalog does not know
    share the label `cpu`, so this tells their machines apart. `engine_version`: the engine's own version
    (its manifest entry's), where it gave one: another build is another measurement, not a rerun.
    `build_sha256`: the digest of the engine's files (its entry's `build.sha256`: a llama-server's
    executable and libraries), which tells builds of one version apart (every llama.cpp built from a tree
    without git metadata is `b0-unknown`); its first 12 hex digits, as labels show them."""
    engine = {k: v for k, v in cfg.items() if k not in NOT_SETTINGS}
    workload = seeded_requests({k: length_setting(v) if k in LENGTHS else v for k, v in workload.items()})
    out: dict[str, Any] = {"engine": engine, "workload": workload}
    if shape := load_shape(load or {}):
        out["load"] = shape
    if host_cpu:
        out["host"] = {"cpu": host_cpu}
    build = {"version": engine_version, "sha256": build_sha256[:12] if build_sha256 else None}
    if build := {k: v for k, v in build.items() if v}:
        out["engine_build"] = build
    return json.dumps(out, sort_keys=True, default=str)


def seeded_requests(workload: dict[str, Any]) -> dict[str, Any]:
    """A workload's `request_seed` as its requests had it: sent by every run from before the field
    existed; no setting at all at temperature 0, where a seed changes nothing (a sampling engine draws
    seeded requests apart, which slows it: runs with and without differ)."""
    if workload.get("temperature", 0.0) == 0:
        return {k: v for k, v in workload.items() if k != "request_seed"}
    return {"request_seed": True, **workload}


# workload fields that hold a token count or a distribution of them (scenario.models.LengthDist)
LENGTHS = ("input_tokens", "output_tokens")


def length_setting(v: Any) -> Any:
    """A workload length as one comparable value: a count as it is (a `fixed` distribution is its mean),
    a distribution as text with its effective bounds (`normal 256 sd 64 in [1, none]`), so that runs of
    one mean but another spread differ in one setting instead of in fields only one of them has."""
    from pydantic import ValidationError

    from harness.scenario.models import LengthDist

    if not isinstance(v, dict):
        return v
    try:
        d = LengthDist.model_validate(v)
    except ValidationError:  # not a distribution this harness writes: compared as it is
        return v
    if d.dist == "fixed":
        return d.mean
    if d.dist == "uniform":
        return f"uniform {d.lower()}-{d.upper()}"
    hi = d.upper()
    return f"normal {d.mean} sd {d.sd():g} in [{d.lower()}, {'none' if hi is None else hi}]"


def workload_label(workload: dict[str, Any]) -> str:
    """`IN/OUT` mean tokens of a scenario workload (`128/64`), or `dataset NAME` for a dataset."""
    if workload.get("dataset"):
        return f"dataset {Path(str(workload['dataset'])).name}"
    return f"{mean_len(workload.get('input_tokens')):g}/{mean_len(workload.get('output_tokens')):g}"


def mean_lengths(workload: dict[str, Any], point: Any) -> tuple[float, float]:
    """(input, output) tokens per request of a point: the scenario's mean lengths, or for a dataset
    (whose rows set them) the point's measured means (NaN without successful requests)."""
    if not workload.get("dataset"):
        return mean_len(workload.get("input_tokens")), mean_len(workload.get("output_tokens"))
    ok = point.get("ok")
    if not isinstance(ok, int | float) or not ok > 0:
        return math.nan, math.nan
    return float(point.get("input_tokens") or 0) / ok, float(point.get("output_tokens") or 0) / ok


def engine_entry(manifest: dict[str, Any], variant: int, attempt: int = 0) -> dict[str, Any]:
    """The manifest's entry of the engine that measured a point: its variant's entry of the point's
    attempt (a resume starts the engine again, maybe on another build), else the latest before it."""
    mine = [e for e in manifest.get("engines") or [] if e.get("variant") == variant]
    before = [e for e in mine if int(e.get("attempt") or 0) <= attempt]
    return dict(before[-1] if before else mine[0]) if mine else {}


def build_sha256(engine: dict[str, Any]) -> str | None:
    """The digest of an engine's files its manifest entry holds (`build.sha256`), where it has one."""
    build = engine.get("build")
    sha = build.get("sha256") if isinstance(build, dict) else None
    return sha if isinstance(sha, str) else None


def run_points(run: str | Path, table: dict[str, Device] | None = None) -> pd.DataFrame:
    """One run's points with the derived columns of the module docstring (RunNotFound for a run whose
    files hold values of kinds this harness does not write)."""
    with reading(run):
        return _run_points(run, table)


def _run_points(run: str | Path, table: dict[str, Device] | None) -> pd.DataFrame:
    manifest = read_manifest(run)
    df = read_points(run, manifest)
    df = df.drop(columns=info_columns(df))  # an older table's engine constants: not carried into compare
    df = df[~aborted_rows(df)]  # cut short (engine died, Ctrl-C): not a measurement of the point
    if df.empty:
        return df
    if "output_tok_s" not in df.columns:  # the column every comparison divides
        raise RunNotFound(f"{run}: not a points table of this harness: no column output_tok_s")
    rows = []
    scenario = manifest.get("scenario") or {}
    workload = scenario.get("workload") or {}
    for _, p in df.iterrows():
        v = int(p.get("variant", 0) or 0)
        cfg = engine_config(manifest, v)
        att = p.get("attempt")
        eng = engine_entry(manifest, v, int(att) if isinstance(att, int | float) and att == att else 0)
        spec = cfg.get("model") or {}
        model = model_key(spec, p.get("model"))
        precision = str(p.get("precision") or cfg.get("precision") or "auto").lower()
        device, n = device_of(manifest, cfg, eng)
        hardware = device if n == 1 else f"{n}x {device}"
        on_cpu = device == host_cpu_key(manifest)
        engine = str(p.get("engine") or cfg.get("type"))
        launcher = p.get("launcher")
        if isinstance(launcher, str) and launcher and launcher != engine:
            engine = f"{engine}/{launcher}"
        vl = variant_label(manifest, v)
        conc = p.get("concurrency")
        conc = None if conc is None or (isinstance(conc, float) and math.isnan(conc)) else int(conc)
        lengths = mean_lengths(workload, p)
        row = dict(p)
        row.update(
            run_id=manifest.get("run_id") or Path(run).name,
            run_dir=str(run),
            run_status=manifest.get("status"),
            started_utc=manifest.get("started_utc"),
            model=model,
            precision=precision,
            device=device,
            device_declared=device_as_declared(manifest, cfg, eng, device),
            devices=n,
            hardware=hardware,
            engine_label=engine,
            served_by=served_by(cfg),
            owned_by=eng.get("owned_by") if isinstance(eng.get("owned_by"), str) else None,
            variant_label=vl,
            config=" | ".join(x for x in (hardware, engine, vl) if x),
            workload=workload_label(workload),
            load=f"c{conc}" if conc is not None else f"r{float(p.get('rate_rps') or 0):g}",
            concurrency=conc,
            cpu_offload_gb=float(cfg.get("cpu_offload_gb") or 0),
            n_gpu_layers=cfg.get("n_gpu_layers"),
            partial_offload=partial_offload(cfg, eng, on_cpu),
            roofline_tok_s=roofline_tok_s(
                manifest, cfg, eng, device, conc, precision, table, lengths[0] + lengths[1] / 2
            ),
            workload_input_tokens=lengths[0],
            workload_output_tokens=lengths[1],
            host_cpu=host_cpu_label(manifest) if on_cpu else None,
        )
        version = eng.get("version") if isinstance(eng.get("version"), str) else None
        row["settings"] = settings_of(
            cfg, workload, row["host_cpu"], scenario.get("load") or {}, version, build_sha256(eng)
        )
        rows.append(row)
    out = pd.DataFrame(rows)
    out["pct_roofline"] = out["output_tok_s"] / out["roofline_tok_s"] * 100
    return out


def points_frame(runs: list[str | Path], bandwidth_gbs: dict[str, float] | None = None) -> pd.DataFrame:
    """All points of all runs, one row each (see the module docstring for the derived columns).

    `bandwidth_gbs` replaces or adds memory bandwidths per device key (e.g. {"cpu": 20.0} measured)."""
    table = device_table(bandwidth_gbs)
    frames = [f for f in (run_points(r, table) for r in runs) if not f.empty]
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True)
