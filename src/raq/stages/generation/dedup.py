"""Dropping questions already seen, exactly or nearly, among earlier items and the seeds.

Kept apart from the item checks because it is stateful (every accepted question is remembered)
and because its near-duplicate search is exact, not sampled, which the class docstring explains.
"""

from __future__ import annotations

import math
import zlib
from collections import defaultdict

from raq.core.metrics import answer_tokens, normalize_answer

NEAR_DUPLICATE_JACCARD = 0.8


class Deduplicator:
    """Finds questions already seen: exact, or near-duplicate by token-set Jaccard (not MinHash).

    Exact: equal ``normalize_answer`` text (case, punctuation, articles and spacing ignored).
    Near: Jaccard similarity ≥ ``threshold`` (0.8) of the sets of ``answer_tokens`` (the same
    normalisation; each CJK character one token). Comparisons are exact, not sampled: an inverted
    index over each set's prefix under a fixed token order (prefix filtering) proposes the only
    sets that can reach the threshold, and each proposal is checked exactly.
    """

    def __init__(self, threshold: float = NEAR_DUPLICATE_JACCARD) -> None:
        self.threshold = threshold
        self._exact: dict[str, str] = {}
        self._sets: list[tuple[frozenset[str], str]] = []
        self._index: defaultdict[str, list[int]] = defaultdict(list)

    def _prefix(self, tokens: frozenset[str]) -> list[str]:
        ordered = sorted(tokens, key=lambda t: (zlib.crc32(t.encode()), t))
        return ordered[: len(ordered) - math.ceil(self.threshold * len(ordered)) + 1]

    def find(self, question: str) -> tuple[str, str] | None:
        """("exact" | "near", label of the earlier question), or None for a new question."""
        key = normalize_answer(question)
        if key in self._exact:
            return "exact", self._exact[key]
        tokens = frozenset(answer_tokens(question))
        candidates = {j for token in self._prefix(tokens) for j in self._index.get(token, ())}
        for j in sorted(candidates):
            other, label = self._sets[j]
            common = len(tokens & other)
            if common / (len(tokens) + len(other) - common) >= self.threshold:
                return "near", label
        return None

    def add(self, question: str, label: str) -> None:
        self._exact.setdefault(normalize_answer(question), label)
        tokens = frozenset(answer_tokens(question))
        if tokens:
            for token in self._prefix(tokens):
                self._index[token].append(len(self._sets))
            self._sets.append((tokens, label))
