"""Replay a recorded SSE stream through the client's chunk parser, one chunk every 10 ns."""

from __future__ import annotations

import json
from pathlib import Path

from harness.client.openai_stream import apply_chunk
from harness.records import RequestRecord

PAYLOADS = Path(__file__).parent / "payloads"


def replay(name: str) -> RequestRecord:
    rec = RequestRecord(0, "p", 1, 1)
    t = 10
    for line in (PAYLOADS / name).read_text().splitlines():
        if line.startswith("data: ") and line[6:] != "[DONE]":
            apply_chunk(rec, json.loads(line[6:]), t)
            t += 10
    return rec
