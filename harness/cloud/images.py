"""Pinned engine images: the bases of docker/Dockerfile.* and the default SkyPilot `image_id`s.

One place for the tags; tests/unit/test_docker.py checks the Dockerfiles' FROM lines against these.
None of these tags was pulled from this project's machines (no registry access there): each one
follows its project's published tag scheme (vLLM: `v<release>`, the PyPI version; llama.cpp:
`server-cuda-b<build>`), so check with `docker manifest inspect IMAGE` before a long run.
"""

from __future__ import annotations

# vLLM's OpenAI-compatible server image; tag = the vLLM release on PyPI (0.33.0 as of 2026-11).
VLLM_VERSION = "0.33.0"
VLLM_IMAGE = f"vllm/vllm-openai:v{VLLM_VERSION}"

# llama.cpp's CUDA server image (Ubuntu 24.04, CUDA runtime, /app/llama-server, no Python).
LLAMACPP_CUDA_IMAGE = "ghcr.io/ggml-org/llama.cpp:server-cuda-b11382"
LLAMACPP_SERVER_BINARY = "/app/llama-server"

# The CPU quickstart image: the official Python image (Debian bookworm, Python 3.11).
PYTHON_CPU_IMAGE = "python:3.11-slim-bookworm"
