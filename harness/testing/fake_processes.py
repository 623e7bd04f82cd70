"""`harness serve-fake`: the synthetic server served from one or several processes sharing a port,
over TLS where asked."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

from harness.client.aio import run_loop
from harness.testing.fake_script import FakeScript
from harness.testing.fake_server import FakeServer


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    """A server context from a PEM certificate (chain) and its key; ssl.SSLError or OSError for files
    that are not those."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


def serve_processes(
    script: FakeScript,
    host: str,
    port: int,
    workers: int = 1,
    on_listening: Callable[[], None] | None = None,
    tls: tuple[str, str] | None = None,
) -> None:
    """Serve until interrupted, from `workers` processes sharing the port (SO_REUSEPORT), on uvloop
    where it is installed. Each process has its own `/stats`. `on_listening`: called in this process
    once its port is bound (OSError before that: the port is taken, the address is not here). `tls`:
    (certificate, key) PEM files to serve https with."""
    import multiprocessing as mp
    import signal

    from harness.engines.process import die_with_parent, port_free

    server_tls = tls_context(*tls) if tls else None

    def one(ready: Callable[[], None] | None = None) -> None:
        srv = FakeServer(script, host=host, port=port, reuse_port=workers > 1, tls=server_tls)
        try:
            run_loop(srv.serve(ready))
        except KeyboardInterrupt:
            pass

    def worker() -> None:
        die_with_parent()  # a parent SIGKILLed leaves no worker serving its port
        one()

    if workers <= 1:
        one(on_listening)
        return
    # the workers share the port (SO_REUSEPORT), and so would any process that also asks for it: a
    # worker another server left behind would answer some of this one's requests. A plain bind fails
    # where anything listens.
    port_free(host, port)

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # SIGTERM, SIGHUP: stop the workers as Ctrl-C does, not skip it

    before = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=worker, daemon=True) for _ in range(workers - 1)]
    try:
        for pr in procs:
            pr.start()
        one(on_listening)
    finally:
        for pr in procs:
            if pr.pid is not None:
                pr.terminate()
                pr.join(5)
        for sig, handler in before.items():
            signal.signal(sig, handler)
