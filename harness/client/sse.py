"""Server-sent events, split without decoding: `data:` payloads with the stamp of their arrival.

The hot path (one call per network read) only finds line ends and keeps byte slices; JSON is
decoded after the stream ends, so a busy client spends as little as possible between reads.
"""

from __future__ import annotations

import json


class SseEvents:
    """Collects `(stamp_ns, data)` per event; `data` joins an event's `data:` lines with `\\n`.

    An event is complete at its blank line; its stamp is that of the read that delivered it.
    An `error:` line (not an SSE field: llama.cpp servers before their server-http rewrite sent a
    stream's error that way, then `[DONE]`) becomes the event `{"error": ...}`, as vLLM sends one.
    Other fields (`event:`, `id:`, `retry:`) and comments are ignored.
    """

    __slots__ = ("_buf", "_data", "events")

    def __init__(self) -> None:
        self.events: list[tuple[int, bytes]] = []
        self._buf = b""
        self._data: bytes | None = None

    def feed(self, data: bytes, now_ns: int) -> None:
        buf = self._buf + data if self._buf else data
        start = 0
        find = buf.find
        while True:
            nl = find(b"\n", start)
            if nl < 0:
                break
            line = buf[start:nl]
            start = nl + 1
            if line[-1:] == b"\r":
                line = line[:-1]
            if not line:
                if self._data is not None:
                    self.events.append((now_ns, self._data))
                    self._data = None
            elif line[:5] == b"data:":
                v = line[6:] if line[5:6] == b" " else line[5:]
                self._data = v if self._data is None else self._data + b"\n" + v
            elif line[:6] == b"error:":
                v = line[6:].strip()
                if v[:1] not in (b"{", b"[", b'"'):  # plain text: as a JSON string
                    v = json.dumps(v.decode(errors="replace")).encode()
                self._data = b'{"error":' + v + b"}"
        self._buf = buf[start:] if start < len(buf) else b""

    def close(self, now_ns: int) -> None:
        """End of stream: an event still missing its blank line counts, a partial line does not."""
        if self._data is not None:
            self.events.append((now_ns, self._data))
            self._data = None
