"""Data catalogs shipped with the package (YAML next to this file), loaded and validated with pydantic."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from harness.fileio import read_problem
from harness.yamlio import strict_yaml

CATALOG_DIR = Path(__file__).resolve().parent


class CatalogError(Exception):
    pass


class ModelArch(BaseModel):
    """One model architecture: what a Hugging Face config.json says, plus where it came from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    hf_id: str | None
    architecture: str
    model_type: str
    params_b: float
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    max_position: int
    rope_theta: float
    rope_scaling: dict[str, Any] | None = None
    rms_norm_eps: float
    sliding_window: int | None = None
    tie_word_embeddings: bool
    source: str

    def kv_bytes_per_token(self, bytes_per_elem: float = 2.0) -> float:
        """KV cache bytes per token = 2 (K and V) x layers x kv_heads x head_dim x bytes_per_elem."""
        return 2 * self.layers * self.kv_heads * self.head_dim * bytes_per_elem

    def embedding_params(self) -> float:
        """The token embeddings and, where it is not tied to them, the output layer: vocab x hidden each."""
        return float(self.vocab * self.hidden * (1 if self.tie_word_embeddings else 2))

    def lookup_params(self) -> float:
        """The token embeddings a decode step reads a row of per sequence, not the whole of: vocab x hidden
        where the output layer is a matrix of its own (tied, the output layer reads them whole)."""
        return 0.0 if self.tie_word_embeddings else float(self.vocab * self.hidden)


def yaml_problem(e: Exception) -> str:
    """A YAML error on one line: `line N: invalid YAML: problem` (PyYAML's own text spans several)."""
    mark = getattr(e, "problem_mark", None)
    where = f"line {mark.line + 1}" if mark is not None else "(top level)"
    return f"{where}: invalid YAML: {getattr(e, 'problem', None) or e}"


def read_user_yaml(path: str | Path) -> Any:
    """A YAML file the user names (a price or claims file): its data, or a one-line CatalogError."""
    p = Path(path)
    try:
        return strict_yaml(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CatalogError(f"{p}: file not found") from None
    except yaml.YAMLError as e:
        raise CatalogError(f"{p}: {yaml_problem(e)}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CatalogError(f"{p}: {read_problem(e)}") from None


def load_yaml(name: str) -> dict[str, Any]:
    path = CATALOG_DIR / name
    try:
        data = strict_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise CatalogError(f"{path}: {yaml_problem(e)}") from None
    except OSError as e:
        raise CatalogError(f"{path}: cannot read catalog: {e}") from None
    if not isinstance(data, dict):
        raise CatalogError(f"{path}: expected a mapping")
    return data


@cache
def models() -> dict[str, ModelArch]:
    out: dict[str, ModelArch] = {}
    for key, entry in load_yaml("models.yaml").items():
        try:
            out[key] = ModelArch(name=key, **entry)
        except ValidationError as e:
            raise CatalogError(f"models.yaml: {key}: {e}") from None
    return out


def get_model(name: str) -> ModelArch:
    m = models()
    if name not in m:
        raise CatalogError(f"model {name!r} is not in the model catalog (allowed: {', '.join(sorted(m))})")
    return m[name]
