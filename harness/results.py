"""Run directories: `results/<UTC time>-<scenario>/`.

Layout: `manifest.json` (written first, updated atomically), `requests.jsonl` (one record per line,
appended and flushed as each request completes), `points.csv` + `points.parquet` (one row per load
point, rewritten after every point), `engine-*.log`. A run never overwrites an earlier one.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import re
import socket
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pandas as pd
import psutil

from harness.fileio import replaced_whole, write_text_whole
from harness.records import RequestRecord

SCHEMA_VERSION = 1
STATUSES = ("running", "complete", "partial", "failed", "interrupted")


def utc_stamp(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.UTC)
    return now.strftime("%Y%m%dT%H%M%SZ")


def _drop_torn_tail(path: Path) -> None:
    """Cut a records file back to its last complete line: a run killed mid-write leaves a partial
    one, and a record appended after it (on resume) would be glued to it and lost."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    if size == 0:
        return
    with open(path, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return
        f.seek(0)
        data = f.read()
        f.truncate(data.rfind(b"\n") + 1)


COUNTS_FILE = "token-counts.jsonl"
COUNT_FIELDS = ("output_tokens", "output_tokens_source", "output_text_tokens")


# run directories this process has locked (RunDir.lock): path -> the descriptor that holds the lock
_LOCKED: dict[str, int] = {}


@dataclass
class RunDir:
    """A results directory being written by a run."""

    path: Path
    manifest: dict[str, Any] = field(default_factory=dict)
    _records: IO[str] | None = None
    _counts_checked: bool = False

    def lock(self) -> bool:
        """Take the directory's exclusive lock until `unlock` (a run lets it go once its status is
        written) or this process ends (the system lets it go, a kill included); False when another process
        holds it. Two `--resume`s started together both saw no live runner in the manifest, then both
        measured the same points. Where the file system has no flock, no lock is taken (True): the
        manifest's runner check alone then keeps a second process out."""
        try:
            import fcntl
        except ImportError:  # no flock on this system: the manifest's runner check alone
            return True
        key = os.path.realpath(self.path)
        if key in _LOCKED:  # this process holds it already (a lock is per open file, not per process)
            return True
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:  # not a directory this process can open: the manifest's runner check alone
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            # held by another process; any other error is a file system without flock (some network and
            # cluster file systems): the manifest's runner check alone, as without fcntl
            return e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN)
        _LOCKED[key] = fd
        return True

    def unlock(self) -> None:
        """Let the directory's lock go (the run is over: its status is written)."""
        if (fd := _LOCKED.pop(os.path.realpath(self.path), None)) is not None:
            os.close(fd)

    @classmethod
    def create(cls, root: str | Path, scenario_name: str, now: dt.datetime | None = None) -> RunDir:
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        base = f"{utc_stamp(now)}-{scenario_name}"
        for i in range(1, 1000):
            p = root / (base if i == 1 else f"{base}-{i}")
            try:
                p.mkdir()
            except FileExistsError:
                continue
            run = cls(p)
            run.lock()  # new, so nobody else holds it: held against a --resume of it while it runs
            return run
        raise RuntimeError(f"could not create a new run directory under {root}")

    def discard_unstarted(self) -> bool:
        """Remove a new run directory that holds nothing but its first manifest (a Ctrl-C before its first
        point): an empty run left behind looked like a run that had failed. False, and the directory
        kept, when anything else is in it."""
        names = {p.name for p in self.path.iterdir()}
        if not names <= {"manifest.json"} | {n for n in names if n.startswith(".manifest.json.")}:
            return False
        self.unlock()
        for name in names:
            (self.path / name).unlink(missing_ok=True)
        try:
            self.path.rmdir()
        except OSError:
            return False
        return True

    # -- manifest
    def write_manifest(self, manifest: dict[str, Any]) -> None:
        self.manifest = dict(manifest)
        self.manifest.setdefault("schema_version", SCHEMA_VERSION)
        write_text_whole(self.path / "manifest.json", json.dumps(self.manifest, indent=2, default=str) + "\n")

    def update_manifest(self, **fields: Any) -> None:
        self.manifest.update(fields)
        self.write_manifest(self.manifest)

    def set_status(self, status: str, message: str | None = None) -> None:
        assert status in STATUSES, status
        fields: dict[str, Any] = {"status": status}
        if status != "running":
            fields["finished_utc"] = dt.datetime.now(dt.UTC).isoformat()
        if message:
            fields["status_message"] = message
        self.update_manifest(**fields)

    # -- records
    def append_record(self, rec: RequestRecord) -> None:
        if self._records is None:
            path = self.path / "requests.jsonl"
            _drop_torn_tail(path)
            self._records = open(path, "a", encoding="utf-8")  # noqa: SIM115
        self._records.write(json.dumps(rec.to_json(), separators=(",", ":")) + "\n")
        self._records.flush()

    def append_counts(self, recs: list[RequestRecord]) -> None:
        """Token counts made after these records were written (tokenizing streamed text once the point
        is over): `iter_records` applies them, so metrics recomputed from disk match the points."""
        if not recs:
            return
        if not self._counts_checked:  # the first append of this process: a killed one may have torn the end
            _drop_torn_tail(self.path / COUNTS_FILE)
            self._counts_checked = True
        with open(self.path / COUNTS_FILE, "a", encoding="utf-8") as f:
            for r in recs:
                row = {"request_id": r.request_id, **{k: getattr(r, k) for k in COUNT_FIELDS}}
                f.write(json.dumps(row, separators=(",", ":")) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def sync(self) -> None:
        if self._records is not None:
            self._records.flush()
            os.fsync(self._records.fileno())

    def close(self) -> None:
        if self._records is not None:
            self.sync()
            self._records.close()
            self._records = None

    # -- points
    def write_points(self, rows: list[dict[str, Any]]) -> pd.DataFrame:
        """Both tables, each written whole to a temporary file, synced, then renamed over the old one (a lost
        machine leaves the old table or the new one, never a torn one)."""
        df = pd.DataFrame(rows)
        for name, write in (("points.csv", df.to_csv), ("points.parquet", df.to_parquet)):
            with replaced_whole(self.path / name) as tmp:
                write(tmp, index=False)
        return df

    def log_path(self, name: str) -> Path:
        return self.path / name


# ---------------------------------------------------------------- reading
class RunNotFound(Exception):
    pass


def read_manifest(run: str | Path) -> dict[str, Any]:
    p = Path(run) / "manifest.json"
    if not Path(run).exists():  # a glob that matched nothing reaches here as written (results/h-*/*/)
        raise RunNotFound(f"{run}: no such file or directory")
    if not p.is_file():
        raise RunNotFound(f"{run}: not a run directory (no manifest.json)")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:  # not JSON, not UTF-8, unreadable
        raise RunNotFound(f"{p}: unreadable manifest: {e}") from None
    if not isinstance(data, dict):
        raise RunNotFound(f"{p}: unreadable manifest: expected a JSON object, got {type(data).__name__}")
    for key, kind in MANIFEST_SHAPE.items():
        v: Any = data
        for part in key.split("."):  # a part inside a part that is not an object was said already
            v = v.get(part) if isinstance(v, dict) else None
        if v is not None and not isinstance(v, kind):
            raise RunNotFound(f"{p}: unreadable manifest: {key}: expected {_JSON_NAMES[kind]}")
    if any(not isinstance(e, dict) for e in data.get("engines") or []):
        raise RunNotFound(f"{p}: unreadable manifest: engines: expected a list of objects")
    return data


# the manifest's parts the readers go into, and what each is when present
MANIFEST_SHAPE: dict[str, type] = {
    "scenario": dict,
    "scenario.engine": dict,
    "scenario.workload": dict,
    "scenario.load": dict,
    "scenario.slo": dict,
    "scenario.hardware": dict,
    "scenario.variants": list,
    "seeds": dict,
    "host": dict,
    "hardware": dict,
    "telemetry": dict,
    "runner": dict,
    "engines": list,
    "status": str,
    "run_id": str,
}
_JSON_NAMES: dict[type, str] = {dict: "an object", list: "a list", str: "a string"}


def runner_info() -> dict[str, Any]:
    """The process writing a run (the manifest's `runner`): host, pid and the pid's start time."""
    return {"hostname": socket.gethostname(), "pid": os.getpid(), "started_s": psutil.Process().create_time()}


def live_runner(manifest: dict[str, Any]) -> int | None:
    """The pid of another process on this host that is still writing this `running` run; None when there
    is none (finished, killed, this process, another host, or the pid reused by a later process)."""
    r = manifest.get("runner") or {}
    pid = r.get("pid")
    if manifest.get("status") != "running" or r.get("hostname") != socket.gethostname():
        return None
    if not pid or pid == os.getpid():
        return None
    try:
        p = psutil.Process(int(pid))
        same = abs(p.create_time() - float(r.get("started_s") or 0)) < 1.0  # not a reused pid
    except (psutil.Error, ValueError, TypeError):
        return None
    return int(pid) if same and p.status() != psutil.STATUS_ZOMBIE else None


def runner_state(manifest: dict[str, Any]) -> str:
    """Where the process writing a `running` run stands: `live` (still going on this host), `unrecorded`
    (a run made before runs recorded their process), `elsewhere` (written on another host: still going
    there, or killed) or `gone` (no longer on this host: killed, or its machine went down)."""
    if live_runner(manifest) is not None:
        return "live"
    host = (manifest.get("runner") or {}).get("hostname")
    if not host:
        return "unrecorded"
    return "elsewhere" if host != socket.gethostname() else "gone"


COMPARE_OUTPUT = "compare.md"  # `harness compare` writes it into every output directory


def resolve_runs(paths: list[Path]) -> tuple[list[Path], list[str]]:
    """The run directories named by `paths`, and notes on what was passed over.

    A run directory (with manifest.json) stands for itself, and so does a file in it (its manifest.json);
    any other directory for the runs below it, up
    to MAX_SEARCH_DEPTH folders down, hidden ones passed over (`results`, `results/evidence`, a cloud fetch
    `results/<cluster>`); `harness compare` output
    directories, files (a report's HTML, a README) and the plot folders of a report over several runs are
    passed over with a note (so `results/*` works, also after a compare or such a report); where no run is
    found at all, the first file given is said not to be a run. A path with no
    run in or below it raises RunNotFound. Each run comes once, in the order given.
    """
    runs: list[Path] = []
    notes: list[str] = []
    files: list[Path] = []  # passed over, unless nothing else is given
    for p in paths:
        if (p / "manifest.json").is_file():
            read_manifest(p)  # readable
            runs.append(p)
        elif (p / COMPARE_OUTPUT).is_file():
            notes.append(f"{p}: a compare output, not a run: passed over")
        elif report_plots_dir(p):
            notes.append(f"{p}: a report's plots, not a run: passed over")
        elif p.is_file() and (p.parent / "manifest.json").is_file():  # RUN/manifest.json, RUN/points.csv
            read_manifest(p.parent)
            runs.append(p.parent)
            notes.append(f"{p}: a file of run directory {p.parent}: using that run")
        elif p.is_file():  # a glob's README.md, a report's HTML
            what = "a report" if p.suffix == ".html" else "a file"
            notes.append(f"{p}: {what}, not a run: passed over")
            files.append(p)
        elif p.is_dir() and (inner := runs_below(p)):
            for c in inner:
                read_manifest(c)  # readable
            runs += inner
            notes.append(f"{p}: not a run directory; using the {len(inner)} run(s) below it")
        else:
            read_manifest(p)  # raises with the reason
    if files and not runs:
        read_manifest(files[0])  # files alone: "not a run directory"
    return list(dict.fromkeys(runs)), notes


def report_plots_dir(p: Path) -> bool:
    """`p` is the `<name>-plots/` folder an HTML report `<name>.html` beside it wrote its PNGs into."""
    return p.name.endswith("-plots") and (p.parent / f"{p.name.removesuffix('-plots')}.html").is_file()


# how many folders below a given one runs are looked for (`results/<cluster>/evidence/<run>` is 3): a home
# folder or `/` given by mistake is not walked whole
MAX_SEARCH_DEPTH = 6


def runs_below(top: Path, depth: int = MAX_SEARCH_DEPTH) -> list[Path]:
    """Run directories under `top`, at most `depth` folders down, sorted by path; runs, compare outputs,
    hidden folders (`.venv`, `.git`) and links are not descended into."""
    found: list[Path] = []
    try:
        subs = sorted(
            c for c in top.iterdir() if not c.name.startswith(".") and c.is_dir() and not c.is_symlink()
        )
    except OSError:  # a folder this user cannot list (`harness report /` passes through /proc): no runs
        return found
    for sub in subs:
        if (sub / "manifest.json").is_file():
            found.append(sub)
        elif depth > 1 and not (sub / COMPARE_OUTPUT).is_file():
            found += runs_below(sub, depth - 1)
    return found


def _counts(run: Path) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    p = run / COUNTS_FILE
    if not p.is_file():
        return out
    for raw in p.read_bytes().splitlines():
        try:
            row = json.loads(raw.decode("utf-8"))
            out[int(row.pop("request_id"))] = {k: v for k, v in row.items() if k in COUNT_FIELDS}
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            continue  # a torn last line
    return out


def iter_records(run: str | Path) -> Iterator[RequestRecord]:
    """Records of a run, with the token counts of `token-counts.jsonl` applied; a torn last line
    (crash mid-write) is skipped."""
    p = Path(run) / "requests.jsonl"
    if not p.is_file():
        return
    counts = _counts(Path(run))
    # records are written as ASCII JSON: a line with bytes that are not UTF-8 is damaged, skipped as a
    # torn one is
    with open(p, "rb") as f:
        for raw in f:
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                continue
            if not line:
                continue
            try:
                rec = RequestRecord.from_json(json.loads(line))
            except (json.JSONDecodeError, TypeError):
                continue
            for k, v in counts.get(rec.request_id, {}).items():
                setattr(rec, k, v)
            yield rec


_ID_HEAD = re.compile(rb'\{"request_id":(\d+),')  # how RequestRecord.to_json starts a line


def max_request_id(run: str | Path) -> int:
    """The highest request id in the run's records (-1 with none): from the head of each line where it is
    as written, decoding the line only where it is not (a 32k-token record is half a megabyte of JSON)."""
    p = Path(run) / "requests.jsonl"
    if not p.is_file():
        return -1
    top = -1
    with open(p, "rb") as f:
        for line in f:
            # a torn last line (no newline) starts as a whole one does: decoded, it is not a record
            if line.endswith(b"\n") and (m := _ID_HEAD.match(line)):
                top = max(top, int(m.group(1)))
                continue
            try:
                top = max(top, int(json.loads(line)["request_id"]))
            except (ValueError, KeyError, TypeError):  # a torn or damaged line
                continue
    return top


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
