"""The error of model lookup and generation (harness.models, harness.gguf_writer)."""

from __future__ import annotations


class ModelError(Exception):
    """A model that cannot be found or built; message is for the user."""
