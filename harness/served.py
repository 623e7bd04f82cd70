"""Which engine served a point, as claims name engines: the one the harness launched (`vllm` of a
`vllm/docker` label), or, for an external endpoint, the one its scenario declares behind it
(`engine.served_by`), which the harness neither launched nor saw: said beside every claim it meets."""

from __future__ import annotations

from typing import Any

import pandas as pd

EXTERNAL = "external"


def launched_engine(points: pd.DataFrame) -> pd.Series:
    """Each point's engine label without its launcher (`vllm/docker` is `vllm`)."""
    return points["engine_label"].astype(str).str.split("/").str[0]


def served_engine(points: pd.DataFrame) -> pd.Series:
    """Each point's engine as claims name it: the launched one, and for an external endpoint the engine
    its scenario declares (`served_by`) where it declares one (`external` where not)."""
    engines = launched_engine(points)
    if "served_by" not in points.columns:  # a frame from before the column
        return engines
    declared = points["served_by"].where((engines == EXTERNAL) & points["served_by"].map(_named))
    return declared.fillna(engines).astype(str)


def declared_doubt(r: pd.Series) -> str | None:
    """Why a point set beside a claim about an engine may not be that engine: it was only declared
    (`engine vllm as the scenario declared it: ...`), with what the endpoint's /models said of itself
    (`owned_by`) where it said anything. None for a launched engine."""
    served = r.get("served_by")
    if not _named(served) or str(r.get("engine_label", "")).split("/")[0] != EXTERNAL:
        return None
    said = f"engine {served} as the scenario declared it: an external endpoint the harness did not launch"
    owner = r.get("owned_by")
    if _named(owner) and owner == served:
        said += f" (its /models says owned_by {owner} too)"
    elif _named(owner):
        said += f" (its /models says owned_by {owner})"
    return said


def undeclared_hint(points: pd.DataFrame, engine: str) -> str:
    """What lets an external endpoint's points meet a claim about `engine`: `engine.served_by` in its
    scenario, with what such an endpoint's /models said of itself (`owned_by`), where any did. Empty
    where no point is an undeclared external endpoint."""
    undeclared = launched_engine(points) == EXTERNAL
    if "served_by" in points.columns:
        undeclared &= ~points["served_by"].map(_named)
    if not undeclared.any():
        return ""
    owners: list[str] = []
    if "owned_by" in points.columns:
        owners = sorted({str(o) for o in points.loc[undeclared, "owned_by"] if _named(o)})
    said = f" (its /models says owned_by {', '.join(owners)})" if owners else ""
    return (
        f"; an external endpoint{said} meets a claim about {engine} where its scenario declares "
        f"engine.served_by: {engine}"
    )


def _named(x: Any) -> bool:
    return isinstance(x, str) and bool(x)
