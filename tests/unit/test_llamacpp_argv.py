"""llama.cpp launcher command lines (literal), the llama-server binary lookup and its errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.engines.llamacpp import LlamaCppServer
from harness.engines.process import EngineError
from harness.scenario import ScenarioError, parse_scenario


def _engine(tiny_gguf: Path, **fields: object):
    data = {"type": "llamacpp", "model": {"source": "path", "path": str(tiny_gguf)}, **fields}
    return parse_scenario({"name": "t", "engine": data}, "t.yaml").engine


def test_llama_server_argv(tiny_gguf: Path, tmp_path: Path) -> None:
    exe = tmp_path / "llama-server"
    cfg = _engine(
        tiny_gguf,
        launcher="llama-server",
        binary=str(exe),
        n_gpu_layers=16,
        parallel=4,
        ctx_size=4096,
        threads=8,
        flash_attn=True,
        extra_args=["--fit", "off"],
    )
    srv = LlamaCppServer(cfg, tmp_path / "log")
    assert srv.build_argv(8080) == [
        str(exe),
        "--model",
        str(tiny_gguf),
        "--host",
        "127.0.0.1",
        "--port",
        "8080",
        "--ctx-size",
        "4096",
        "--parallel",
        "4",
        "--n-gpu-layers",
        "16",
        "--metrics",
        "--cont-batching",
        "--verbosity",  # for the load_tensors lines that tell where the weights went (load_placement)
        "4",
        "--threads",
        "8",
        "--flash-attn",
        "on",
        "--fit",
        "off",
    ]
    # a verbosity the scenario sets is left as it is
    for given in (("-lv", "3"), ("--log-verbosity=3",), ("--verbose",)):
        cfg = cfg.model_copy(update={"extra_args": given})
        assert "--verbosity" not in LlamaCppServer(cfg, tmp_path / "log").build_argv(8080), given


def test_llama_server_from_path(tiny_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exe = tmp_path / "llama-server"
    exe.write_text("#!/bin/sh\nexit 1\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    srv = LlamaCppServer(_engine(tiny_gguf, launcher="llama-server"), tmp_path / "log")
    assert srv.server_binary() == str(exe)
    assert srv.build_argv(1)[0] == str(exe)


def test_missing_llama_server_is_a_clear_engine_error(tiny_gguf: Path, tmp_path: Path) -> None:
    cfg = _engine(tiny_gguf, launcher="llama-server", binary=str(tmp_path / "nope" / "llama-server"))
    with pytest.raises(EngineError) as ei:
        LlamaCppServer(cfg, tmp_path / "log").start()
    assert str(ei.value) == (
        f"launcher llama-server: no executable at binary {str(tmp_path / 'nope' / 'llama-server')!r}; "
        "build llama.cpp's server (cmake --build build --target llama-server) and name it in `binary:`"
    )


def test_binary_only_with_llama_server(tiny_gguf: Path) -> None:
    with pytest.raises(ScenarioError) as ei:
        _engine(tiny_gguf, launcher="xllamacpp", binary="/x/llama-server")
    assert "`binary:` is for launcher llama-server, not xllamacpp" in str(ei.value)


def test_all_layers_is_a_count_for_the_native_server(tiny_gguf: Path, tmp_path: Path) -> None:
    for launcher in ("llama-server", "xllamacpp"):
        argv = LlamaCppServer(
            _engine(tiny_gguf, launcher=launcher, n_gpu_layers=-1), tmp_path / "l"
        ).build_argv(1)
        assert argv[argv.index("--n-gpu-layers") + 1] == "999"
    lcp = LlamaCppServer(_engine(tiny_gguf, launcher="llama-cpp-python", n_gpu_layers=-1), tmp_path / "l")
    argv = lcp.build_argv(1)
    assert argv[argv.index("--n_gpu_layers") + 1] == "-1"  # llama-cpp-python's own "all"


def test_llama_cpp_python_gets_the_threads_and_flash_attention_asked(tiny_gguf: Path, tmp_path: Path) -> None:
    """Its server takes batch threads apart (default: every CPU) and flash attention off unless told:
    both as the scenario says, as llama.cpp's own -t and --flash-attn give them."""
    cfg = _engine(tiny_gguf, launcher="llama-cpp-python", threads=3, flash_attn=False)
    argv = LlamaCppServer(cfg, tmp_path / "l").build_argv(1)
    assert argv[argv.index("--n_threads") + 1] == "3" and argv[argv.index("--n_threads_batch") + 1] == "3"
    assert argv[argv.index("--flash_attn") + 1] == "False"
    # and its own argument parser reads them so
    import argparse

    from llama_cpp.server.cli import add_args_from_model, parse_model_from_args
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    p = argparse.ArgumentParser()
    add_args_from_model(p, ModelSettings)
    add_args_from_model(p, ServerSettings)
    got = parse_model_from_args(ModelSettings, p.parse_args(argv[3:]))
    assert (got.n_threads, got.n_threads_batch, got.flash_attn) == (3, 3, False)
