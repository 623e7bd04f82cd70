"""A run's points table read back (points.parquet, else points.csv), checked to be one this harness
wrote, and the guard (`reading`) that turns a hand-edited run file into RunNotFound."""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from harness.results import RunNotFound, read_manifest

# the column every point has, and the columns that hold numbers where present
POINT_KEY_COLUMNS = ("point_id",)
# counts and indices: whole numbers (inf read from a CSV is a float, and no count)
POINT_COUNT_COLUMNS = ("ok", "errors", "requests", "concurrency", "variant", "attempt", "one_read_streams")
POINT_NUMBER_COLUMNS = (*POINT_COUNT_COLUMNS, "output_tok_s", "rate_rps", "window_s")


def _not_numbers(column: pd.Series) -> bool:
    """A column read as something other than numbers, with values in it (text, or mixed)."""
    return not (pd.api.types.is_numeric_dtype(column) or column.isna().all())


def _points_problem(df: pd.DataFrame) -> str | None:
    """What makes `df` no points table this harness wrote (None: nothing)."""
    if df.empty and not len(df.columns):
        return None
    missing = [c for c in POINT_KEY_COLUMNS if c not in df.columns]
    if missing:
        return f"no column {', '.join(missing)}"
    if bad_ids := [v for v in df["point_id"] if not isinstance(v, str)]:
        return f"column point_id: {bad_ids[0]!r} is not a point id (such as v0-c4)"
    for c in POINT_NUMBER_COLUMNS:
        if c not in df.columns:
            continue
        if _not_numbers(df[c]):
            bad = [v for v in df[c] if pd.notna(v) and pd.isna(pd.to_numeric(v, errors="coerce"))]
            if bad:
                return f"column {c}: {bad[0]!r} is not a number"
        if c in POINT_COUNT_COLUMNS and (
            odd := [v for v in df[c] if pd.notna(v) and not float(v).is_integer()]
        ):
            return f"column {c}: {odd[0]!r} is not a whole number"
    return None


# what a value of the wrong kind in a run's files raises where a reader uses it
HAND_EDIT_ERRORS = (TypeError, ValueError, KeyError, AttributeError, IndexError, OverflowError)


@contextmanager
def reading(run: str | Path) -> Iterator[None]:
    """Read a run's files within: a value of a kind this harness does not write there (a manifest or
    points table edited by hand, or written by other tools) becomes RunNotFound naming the run and where
    the reading stopped, not a traceback."""
    try:
        yield
    except UnicodeError:  # the terminal's encoding, not the run's files
        raise
    except HAND_EDIT_ERRORS as e:
        package = str(Path(__file__).resolve().parent)
        frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename.startswith(package)]
        at = f", in {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
        raise RunNotFound(
            f"{run}: its manifest.json or points table holds a value of a kind this harness does not write "
            f"({type(e).__name__}: {e}{at}): was it edited by hand?"
        ) from None


def manifest_points_done(manifest: dict[str, Any]) -> list[str] | None:
    """The manifest's `points_done`, None when absent or when it names planned rates a rate search
    replaced by its probes (`find_max_goodput`)."""
    done = None if manifest.get("find_max_goodput") else manifest.get("points_done")
    return [str(p) for p in done] if isinstance(done, list) else None


def aborted_rows(df: pd.DataFrame) -> pd.Series:
    """True for the points cut short (engine died, Ctrl-C): `aborted` holds the reason. A CSV-read table
    whose `aborted` column is empty reads it as floats (NaN), hence no string fill."""
    if "aborted" not in df.columns:
        return pd.Series(False, index=df.index)
    return df["aborted"].map(lambda v: isinstance(v, str) and v != "").astype(bool)


def info_columns(df: pd.DataFrame) -> list[str]:
    """Columns named by an info metric and its labels (`server_vllm_cache_config_info__block_size_...`,
    up to 1,000 characters), which older harnesses wrote into the points table: constants of the engine
    (the manifest holds them now), no measurement. The metric's name is what comes before the first `__`."""
    return [
        c
        for c in map(str, df.columns)
        if c.startswith("server_") and "__" in c and c.split("__", 1)[0].endswith("_info")
    ]


def read_points(run: str | Path, manifest: dict[str, Any] | None = None) -> pd.DataFrame:
    """The run's points table: points.parquet, else points.csv (the same table), else an empty one.
    RunNotFound when neither can be read (a truncated file). Where the parquet table could not be read,
    or the table lacks points the manifest says are done, `df.attrs["read_note"]` says so. `manifest`:
    the run's manifest when the caller has read it already (else it is read here, if it can be)."""
    run = Path(run)
    problems = []
    for name, read in (("points.parquet", pd.read_parquet), ("points.csv", pd.read_csv)):
        if (run / name).is_file():
            try:
                df = read(run / name)
            except (OSError, ValueError, pd.errors.ParserError) as e:  # ArrowInvalid: a ValueError
                problems.append(f"{name}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
                continue
            if problem := _points_problem(df):
                raise RunNotFound(f"{run / name}: not a points table of this harness: {problem}")
            for c in POINT_NUMBER_COLUMNS:  # numbers written as text (a table other tools wrote)
                if c in df.columns and _not_numbers(df[c]):
                    df[c] = pd.to_numeric(df[c], errors="coerce")
            if problems:  # the parquet table is damaged (both are written whole): say the CSV was read
                df.attrs["read_note"] = f"{'; '.join(problems)}: the points were read from {name}"
            done = manifest_points_done(_manifest_or_empty(run, manifest))
            if done is not None and "point_id" in df.columns and not set(done) <= set(df["point_id"]):
                missing = sorted(set(done) - set(df["point_id"]))
                df.attrs["read_note"] = (
                    df.attrs.get("read_note", "")
                    + f"; {name} lacks point(s) the manifest says are done: "
                    + ", ".join(map(str, missing))
                ).lstrip("; ")
            return df
    if problems:
        raise RunNotFound(f"{run}: unreadable points table ({'; '.join(problems)})")
    df = pd.DataFrame()
    if done := manifest_points_done(_manifest_or_empty(run, manifest)):
        df.attrs["read_note"] = (
            f"no points table (points.parquet, points.csv) though the manifest says {len(done)} point(s) "
            "are done: the files were removed"
        )
    return df


def _manifest_or_empty(run: Path, manifest: dict[str, Any] | None) -> dict[str, Any]:
    if manifest is not None:
        return manifest
    try:
        return read_manifest(run)
    except RunNotFound:
        return {}
