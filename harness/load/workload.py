"""Prompts with a chosen number of tokens, each with a unique prefix (no prompt-cache hits)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from harness.client.openai_stream import RequestSpec
from harness.scenario import LengthDist, Workload

_WORDS = [
    "time",
    "year",
    "people",
    "way",
    "day",
    "man",
    "thing",
    "woman",
    "life",
    "child",
    "world",
    "school",
    "state",
    "family",
    "student",
    "group",
    "country",
    "problem",
    "hand",
    "part",
    "place",
    "case",
    "week",
    "company",
    "system",
    "program",
    "question",
    "work",
    "government",
    "number",
    "night",
    "point",
    "home",
    "water",
    "room",
    "mother",
    "area",
    "money",
    "story",
    "fact",
    "month",
    "lot",
    "right",
    "study",
    "book",
    "eye",
    "job",
    "word",
    "business",
    "issue",
    "side",
    "kind",
    "head",
    "house",
    "service",
    "friend",
    "father",
    "power",
    "hour",
    "game",
    "line",
    "end",
    "member",
    "law",
    "car",
    "city",
    "community",
    "name",
    "president",
    "team",
    "minute",
    "idea",
    "kid",
    "body",
    "information",
    "back",
    "parent",
    "face",
    "others",
    "level",
    "office",
    "door",
    "health",
    "person",
    "art",
    "war",
    "history",
    "party",
    "result",
    "change",
    "morning",
    "reason",
    "research",
    "girl",
    "guy",
]


def draw_length(spec: int | LengthDist, rng: np.random.Generator) -> int:
    """A token count from a fixed int or a distribution, clipped to [min, max] and >= 1."""
    if isinstance(spec, int):
        return spec
    if spec.dist == "fixed":
        n = float(spec.mean)
    elif spec.dist == "uniform":
        lo, hi = spec.min or 1, spec.max or 2 * spec.mean
        n = float(rng.integers(lo, hi + 1))
    else:
        n = rng.normal(spec.mean, spec.stddev if spec.stddev is not None else spec.mean / 4)
    lo = spec.min or 1
    hi = spec.max or 1 << 30
    return int(min(max(round(n), lo), hi))


@dataclass
class PromptFactory:
    """Builds prompt texts whose token count (by `count_tokens`, when given) is exactly the target.

    Without a tokenizer the length is approximate (one word is assumed to be about one token).
    """

    seed: int = 0
    count_tokens: Callable[[str], int | None] | None = None

    def text(self, request_id: int, n_words: int) -> str:
        rng = np.random.default_rng((self.seed, request_id))
        words = [_WORDS[i] for i in rng.integers(0, len(_WORDS), max(n_words, 1))]
        return f"{request_id}: " + " ".join(words)

    def prompt(self, request_id: int, n_tokens: int) -> tuple[str, int | None]:
        """(text, its measured token count or None): the longest word prefix with <= n_tokens tokens,
        then padded with one-token pieces up to exactly n_tokens where the tokenizer allows."""
        if self.count_tokens is None:
            return self.text(request_id, max(1, n_tokens - 3)), None
        count = self.count_tokens
        lo, hi = 1, max(2, 2 * n_tokens)
        best_text, best_n = self.text(request_id, 1), count(self.text(request_id, 1))
        if best_n is None:
            return self.text(request_id, max(1, n_tokens - 3)), None
        while lo <= hi:
            mid = (lo + hi) // 2
            t = self.text(request_id, mid)
            n = count(t)
            if n is None:
                return best_text, best_n
            if n <= n_tokens:
                best_text, best_n, lo = t, n, mid + 1
            else:
                hi = mid - 1
        for _ in range(16):
            if best_n >= n_tokens:
                break
            t = best_text + " a"
            n = count(t)
            if n is None or n > n_tokens:
                break
            best_text, best_n = t, n
        return best_text, best_n


def build_specs(
    workload: Workload, n: int, first_id: int, count_tokens: Callable[[str], int | None] | None, seed: int
) -> list[RequestSpec]:
    """`n` request specs (prompt text, max_tokens) for request ids first_id .. first_id+n-1."""
    rng = np.random.default_rng((seed, first_id))
    factory = PromptFactory(seed=seed, count_tokens=count_tokens)
    specs = []
    for i in range(first_id, first_id + n):
        n_in = draw_length(workload.input_tokens, rng)
        n_out = draw_length(workload.output_tokens, rng)
        text, measured = factory.prompt(i, n_in)
        specs.append(RequestSpec(prompt=text, max_tokens=n_out, input_tokens=measured if measured else n_in))
    return specs
