"""Run directories: `results/<UTC time>-<scenario>/`.

Layout: `manifest.json` (written first, updated atomically), `requests.jsonl` (one record per line,
appended and flushed as each request completes), `points.csv` + `points.parquet` (one row per load
point, rewritten after every point), `engine-*.log`. A run never overwrites an earlier one.
Its points table is read back in `runpoints.py`; runs are found from the paths a user gives in
`runpaths.py`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import os
import re
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pandas as pd
import psutil

from harness.fileio import claim_new, replaced_whole, write_text_whole
from harness.records import RequestRecord

# 2: telemetry windows span the measured requests exactly (first send to last end, closed by samples taken
# as the last one ends); the manifest has `failed_starts` and `host.engine_env`. 1: every earlier layout
SCHEMA_VERSION = 2
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
        run = cls(claim_new(Path(root), f"{utc_stamp(now)}-{scenario_name}"))
        run.lock()  # new, so nobody else holds it: held against a --resume of it while it runs
        return run

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
        if status != "running":
            with contextlib.suppress(OSError):  # derived, made again by `harness report`
                self.drop_html_report()

    def drop_html_report(self) -> None:
        """Remove an HTML report (`harness report` writes it into the run's folder) made while the run
        was going: it says `running` and holds the points done then, beside the run's end as if it were
        its report (the run rewrites report.md itself, not this); `harness report` makes it again."""
        (self.path / "report.html").unlink(missing_ok=True)
        shutil.rmtree(self.path / "report-plots", ignore_errors=True)

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
    "failed_starts": list,
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
