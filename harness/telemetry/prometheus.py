"""Engine-internal metrics: scrape the engine's Prometheus `/metrics` around each window.

Parsing is `prometheus_client.parser.text_string_to_metric_families`. The endpoint is scraped at
every window edge and every `interval_s` (at least 1 s) in between; texts are parsed after the
window. Columns per window, all with the prefix `server_` and `:`/odd characters turned into `_`:

- counters, and histogram/summary `_sum`/`_count`: `server_<sample>_delta` = value at the window's
  end − value at its start (None if it went down: the engine restarted);
- gauges (and untyped): `server_<sample>` = last value, `server_<sample>_max` = highest value seen;
- gauges that are running means since the engine started (llama.cpp's `n_busy_slots_per_decode`, the
  mean over all `n_decode_total` calls): also `server_<sample>_window`, the mean over the window's calls
  alone = (mean₁·n₁ − mean₀·n₀) / (n₁ − n₀).

Label values other than identity labels (`model_name`, `engine`, ...) become part of the name
(`server_vllm_request_success_total__finished_reason_stop_delta`); samples that differ only in
identity labels (vLLM's data-parallel ranks, `engine="0"`, `"1"`, ...) are added up, except gauges that
are fractions (a name ending in `_perc`, `_ratio`, `_percent`, `_fraction`, `_hit_rate`: KV-cache usage,
prefix-cache hit rates), of which the highest is kept. Histogram buckets and `_created` samples are
left out of the columns and of the file: `telemetry-engine-metrics-v<N>[-a<K>].jsonl.gz` keeps every
scrape as its parsed snapshot (`{t_ns, values: {name: value}}`). Info metrics (type `info`, or a name
ending in `_info`, such as vLLM's `cache_config_info` with its dozens of labels) are constant
metadata: their labels go to the manifest once (`info`), not into columns.
"""

from __future__ import annotations

import gzip
import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from harness.client.http1 import direct
from harness.fileio import replaced_whole
from harness.telemetry.base import telemetry_file

# every column the scraper adds to a point's row starts with this
PREFIX = "server_"
IDENTITY_LABELS = frozenset({"model_name", "engine", "instance", "job", "server", "model", "pod"})
COUNTER_TYPES = frozenset({"counter"})
Snapshot = dict[str, tuple[str, float]]  # column stem -> (kind "counter" | "gauge", value)


def _clean(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "_", s).strip("_")


def _is_info(fam: Any) -> bool:
    return fam.type == "info" or fam.name.endswith("_info")


def info_labels(text: str) -> dict[str, list[dict[str, str]]]:
    """{family: [labels of each sample]} of the info metrics in a Prometheus text payload."""
    return {
        fam.name: [dict(smp.labels) for smp in fam.samples]
        for fam in text_string_to_metric_families(text)
        if _is_info(fam)
    }


FRACTION_SUFFIXES = ("_perc", "_ratio", "_percent", "_fraction", "_hit_rate")

# high-water marks a server types as counters (llama.cpp's largest sequence seen, which the text parser
# names with the `_total` it gives counters): the delta of one over a window is how far the mark rose, not
# what it is, so they are kept as gauges, under their own names
HIGH_WATER_MARKS = {"llamacpp_n_tokens_max_total": "llamacpp_n_tokens_max"}


def parse_metrics(text: str) -> Snapshot:
    """Flatten a Prometheus text payload into {stem: (kind, value)} (see the module docstring)."""
    snap: dict[str, tuple[str, float]] = {}
    for fam in text_string_to_metric_families(text):
        if _is_info(fam):
            continue
        for smp in fam.samples:
            name = smp.name
            if name.endswith(("_bucket", "_created", "_gsum", "_gcount")) or "le" in smp.labels:
                continue
            if fam.type in COUNTER_TYPES or (
                fam.type in ("histogram", "summary") and name.endswith(("_sum", "_count"))
            ):
                kind = "counter"
            else:
                kind = "gauge"
            if (mark := HIGH_WATER_MARKS.get(_clean(name))) is not None:
                name, kind = mark, "gauge"
            extra = sorted((k, v) for k, v in smp.labels.items() if k not in IDENTITY_LABELS)
            stem = _clean(name) + "".join(f"__{_clean(k)}_{_clean(v)}" for k, v in extra)
            v = float(smp.value)
            if (old := snap.get(stem)) is not None:
                fraction = kind == "gauge" and _clean(name).endswith(FRACTION_SUFFIXES)
                v = max(v, old[1]) if fraction else v + old[1]
            snap[stem] = (kind, v)
    return snap


# running-mean gauge stem -> the counter stem of the calls it averages over
RUNNING_MEANS = {"llamacpp_n_busy_slots_per_decode": "llamacpp_n_decode_total"}


def window_columns(before: Snapshot, after: Snapshot, during: list[Snapshot]) -> dict[str, Any]:
    """Columns for one window from the scrapes at its start and end and any in between.

    counter: after − before (None if negative); gauge: last value (after) and max over all scrapes.
    """
    cols: dict[str, Any] = {}
    for stem, (kind, v1) in after.items():
        if kind == "counter":
            if stem not in before:
                continue
            d = v1 - before[stem][1]
            cols[f"{PREFIX}{stem}_delta"] = d if d >= 0 else None
        else:
            seen = [s[stem][1] for s in (before, *during, after) if stem in s]
            cols[f"{PREFIX}{stem}"] = v1
            cols[f"{PREFIX}{stem}_max"] = max(seen)
            calls = RUNNING_MEANS.get(stem)
            if calls and stem in before and calls in before and calls in after:
                n0, n1 = before[calls][1], after[calls][1]
                m0 = before[stem][1]
                cols[f"{PREFIX}{stem}_window"] = (v1 * n1 - m0 * n0) / (n1 - n0) if n1 > n0 else None
    return cols


class PrometheusScraper:
    """Scrapes `url` around windows; columns from `window_columns`.

    A scrape during a load point only fetches the text: parsing a large payload (vLLM's is ~54 KB, about
    26 ms of pure-Python parsing on our 2-core host) in the harness process would hold the GIL while
    streams are being timed. Texts are parsed when the window ends (the load is over) and replaced by
    their snapshots, so memory stays small on long runs.
    """

    name = "engine_metrics"

    def __init__(self, url: str, interval_s: float = 1.0, timeout_s: float = 5.0):
        self.url = url
        self.interval_s = max(1.0, interval_s)
        self.timeout_s = timeout_s
        # (stamp, raw text until parsed, then its snapshot; None when it could not be parsed)
        self.scrapes: list[tuple[int, Snapshot | str | None]] = []
        self.failures = 0
        self.last_error: str | None = None
        self.families: dict[str, str] = {}
        self.info: dict[str, list[dict[str, str]]] = {}
        self._open: dict[str, tuple[int, int]] = {}  # window -> (start stamp, index of its first scrape)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: httpx.Client | None = None

    def fetch(self) -> int | None:
        """One scrape kept as raw text; its index in `scrapes`, None (and counted) when it fails."""
        assert self._client is not None
        t = time.perf_counter_ns()
        try:
            r = self._client.get(self.url)
            r.raise_for_status()
            text = r.text
        except httpx.HTTPError as e:
            with self._lock:
                self.failures += 1
                self.last_error = f"{type(e).__name__}: {e}"
            return None
        with self._lock:
            self.scrapes.append((t, text))
            return len(self.scrapes) - 1

    def snapshot(self, i: int) -> Snapshot | None:
        """Scrape `i` parsed (once; the text is dropped); None when it cannot be parsed."""
        with self._lock:
            t, item = self.scrapes[i]
        if not isinstance(item, str):
            return item
        snap: Snapshot | None
        try:
            snap = parse_metrics(item)
            if not self.families:
                self.families = {f.name: f.type for f in text_string_to_metric_families(item)}
                self.info = info_labels(item)
        except ValueError as e:
            with self._lock:
                self.failures += 1
                self.last_error = f"unparsable metrics: {e}"
            snap = None
        with self._lock:
            self.scrapes[i] = (t, snap)
        return snap

    def start(self) -> None:
        self._client = httpx.Client(timeout=self.timeout_s, **direct())
        i = self.fetch()
        if i is None or self.snapshot(i) is None:
            self._client.close()
            self._client = None
            raise RuntimeError(f"{self.url}: no usable metrics ({self.last_error})")
        self._thread = threading.Thread(target=self._loop, name="metrics-scraper", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.fetch()

    def begin_window(self, name: str, t_ns: int) -> None:
        i = self.fetch()
        if i is not None:
            self._open[name] = (t_ns, i)

    def end_window(self, name: str, t_ns: int, start_ns: int | None = None) -> dict[str, Any]:
        """Counters between the window's two edge scrapes (`start_ns` changes nothing: no measured request
        ran before it), gauges from the scrapes inside the window."""
        j = self.fetch()
        opened = self._open.pop(name, None)
        if opened is None or j is None:
            return {}
        t0, i = opened
        with self._lock:
            between = [k for k, (t, _) in enumerate(self.scrapes) if t0 < t < t_ns and k not in (i, j)]
        before, after = self.snapshot(i), self.snapshot(j)
        if before is None or after is None:
            return {}
        during = [snap for k in between if (snap := self.snapshot(k)) is not None]
        return window_columns(before, after, during)

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=self.timeout_s + 1)
            self._thread = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def manifest(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "interval_s": self.interval_s,
            "column_prefix": PREFIX,
            "scrapes": len(self.scrapes),
            "failures": self.failures,
            "last_error": self.last_error,
            "families": self.families,
            "info": self.info,
        }

    def write(self, run_dir: Path, tag: str = "") -> str:
        snaps = [(self.scrapes[i][0], self.snapshot(i) or {}) for i in range(len(self.scrapes))]
        name = telemetry_file("engine-metrics", "jsonl.gz", tag)
        with replaced_whole(Path(run_dir) / name) as tmp, gzip.open(tmp, "wt") as f:
            for t, snap in snaps:
                f.write(json.dumps({"t_ns": t, "values": {k: v for k, (_, v) in snap.items()}}) + "\n")
        return name
