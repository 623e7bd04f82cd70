"""Energy per token of a plain transformers generate loop, from the NVML sampler's windows.

A model of a catalog architecture (default Llama-3.1-8B: 32 layers, hidden 4096, vocab 128256) is built
on the GPU in bf16 with random weights (no download), then each phase runs for `--seconds`:

    idle            nothing on the GPU
    generate-b{N}   greedy generate, N sequences, --new-tokens tokens each, repeated

For each phase it prints tokens/s, GPU energy (counter) and ∫power, J per generated token, mean
power, utilization and SM clock, and writes `transformers-<gpu>.json` plus the NVML trace
(`transformers-<gpu>.jsonl.gz`, a replay fixture) into --out. Needs torch with CUDA, transformers
and nvidia-ml-py. The numbers are a baseline for the sampler, not an engine comparison.

    python benchmarks/gpu_transformers_energy.py --seconds 12 --out results/gpu/
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from harness.catalog import get_model
from harness.hfmodel import hf_config
from harness.telemetry import nvml
from harness.telemetry.window import j_per_token


def build_model(name: str, device: str = "cuda") -> Any:
    """`name`'s architecture in bf16 with random weights, initialised on `device`."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = hf_config(get_model(name))
    for k in ("architectures", "torch_dtype", "quantization_config"):
        cfg.pop(k, None)
    config = AutoConfig.for_model(cfg.pop("model_type"), **cfg)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    return model.eval()


def generate_for(model: Any, batch: int, new_tokens: int, prompt_tokens: int, seconds: float) -> int:
    """Greedy generate until `seconds` pass (at least once); returns the tokens generated."""
    import torch

    vocab = model.config.vocab_size
    ids = torch.randint(min(300, vocab // 2), vocab, (batch, prompt_tokens), device=model.device)
    done = 0
    t_end = time.monotonic() + seconds
    with torch.inference_mode():
        while True:
            out = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                pad_token_id=0,
            )
            if model.device.type == "cuda":
                torch.cuda.synchronize()
            done += (out.shape[1] - prompt_tokens) * batch
            if time.monotonic() >= t_end:
                return done


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="llama-3.1-8b", help="models.yaml key")
    ap.add_argument("--batches", default="1,8", help="comma-separated batch sizes")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--seconds", type=float, default=15.0, help="length of each phase")
    ap.add_argument("--interval-s", type=float, default=0.1)
    ap.add_argument("--note", default="", help="free text stored with the result (e.g. other load)")
    ap.add_argument("--out", type=Path, default=Path("."))
    a = ap.parse_args(argv)

    try:
        import torch

        if not torch.cuda.is_available():
            print("no CUDA device visible to torch", file=sys.stderr)
            return 2
    except ImportError:
        print("needs torch with CUDA", file=sys.stderr)
        return 2
    sampler = nvml.NvmlSampler(a.interval_s)
    try:
        sampler.start()
    except nvml.NvmlError as e:
        print(f"NVML: {e}", file=sys.stderr)
        return 2
    phases: list[dict[str, Any]] = []

    def window(name: str, work: Any) -> None:
        t0 = time.perf_counter_ns()
        sampler.begin_window(name, t0)
        tokens = work()
        t1 = time.perf_counter_ns()
        cols = sampler.end_window(name, t1)
        wall_s = (t1 - t0) / 1e9
        row = {"phase": name, "wall_s": wall_s, "tokens": tokens, **cols}
        row["tok_s"] = tokens / wall_s if tokens else None
        row["j_per_token"] = j_per_token(cols.get("gpu_energy_j"), tokens) if tokens else None
        phases.append(row)
        print(
            f"{name:>14}: {wall_s:5.1f} s, {tokens or 0:6d} tokens, "
            f"{row['tok_s'] or 0:8.1f} tok/s, energy {cols.get('gpu_energy_j') or 0:8.1f} J "
            f"(∫power {cols.get('gpu_power_integral_j') or 0:8.1f} J, {cols.get('gpu_energy_source')}), "
            f"{row['j_per_token'] or 0:.3f} J/token, power {cols.get('gpu_power_w_mean') or 0:.0f} W, "
            f"util {cols.get('gpu_util_pct_mean') or 0:.0f} %, "
            f"SM {cols.get('gpu_sm_clock_mhz_mean') or 0:.0f} MHz",
            flush=True,
        )

    try:
        t = time.perf_counter()
        model = build_model(a.model)
        print(f"built {a.model} (bf16, random weights) on the GPU in {time.perf_counter() - t:.1f} s")
        generate_for(model, 1, 4, 8, 0.0)  # one warm-up call
        window("idle", lambda: time.sleep(a.seconds / 2) or 0)
        for b in (int(x) for x in a.batches.split(",")):
            window(
                f"generate-b{b}",
                lambda b=b: generate_for(model, b, a.new_tokens, a.prompt_tokens, a.seconds),
            )
    finally:
        sampler.stop()
    gpu = sampler.inventory["gpus"][0]["name"].replace(" ", "-") if sampler.inventory.get("gpus") else "gpu"
    a.out.mkdir(parents=True, exist_ok=True)
    trace = a.out / sampler.write(a.out, filename=f"transformers-{gpu}.jsonl.gz")
    result = {
        "model": a.model,
        "dtype": "bf16",
        "weights": "random",
        "new_tokens": a.new_tokens,
        "prompt_tokens": a.prompt_tokens,
        "torch": torch.__version__,
        "note": a.note,
        "inventory": sampler.inventory,
        "power_source": [r.power_source for r in sampler.readers],
        "energy_source": [r.energy_source for r in sampler.readers],
        "phases": phases,
        "trace": trace.name,
    }
    (a.out / f"transformers-{gpu}.json").write_text(json.dumps(result, indent=1, default=str))
    print(f"wrote {a.out / f'transformers-{gpu}.json'} and {trace}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
