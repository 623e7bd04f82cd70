"""Server-sent events: `data:` payloads with the stamp of the network read that completed them.

The hot path (one call per network read) finds line ends and slices bytes; each complete event goes to
the handler at once (the client decodes its JSON there: microseconds an event, spread over the stream,
rather than milliseconds in one burst at its end that would stamp other streams' reads late).
"""

from __future__ import annotations

import json
from collections.abc import Callable


class SseEvents:
    """Hands `(stamp_ns, data)` of each event to `on_event` (without one: collects them in `events`);
    `data` joins an event's `data:` lines with `\\n`.

    An event is complete at its blank line; its stamp is that of the read that delivered it.
    An `error:` line (not an SSE field: llama.cpp servers before their server-http rewrite sent a
    stream's error that way, then `[DONE]`) becomes the event `{"error": ...}`, as vLLM sends one.
    Other fields (`event:`, `id:`, `retry:`) and comments are ignored.
    """

    __slots__ = ("_buf", "_data", "_emit", "events")

    def __init__(self, on_event: Callable[[int, bytes], None] | None = None) -> None:
        self.events: list[tuple[int, bytes]] = []
        self._emit = on_event or (lambda now, data: self.events.append((now, data)))
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
                    data, self._data = self._data, None
                    self._emit(now_ns, data)
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
            data, self._data = self._data, None
            self._emit(now_ns, data)
