"""An engine that stopped answering, told apart from a slow one: during a point (`LostWatch`, after
requests fail in a row) and once it is over (`endpoint_lost`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from harness.engines.base import Engine
from harness.records import RequestRecord

# request failures that an engine no longer answering would give
_LOST_KINDS = ("connect", "disconnected", "timeout")


def lost_message(engine: Engine, records: list[RequestRecord]) -> str:
    """What a point whose engine stopped answering its health check says, with its failures."""
    measured = [r for r in records if not r.warmup]
    failed = [r for r in measured if r.error_kind in _LOST_KINDS]
    kinds: dict[str, int] = {}
    for r in failed:
        kinds[str(r.error_kind)] = kinds.get(str(r.error_kind), 0) + 1
    said = ",".join(f"{k}:{n}" for k, n in sorted(kinds.items())) or "none"
    who = "the endpoint"
    if getattr(engine, "proc", None) is not None:
        who = "the engine (its process still runs: hung?)"
    return (
        f"{who} stopped answering its health check ({len(failed)} of {len(measured)} measured requests "
        f"failed: {said})"
    )


def endpoint_lost(engine: Engine, records: list[RequestRecord]) -> str | None:
    """Why a point whose measured requests failed to connect, were cut or timed out lost its engine, when
    the engine's health check no longer answers (asked once the point is over, nothing in flight): an
    external endpoint has no process whose death the run would see, and a launched engine's process can
    be alive and hung (frozen, deadlocked). `healthy()` None: the engine cannot tell (a health route that
    waits for the model), never taken for lost."""
    healthy = getattr(engine, "healthy", None)
    failed = [r for r in records if not r.warmup and r.error_kind in _LOST_KINDS]
    if healthy is None or not failed or healthy() is not False:
        return None
    return lost_message(engine, records)


class LostWatch:
    """During a point: once `STREAK` requests in a row failed as a lost engine's would (no answer, cut,
    timed out), the engine's health check is asked, off the event loop; `reason` is set when it does not
    answer *and* nothing was heard from the engine meanwhile (no stream received an event, no request
    ended well), and the point's abort check returns it. A frozen engine's requests would otherwise time
    out one after another, each after `request_timeout_s`; a busy one whose health route waits behind
    generation (llama-cpp-python's /v1/models, an overloaded server's HTTP threads) is still streaming.

    `heard_ns()`: perf_counter_ns of the last event a stream of this process received (0: none); with
    several client processes, the records they send back as requests end say what was heard."""

    STREAK = 2
    REASON = "the engine stopped answering its health check"

    def __init__(self, engine: Engine, heard_ns: Callable[[], int] = lambda: 0) -> None:
        self.healthy: Callable[[], bool | None] | None = getattr(engine, "healthy", None)
        self.heard_ns = heard_ns
        self.streak = 0
        self.reason: str | None = None
        self.last_heard_ns = 0
        self._probing = False

    def saw(self, rec: RequestRecord) -> None:
        # what the engine last sent: a finished request's end, or the last chunk of any request (with
        # client processes the records are all the parent hears of the streams, as each one ends)
        if rec.ok:
            self.last_heard_ns = max(self.last_heard_ns, rec.done_ns or 0)
        if rec.chunk_ns:
            self.last_heard_ns = max(self.last_heard_ns, rec.chunk_ns[-1])
        if self.healthy is None or self.reason is not None:
            return
        if rec.error_kind in _LOST_KINDS:
            self.streak += 1
        elif rec.ok:
            self.streak = 0
        if self.streak >= self.STREAK and not self._probing:
            self.streak, self._probing = 0, True
            threading.Thread(target=self._probe, name="health-probe", daemon=True).start()

    def _probe(self) -> None:
        try:
            t0 = time.perf_counter_ns()
            answered = self.healthy() if self.healthy is not None else None
            heard = max(self.heard_ns(), self.last_heard_ns)
            if answered is False and heard < t0:
                self.reason = self.REASON
        finally:
            self._probing = False
