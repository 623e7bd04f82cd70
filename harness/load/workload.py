"""Request specs: prompts of an exact token length, output lengths, datasets.

"Input tokens" means what the server reports as `usage.prompt_tokens`: everything the model
prefills, BOS and chat template included. A tokenizer counts only the text; the difference is
measured once per engine (`harness.load.tokens`) and subtracted, so a request planned with
N input tokens comes back with `prompt_tokens == N` (the metrics flag any that do not).

Every prompt starts with its own random words (no prompt-cache hits between requests) unless
`shared_prefix_tokens` asks for a common prefix, which then comes first: the prompts as the server
prefills them have that many tokens in common (in chat mode the template's end, which follows each text,
is not: `PromptCounter.tail`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.client.openai_stream import RequestSpec
from harness.fileio import input_problem, parse_problem
from harness.load.tokens import PromptCounter
from harness.scenario import LengthDist, Workload
from harness.scenario.models import MAX_TOKENS

Count = Callable[[str], int | None]

_WORDS_TEXT = (
    "time year people way day man thing woman life child world school state family student group "
    "country problem hand part place case week company system program question work government number "
    "night point home water room mother area money story fact month lot right study book eye job word "
    "business issue side kind head house service friend father power hour game line end member law "
    "car city community name president team minute idea kid body information back parent face others "
    "level office door health person art war history party result change morning reason research girl "
    "guy"
)
_WORDS = _WORDS_TEXT.split(" ")
_PREFIX_ID = 1 << 40  # rng stream of the shared prefix (request ids stay far below)
_FILLERS = (" a", " the", " I", ".", ",")


# how requests' lengths are drawn, dataset rows taken and open-loop arrivals seeded; a run resumes only
# with the scheme that made it.
# 2: by the request's place in its point (`build_specs` slot), uniform lengths around their mean
# 3: open-loop arrivals seeded by the point's rate (`arrivals.point_seed`), not its place in the run, so
#    engine variants at one rate get one schedule
SAMPLING_SCHEME = 3


def sampling_needed(w: Any, load: Any = None, variants: int = 1) -> int:
    """The oldest sampling scheme whose draws a run of this workload and load shares with today's (1: any):
    2 where lengths are drawn or dataset rows taken, 3 where several engine variants draw open-loop
    arrivals. A run made by an older scheme is not resumed: its remaining points would be drawn otherwise."""
    drawn = [n for n in (w.input_tokens, w.output_tokens) if not isinstance(n, int) and n.dist != "fixed"]
    arrivals = load is not None and load.mode == "open" and load.arrival != "constant" and variants > 1
    return 3 if arrivals else 2 if (w.dataset or drawn) else 1


class DatasetError(Exception):
    """A dataset file that cannot be used; the message is `file:line: field: problem`."""


def draw_length(spec: int | LengthDist, rng: np.random.Generator) -> int:
    """A token count from a fixed int or a distribution, clipped to [min, max] and >= 1."""
    if isinstance(spec, int):
        return spec
    if spec.dist == "fixed":
        n = float(spec.mean)
    elif spec.dist == "uniform":
        lo, hi = spec.lower(), spec.upper()
        assert hi is not None  # a uniform distribution always has its bound
        n = float(rng.integers(lo, hi + 1))
    else:
        n = rng.normal(spec.mean, spec.sd())
    lo = spec.min or 1
    hi = spec.max or 1 << 30
    return int(min(max(round(n), lo), hi))


def largest_fit(f: Callable[[int], int | None], target: int, guess: int) -> tuple[int, int] | None:
    """A k >= 0 with f(k) <= target and f(k+1) > target (or f(k) == target), for a non-decreasing f,
    starting at `guess`. Returns (k, f(k)), or None if f(0) > target or f cannot tell (None).

    Gallops away from the guess until the answer is bracketed, then bisects: a good guess costs
    a few calls (each may be an HTTP round trip to the engine's tokenizer).
    """
    calls: dict[int, int | None] = {}

    def g(k: int) -> int | None:
        if k not in calls:
            calls[k] = f(k)
        return calls[k]

    f0 = g(0)
    if f0 is None or f0 > target:
        return None
    lo, f_lo = 0, f0  # f(lo) <= target
    hi: int | None = None  # f(hi) > target
    k = max(1, guess)
    step = max(1, k // 16)
    n = g(k)
    if n is None:
        return None
    if n <= target:
        lo, f_lo = k, n
        while hi is None and f_lo < target:  # gallop up
            k = lo + step
            n = g(k)
            if n is None:
                return None
            if n <= target:
                lo, f_lo = k, n
            else:
                hi = k
            step *= 2
    else:
        hi = k
        while hi - step > lo:  # gallop down
            k = hi - step
            n = g(k)
            if n is None:
                return None
            if n <= target:
                lo, f_lo = k, n
                break
            hi = k
            step *= 2
    while hi is not None and hi - lo > 1 and f_lo < target:
        mid = (lo + hi) // 2
        n = g(mid)
        if n is None:
            return None
        if n <= target:
            lo, f_lo = mid, n
        else:
            hi = mid
    return lo, f_lo


@dataclass
class PromptFactory:
    """Texts whose count by `count_tokens` (the server's prompt length, see the module doc) is
    exactly the target. Without a counter the length is approximate (about a token per word)."""

    seed: int = 0
    count_tokens: Count | None = None
    shared_prefix_tokens: int = 0
    salt: int | None = None  # the run's prompt salt (None: prompts depend on the seed only)
    # tokens of the count after the text, which prompts do not share (a chat template's end): the prefix
    # is fitted to shared_prefix_tokens + these, so that prompts have shared_prefix_tokens in common
    prefix_tail: int = 0
    _words_per_token: float = 1.0
    _prefix: str | None = field(default=None, repr=False)

    def words(self, request_id: int, n: int) -> str:
        key = (self.seed, request_id) if self.salt is None else (self.seed, self.salt, request_id)
        rng = np.random.default_rng(key)
        head = f"{int(rng.integers(100000, 1000000))}"
        ws = [_WORDS[i] for i in rng.integers(0, len(_WORDS), max(n, 0))]
        return " ".join([head, *ws])

    def prefix(self) -> str:
        """The shared prefix (empty unless shared_prefix_tokens > 0), the same for every request."""
        if self._prefix is None:
            self._prefix = ""
            if self.shared_prefix_tokens:

                def make(k: int) -> str:
                    return "Context: " + self.words(_PREFIX_ID, k)

                n = self.shared_prefix_tokens
                # without a counter about a token per word: "Context:", the number and n - 2 words (and
                # the line end); with one, fitted with its line end, which is a token of the prefix too,
                # and with what the counter counts after a text that prompts do not share
                if self.count_tokens is None:
                    self._prefix = make(max(1, n - 2)) + "\n"
                else:
                    self._prefix = self._fit(lambda k: make(k) + "\n", n + self.prefix_tail)[0]
        return self._prefix

    def text(self, request_id: int, n_words: int) -> str:
        return self.prefix() + self.words(request_id, n_words)

    def prompt(self, request_id: int, n_tokens: int) -> tuple[str, int | None]:
        """(text, its count or None): exactly n_tokens where the tokenizer allows."""
        if self.count_tokens is None:  # the number and n - 1 words, the shared prefix within them
            return self.text(request_id, max(1, n_tokens - 1 - self.shared_prefix_tokens)), None
        return self._fit(lambda k: self.text(request_id, k), n_tokens, self.shared_prefix_tokens)

    def _fit(
        self, make: Callable[[int], str], n_tokens: int, fixed_tokens: int = 0
    ) -> tuple[str, int | None]:
        """`make(k)` with the largest k whose count is `n_tokens` (closed with one-token fillers);
        `fixed_tokens`: what of the count `make(0)` holds already (a shared prefix), for the guess made
        when the counter fails."""
        assert self.count_tokens is not None
        count = self.count_tokens
        fit = largest_fit(lambda k: count(make(k)), n_tokens, round(n_tokens * self._words_per_token))
        if fit is None:
            t = make(0)
            n0 = count(t)
            if n0 is not None and n0 > n_tokens:  # even the fixed start is longer than asked
                return t, n0
            # the counter could not tell (an endpoint's /tokenize failed on the way): about one token
            # per word, as without a counter, and said to be approximate
            return make(max(1, n_tokens - 1 - fixed_tokens)), None
        k, n = fit
        if k > 8:
            self._words_per_token = k / max(n, 1)
        text = make(k)
        for _ in range(64):  # one-token fillers close the last gap (a word can be several tokens)
            if n >= n_tokens:
                break
            for piece in _FILLERS:
                m = count(text + piece)
                if m is not None and m == n + 1:
                    text, n = text + piece, m
                    break
            else:
                break
        return text, n


@dataclass(frozen=True)
class DatasetRow:
    """One JSONL line: a prompt text or an input length, and the output length to ask for."""

    output_tokens: int
    prompt: str | None = None
    input_tokens: int | None = None


# the keys a dataset row is read for (others, such as an id, are passed over)
DATASET_KEYS = frozenset({"prompt", "input_tokens", "output_tokens"})


def load_dataset(path: str | Path) -> list[DatasetRow]:
    """Lines `{"prompt": str, "output_tokens": int}` or `{"input_tokens": int, "output_tokens": int}`;
    other keys are passed over."""
    p = Path(path)
    if problem := input_problem(p):  # a pipe or a device among them: reading one may never end
        raise DatasetError(f"{p}: {problem}")
    try:
        lines = p.read_text(encoding="utf-8-sig").splitlines()  # a BOM (Windows editors) is no JSON
    except UnicodeDecodeError as e:
        utf16 = e.object[:2] in (b"\xff\xfe", b"\xfe\xff")
        raise DatasetError(
            f"{p}: not UTF-8 text (byte {e.start}{': UTF-16, as PowerShell writes' if utf16 else ''}): "
            "save it as UTF-8"
        ) from None
    except (OSError, ValueError) as e:  # ValueError: a NUL in the name
        raise DatasetError(f"{p}: cannot read: {e}") from None
    rows: list[DatasetRow] = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError as e:
            raise DatasetError(f"{p}:{i}: invalid JSON: {e.msg}") from None
        except (ValueError, RecursionError) as e:  # no JSON errors: Python's own limits
            raise DatasetError(f"{p}:{i}: invalid JSON: {parse_problem(e)}") from None
        if not isinstance(d, dict):
            raise DatasetError(f"{p}:{i}: expected an object with prompt/input_tokens and output_tokens")
        out = d.get("output_tokens")
        if "output_tokens" not in d:
            other = sorted(set(d) - DATASET_KEYS)
            unread = f"; {', '.join(other)} {'is' if len(other) == 1 else 'are'} not read" if other else ""
            raise DatasetError(
                f"{p}:{i}: output_tokens: missing (every row asks for its output length{unread}; read: "
                f"{', '.join(sorted(DATASET_KEYS))})"
            )
        if not isinstance(out, int) or isinstance(out, bool) or not 1 <= out <= MAX_TOKENS:
            raise DatasetError(f"{p}:{i}: output_tokens: must be an integer from 1 to {MAX_TOKENS:,}")
        prompt, n_in = d.get("prompt"), d.get("input_tokens")
        if prompt is not None and not isinstance(prompt, str):
            raise DatasetError(f"{p}:{i}: prompt: must be a string")
        if isinstance(prompt, str) and not prompt.strip():  # a data bug: nothing to prefill but a BOS
            raise DatasetError(f"{p}:{i}: prompt: is empty (or only whitespace)")
        if n_in is not None and (
            not isinstance(n_in, int) or isinstance(n_in, bool) or not 1 <= n_in <= MAX_TOKENS
        ):
            raise DatasetError(f"{p}:{i}: input_tokens: must be an integer from 1 to {MAX_TOKENS:,}")
        if (prompt is None) == (n_in is None):
            raise DatasetError(f"{p}:{i}: needs exactly one of prompt, input_tokens")
        rows.append(DatasetRow(out, prompt, n_in))
    if not rows:
        raise DatasetError(f"{p}: no rows")
    return rows


def build_specs(
    workload: Workload,
    n: int,
    first_id: int,
    count_tokens: Count | None,
    seed: int,
    dataset: list[DatasetRow] | None = None,
    salt: int | None = None,
    slot: int | None = None,
    every_1k: Callable[[int], None] | None = None,
) -> list[RequestSpec]:
    """`n` request specs for request ids first_id .. first_id+n-1.

    `count_tokens` gives the server-side prompt length of a text (see the module docstring); `salt`
    (the run's prompt salt) changes the synthetic prompts' words, not their lengths.
    `slot`: where in its point the first request is (measured requests from 0, then warmup, then
    cooldown; default: its request id). Lengths are drawn, and dataset rows taken (row `slot` modulo
    the dataset's length), by slot, so every point measures the same sequence of lengths and rows; the
    prompts' words still differ by request id. A dataset prompt is sent as is, an input_tokens row gets
    a synthetic prompt of that length. `every_1k` is called with the number made so far before each
    thousand (a million take the better part of a minute: it can show progress, or stop them by raising).
    """
    start = first_id if slot is None else slot
    rng = np.random.default_rng((seed, start))
    tail = count_tokens.tail if isinstance(count_tokens, PromptCounter) else 0
    factory = PromptFactory(seed, count_tokens, workload.shared_prefix_tokens, salt, tail)
    specs = []
    for k, i in enumerate(range(first_id, first_id + n)):
        if every_1k is not None and k % 1000 == 0:
            every_1k(k)
        row = dataset[(start + k) % len(dataset)] if dataset else None
        if row is not None and row.prompt is not None:
            measured = count_tokens(row.prompt) if count_tokens else None
            specs.append(RequestSpec(row.prompt, row.output_tokens, measured))
            continue
        n_in = (
            row.input_tokens
            if row is not None and row.input_tokens
            else draw_length(workload.input_tokens, rng)
        )
        n_out = row.output_tokens if row is not None else draw_length(workload.output_tokens, rng)
        text, measured = factory.prompt(i, n_in)
        specs.append(RequestSpec(text, n_out, input_tokens=measured, asked_input_tokens=n_in))
    return specs
