"""Engine subprocess lifecycle: free port, own process group, health wait, guaranteed teardown.

Every process started here is tracked; the runner stops its engine in a `finally` (also on Ctrl-C),
and `stop_all()` runs at interpreter exit as a backstop, so no engine outlives the harness (SIGTERM
to the group, then SIGKILL).
On Linux the child also gets PR_SET_PDEATHSIG, so a SIGKILLed harness takes the engine with it, and a
guard process (a few lines of Python, in a session of its own) holds a pipe from the harness: when the
pipe closes because the harness died, it kills the engine's whole process group, so the children the
engine started (vLLM's EngineCore and tensor-parallel workers, which outlive a killed API server and
keep the GPUs) go too.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import httpx

from harness.client.http1 import direct
from harness.engines.logtail import tail
from harness.helper_thread import HelperCall

_LIVE: set[ManagedProcess] = set()
T = TypeVar("T")


# a tokenizer call (prompt fitting, counting streamed text) answers in milliseconds from a healthy
# server; a hung one holds each call this long
TOKENIZE_TIMEOUT_S = 10.0


class EngineError(Exception):
    """The engine could not be started, became unhealthy, or died; message is for the user."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on `host` (a name, an IPv4 or an IPv6 address) a moment ago (the OS
    picks it); a host this machine cannot bind is an EngineError."""
    try:
        with _socket_at(host, 0) as s:
            return int(s.getsockname()[1])
    except OSError as e:
        raise EngineError(f"engine.host {host!r}: cannot listen there ({e})") from None


def port_free(host: str, port: int) -> None:
    """OSError (EADDRINUSE) where something listens on `host`:`port`; nothing where the port is free
    (connections of a server gone, in TIME_WAIT, do not count)."""
    if port:
        _socket_at(host.strip("[]"), port, reuse_addr=True).close()


def _socket_at(host: str, port: int, reuse_addr: bool = False) -> socket.socket:
    """A TCP socket bound to `host` (a name, an IPv4 or an IPv6 address) and `port` (0: one the OS picks);
    OSError where it cannot be."""
    family, kind, _, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    s = socket.socket(family, kind)
    try:
        if reuse_addr:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(addr)
    except BaseException:
        s.close()
        raise
    return s


def http_url(host: str, port: int, scheme: str = "http") -> str:
    """`http://host:port`, an IPv6 address in brackets (`http://[::1]:8080`)."""
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def answers_health(url: str, timeout_s: float = 10.0, tries: int = 2) -> bool:
    """Whether GET `url` answers 200 within `timeout_s`, in one of `tries` attempts (a busy server may
    miss one; a hung one misses all)."""
    for _ in range(tries):
        try:
            if httpx.get(url, timeout=timeout_s, **direct()).status_code == 200:
                return True
        except (httpx.HTTPError, OSError):  # OSError: out of file descriptors, say
            pass
    return False


def port_taken(message: str) -> bool:
    """Whether a start-up error (log tail) says the port was taken: retry on another one."""
    low = message.lower()
    return "address already in use" in low or "couldn't bind" in low or "failed to bind" in low


def held_elsewhere(pid: int, port: int) -> bool:
    """Whether TCP `port` is listened on by some process and by none of process `pid`'s tree: only on
    that evidence (a system that does not show sockets, or whose listener is not seen, says False)."""
    import psutil

    try:
        root = psutil.Process(pid)
        tree = {root.pid, *(c.pid for c in root.children(recursive=True))}
        listeners = [
            c.pid
            for c in psutil.net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
        ]
    except (psutil.Error, OSError, NotImplementedError):
        return False
    # another user's socket is listed without its process (None): not the engine's either
    return bool(listeners) and not tree.intersection(listeners)


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True) if sys.platform.startswith("linux") else None
    except OSError:
        return None


# loaded here, not in the child: between fork and exec a child of a threaded parent may only make plain
# calls (loading a library takes locks another thread may hold)
_LIBC = _libc()


def _pdeathsig() -> None:  # runs in the child between fork and exec
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def die_with_parent() -> None:
    """This process (a forked child) is killed when its parent dies, however the parent ends (Linux)."""
    _pdeathsig()


# the guard: waits for EOF on stdin (the harness closed the pipe, or died), then SIGTERMs the engine's
# process group, gives it `grace` seconds and SIGKILLs what is left
_GUARD = """
import os, signal, sys, time
pgid, grace, born = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
signal.signal(signal.SIGINT, signal.SIG_IGN)
try:
    sys.stdin.buffer.read()
except BaseException:
    pass
def started(pid):
    try:
        import psutil
        return f"{psutil.Process(pid).create_time():.2f}"
    except Exception:
        return None
def alive():
    try:
        os.killpg(pgid, 0)
        return True
    except OSError:
        return False
# a process with the leader's number but another start time: the engine's group emptied and the number
# went to a new group, which is not ours to kill
now = started(pgid)
if alive() and (now is None or born == "?" or now == born):
    try:
        os.killpg(pgid, signal.SIGTERM)
        os.killpg(pgid, signal.SIGCONT)  # a frozen engine takes its SIGTERM only once it runs again
    except OSError:
        pass
    end = time.monotonic() + grace
    while alive() and time.monotonic() < end:
        time.sleep(0.1)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
"""
GUARD_GRACE_S = 10.0


def _started(pid: int) -> str:
    """A process's start time (psutil's, to the hundredth of a second: Linux and macOS alike): with its
    number, who it is; `?` where it cannot be read."""
    import psutil

    try:
        return f"{psutil.Process(pid).create_time():.2f}"
    except (psutil.Error, OSError):
        return "?"


def group_alive(pgid: int) -> bool:
    """Whether any process of group `pgid` is left (zombies count until reaped)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ManagedProcess:
    """A subprocess in its own session/process group with stdout+stderr captured to `log_path` (stdout to
    `stdout_path` instead where one is given: a tool whose output is data)."""

    def __init__(
        self,
        argv: Sequence[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        stdout_path: Path | None = None,
    ) -> None:
        self.argv = list(argv)
        self.log_path = Path(log_path)
        self.stdout_path = stdout_path
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.guard: subprocess.Popen[bytes] | None = None
        self.log_from = 0

    def start(self) -> None:
        if why := abort_reason():  # a Ctrl-C while the engine's command was being made: not started
            raise EngineError(f"{Path(self.argv[0]).name} not started: {why}")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        if self.env:
            env.update(self.env)
        with contextlib.ExitStack() as files:
            log = files.enter_context(open(self.log_path, "ab"))
            self.log_from = log.tell()  # where this start's lines begin (a log is appended to)
            out = files.enter_context(open(self.stdout_path, "ab")) if self.stdout_path else None
            try:
                self.proc = subprocess.Popen(
                    self.argv,
                    stdout=out or log,
                    stderr=log if out else subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                    start_new_session=True,
                    preexec_fn=_pdeathsig,
                )
            except OSError as e:
                raise EngineError(f"cannot start {self.argv[0]}: {e}") from None
        _LIVE.add(self)
        # the guard needs a pipe's end of file and process groups: every POSIX system (macOS too, where no
        # parent-death signal kills the engine with a SIGKILLed harness)
        if os.name == "posix":
            with contextlib.suppress(OSError):
                self.guard = subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        _GUARD,
                        str(self.proc.pid),
                        str(GUARD_GRACE_S),
                        _started(self.proc.pid),
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def poll(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_healthy(
        self,
        url: str,
        timeout_s: float,
        ok: Callable[[httpx.Response], bool] | None = None,
        poll_s: float = 0.25,
        what: str = "engine",
    ) -> float:
        """Poll `url` until it answers 200 (and `ok(resp)`); returns seconds waited.

        Raises EngineError with the log tail if the process exits or the timeout passes.
        """
        t0 = time.monotonic()
        last = "no answer yet"
        with httpx.Client(timeout=5.0, **direct()) as client:
            while True:
                reason = abort_reason()
                if reason:
                    self.stop()
                    raise EngineError(f"{what} start-up stopped: {reason}")
                code = self.poll()
                if code is not None:
                    raise EngineError(
                        f"{what} exited with code {code} before becoming healthy; "
                        f"last log lines ({self.log_path}):\n{tail(self.log_path, since_byte=self.log_from)}"
                    )
                try:
                    r = client.get(url)
                    if r.status_code == 200 and (ok is None or ok(r)):
                        # another process took the port before the engine could (it then exits, and
                        # its start is tried again on another port): its answer is not the engine's
                        if not self._answers_elsewhere(url):
                            return time.monotonic() - t0
                        last = f"HTTP 200 from another process listening on {url}"
                    else:
                        last = f"HTTP {r.status_code}: {r.text[:200]}"
                except httpx.HTTPError as e:
                    last = type(e).__name__
                if time.monotonic() - t0 > timeout_s:
                    self.stop()
                    raise EngineError(
                        f"{what} not healthy at {url} after {timeout_s:g} s (last: {last}); "
                        f"last log lines ({self.log_path}):\n{tail(self.log_path, since_byte=self.log_from)}"
                    )
                time.sleep(poll_s)

    def _answers_elsewhere(self, url: str) -> bool:
        """The port of `url` is listened on, and not by this process or its children."""
        from urllib.parse import urlsplit

        port = urlsplit(url).port
        return self.proc is not None and port is not None and held_elsewhere(self.proc.pid, port)

    def wait_exit(self, timeout_s: float, what: str, poll_s: float = 0.2) -> int:
        """Wait for the process to end by itself; returns its exit code. Raises EngineError (after
        stopping it) when the timeout passes or the abort check names a reason (Ctrl-C)."""
        end = time.monotonic() + timeout_s
        while (code := self.poll()) is None:
            reason = abort_reason()
            if reason or time.monotonic() > end:
                self.stop()
                raise EngineError(f"{what} stopped: {reason or f'still running after {timeout_s:g} s'}")
            time.sleep(poll_s)
        self.stop()  # reaps it, releases the guard
        return code

    def stop(self, grace_s: float = 10.0) -> int | None:
        """SIGTERM the process group, wait up to `grace_s` (none after `hurry()`), then SIGKILL it.
        Idempotent."""
        p = self.proc
        if p is None:
            return None
        if _HURRY:
            grace_s = 0.0
        pgid = p.pid  # start_new_session: the child leads its own group
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGTERM)
                # a stopped process (frozen with SIGSTOP, Ctrl-Z) holds SIGTERM pending until it runs
                # again: it would sit out the whole grace
                os.killpg(pgid, signal.SIGCONT)
            try:
                p.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
        # the leader may be gone while children of its group live on
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=5)
        # a killed process frees its GPU memory and ports only once it is gone: wait for the whole group
        # (bounded: orphans of a container without an init that reaps them stay zombies)
        end = time.monotonic() + 5.0
        while group_alive(pgid) and time.monotonic() < end:
            time.sleep(0.05)
        self._release_guard()
        _LIVE.discard(self)
        return p.returncode

    def _release_guard(self) -> None:
        """The group is gone: closing the pipe lets the guard find nothing to kill and exit."""
        g, self.guard = self.guard, None
        if g is None:
            return
        with contextlib.suppress(OSError):
            if g.stdin is not None:
                g.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            g.wait(timeout=5)


_abort_check: Callable[[], str | None] | None = None


def set_abort_check(check: Callable[[], str | None] | None) -> None:
    """While set, a health wait polls `check` and stops the engine when it names a reason (Ctrl-C
    during a model load of many minutes)."""
    global _abort_check
    _abort_check = check


def abort_reason() -> str | None:
    """Why the run is being stopped (Ctrl-C, SIGTERM), while the runner has an abort check set."""
    return _abort_check() if _abort_check is not None else None


def abortable(call: Callable[[], T], what: str, poll_s: float = 0.2) -> T:
    """`call()` (a blocking request: a health check, a tokenizer call) on a helper thread, waited for while
    no stop is asked: a Ctrl-C does not wait out its timeout against an endpoint that accepts connections
    and never answers. Raises EngineError(`what` stopped: reason) on a stop; the call itself ends on its
    own timeout, in its daemon thread."""
    helper = HelperCall(call, "abortable")
    while helper.thread.is_alive():
        helper.thread.join(poll_s)
        if helper.thread.is_alive() and (why := abort_reason()):
            raise EngineError(f"{what} stopped: {why}")
    return helper.result()


# set by a second Ctrl-C: engines stopped from then on get no SIGTERM grace (see `hurry`)
_HURRY = False


def hurry(now: bool = True) -> None:
    """From now on (until `hurry(False)`), engines are SIGKILLed without their SIGTERM grace: a second
    Ctrl-C asked to stop at once, and the stops in the `finally` blocks it passes through come first."""
    global _HURRY
    _HURRY = now


def stop_all(grace_s: float = 5.0) -> None:
    """Stop every engine still running (`grace_s` 0: SIGKILL at once)."""
    for mp in list(_LIVE):
        mp.stop(grace_s=grace_s)


def _stop_all_at_exit() -> None:
    """The backstop at interpreter exit: a Ctrl-C meanwhile (a third one) would stop it halfway, with a
    traceback, and leave the rest to the guards; it is bounded (the grace, then SIGKILL), so waited for."""
    if not _LIVE:
        return
    with contextlib.suppress(ValueError):  # not the main thread: signals stay as they are
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop_all()


atexit.register(_stop_all_at_exit)
