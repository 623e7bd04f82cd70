"""A client worker's event loop while it hands long-stream records to a busy parent.

With `load.workers` > 1, each worker sends every finished request's record to the parent over a pipe.
A record of a 32k-token stream pickles to about 256 kB, more than a pipe holds, so a write from the
event loop holds the loop until the parent has read it all; meanwhile no chunk of any other stream is
stamped. The workers write from a thread of their own (`harness.load.workers._Outbox`). This script
measures the loop's lateness both ways: a timer due every millisecond on the loop, while a record is
handed over every `--every-ms`, to a parent that reads a message then sleeps `--parent-busy-ms`.
It prints the timer's lateness p50 / p99 / max for each way. Usage:

    python benchmarks/worker_record_send.py [--tokens 32000] [--records 40]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import statistics
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.load.workers import _Outbox  # noqa: E402
from harness.records import RequestRecord  # noqa: E402

Send = Callable[[tuple[Any, ...]], None]  # a pipe's send, or the outbox's put


def parent(conn: Connection, busy_s: float) -> None:
    conn.send("ready")  # started and reading: the sends below are not waiting for a process start
    while conn.recv() != ("end",):
        time.sleep(busy_s)  # the parent's loop doing other work between reads


async def lateness_ms(send: Send, rec: RequestRecord, records: int, every_s: float) -> list[float]:
    late: list[float] = []
    stop = False

    async def ticker() -> None:
        while not stop:
            due = time.perf_counter() + 0.001
            await asyncio.sleep(0.001)
            late.append((time.perf_counter() - due) * 1e3)

    tick = asyncio.create_task(ticker())
    for _ in range(records):
        await asyncio.sleep(every_s)
        send(("rec", rec.to_json()))
    stop = True
    await tick
    return late


def one_way(way: str, tokens: int, records: int, every_s: float, busy_s: float) -> list[float]:
    ctx = mp.get_context("spawn")
    a, b = ctx.Pipe()
    p = ctx.Process(target=parent, args=(b, busy_s))
    p.start()
    assert a.recv() == "ready"
    rec = RequestRecord(1, "p", 0)
    rec.chunk_ns = list(range(10**15, 10**15 + tokens * 10**6, 10**6))
    outbox = _Outbox(a) if way == "thread" else None
    send = outbox.put if outbox is not None else a.send
    late = asyncio.run(lateness_ms(send, rec, records, every_s))
    send(("end",))
    if outbox is not None:
        outbox.close()
    p.join()
    return late


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, default=32_000)
    ap.add_argument("--records", type=int, default=40)
    ap.add_argument("--every-ms", type=float, default=20.0)
    ap.add_argument("--parent-busy-ms", type=float, default=2.0)
    a = ap.parse_args()
    print(f"{a.records} records of {a.tokens} tokens, one every {a.every_ms} ms;", end=" ")
    print(f"parent busy {a.parent_busy_ms} ms")
    print(f"{'write from':<12} {'late p50 ms':>12} {'p99 ms':>8} {'max ms':>8}")
    for way in ("loop", "thread"):
        late = sorted(one_way(way, a.tokens, a.records, a.every_ms / 1e3, a.parent_busy_ms / 1e3))
        p99 = late[min(len(late) - 1, int(0.99 * len(late)))]
        print(f"{way:<12} {statistics.median(late):>12.3f} {p99:>8.3f} {late[-1]:>8.3f}")


if __name__ == "__main__":
    main()
