"""Where llama.cpp put the weights, read from its load log. The logs are transcribed from real runs:
a CUDA build on a V100 (ggml-org/ci, all 33 layers offloaded), a CUDA build with 20 of 33 layers on
the GPU, and llama.cpp's CPU build (the `llama-server` that scripts/gpu_bench.sh builds, here)."""

from __future__ import annotations

from harness.engines.llamacpp import load_placement, on_gpu, placement_warning

CUDA_ALL = """\
0.00.381.651 I load_tensors: loading model tensors, this can take a while... (mmap = true)
0.00.665.875 I load_tensors: offloading 32 repeating layers to GPU
0.00.665.887 I load_tensors: offloading output layer to GPU
0.00.665.888 I load_tensors: offloaded 33/33 layers to GPU
0.00.665.898 I load_tensors:        CUDA0 model buffer size =  5049.71 MiB
0.00.665.899 I load_tensors:   CPU_Mapped model buffer size =   245.62 MiB
0.01.452.233 I llama_context: constructing llama_context
"""

CUDA_PARTIAL = """\
load_tensors: layer  31 assigned to device CUDA0, is_swa = 0
load_tensors: layer  32 assigned to device CPU, is_swa = 0
load_tensors: offloading 20 repeating layers to GPU
load_tensors: offloaded 20/33 layers to GPU
load_tensors: CUDA0 model buffer size = 2495.31 MiB
load_tensors: CPU_Mapped model buffer size = 4165.37 MiB
llama_context: constructing llama_context
"""

# llama.cpp's CPU build (scripts/gpu_bench.sh's llama-server, 2026-12) with -ngl 99: at the default
# verbosity it says it ignores the option and prints no load_tensors lines; at -lv 4 it prints them
CPU_BUILD = """\
warning: no usable GPU found, --gpu-layers option will be ignored
warning: one possible reason is that llama.cpp was compiled without GPU support
warning: consult docs/build.md for compilation instructions
0.00.004.108 I srv  llama_server: initializing ...
0.00.006.241 I srv    load_model: loading model '/tmp/tiny-t.gguf'
0.00.011.349 I srv    load_model: initializing, n_slots = 4, n_ctx_slot = 512, kv_unified = 'true'
0.00.013.485 I srv  llama_server: model loaded
"""

CPU_BUILD_TRACE = """\
0.00.010.419 I load_tensors: loading model tensors, this can take a while... (load_mode = mmap)
0.00.010.595 I load_tensors:   CPU_Mapped model buffer size =     0.28 MiB
0.00.010.678 I cmn  common_init_: added </s> logit bias = -inf
0.00.010.882 I llama_context: constructing llama_context
0.00.010.908 I llama_context:        CPU  output buffer size =     0.01 MiB
0.00.010.933 I llama_kv_cache:        CPU KV buffer size =     0.25 MiB
"""


def test_all_layers_on_the_gpu() -> None:
    p = load_placement(CUDA_ALL)
    assert (p["offloaded_layers"], p["offloadable_layers"]) == (33, 33)
    assert p["model_buffers_mib"] == {"CUDA0": 5049.71, "CPU_Mapped": 245.62}
    assert (p["gpu_weights_mib"], p["host_weights_mib"]) == (5049.71, 245.62)
    assert placement_warning(99, p) is None


def test_a_partial_offload_splits_the_weights() -> None:
    p = load_placement(CUDA_PARTIAL)
    assert (
        p["offloaded_layers"] == 20 and p["gpu_weights_mib"] == 2495.31 and p["host_weights_mib"] == 4165.37
    )
    assert placement_warning(20, p) is None


def test_a_cpu_build_asked_for_gpu_layers_is_said_to_run_on_the_cpu() -> None:
    p = load_placement(CPU_BUILD)
    assert p == {"gpu_layers_ignored": True}
    why = placement_warning(40, p)
    assert why is not None and "n_gpu_layers 40" in why and "found no usable GPU" in why
    assert placement_warning(0, p) is None  # asked for the CPU: nothing to say
    assert placement_warning(40, {}) is None  # a log that tells nothing: no guess
    # at trace verbosity the buffers tell the same (the KV and output buffers are not weights)
    t = load_placement(CPU_BUILD_TRACE)
    assert "offloaded_layers" not in t and t["model_buffers_mib"] == {"CPU_Mapped": 0.28}
    assert t["gpu_weights_mib"] == 0
    why = placement_warning(40, t)
    assert why is not None and "put no weights on one (CPU_Mapped 0.3 MiB)" in why


def test_the_last_load_in_a_log_counts_and_pinned_host_memory_is_not_the_gpu() -> None:
    assert load_placement(CPU_BUILD + CUDA_ALL)["gpu_weights_mib"] == 5049.71
    assert on_gpu("CUDA0") and on_gpu("Vulkan1") and on_gpu("MTL0")
    assert not on_gpu("CPU_Mapped") and not on_gpu("CPU_REPACK") and not on_gpu("CUDA_Host")


# the same CPU build loading a model written in 3 split files (NAME-0000K-of-00003.gguf): one mapped
# buffer per file
CPU_SPLIT_TRACE = """\
0.00.009.523 I llama_model_loader: - kv  23:                                split.count u16              = 3
0.00.010.067 I load_tensors:   CPU_Mapped model buffer size =     0.10 MiB
0.00.010.080 I load_tensors:   CPU_Mapped model buffer size =     0.06 MiB
0.00.010.081 I load_tensors:   CPU_Mapped model buffer size =     0.11 MiB
0.00.010.349 I llama_context:        CPU  output buffer size =     0.01 MiB
"""


def test_the_buffers_of_a_split_model_are_summed() -> None:
    p = load_placement(CPU_SPLIT_TRACE)
    assert p["model_buffers_mib"] == {"CPU_Mapped": 0.27} and p["host_weights_mib"] == 0.27
