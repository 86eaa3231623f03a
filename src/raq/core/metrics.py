"""Text and speed metrics: Unicode-aware word counts, SQuAD token F1, cost estimates.

Word rule (documented in the README): every CJK ideograph, kana or Hangul syllable counts as one
word; elsewhere a word is a run of letters, marks or digits, joined across ' ’ - (so "don't",
"state-of-the-art" and "3.5" count once each). Punctuation and symbols are not words.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter

_CJK = (
    "\u3040-\u30ff"  # hiragana, katakana
    "\u3400-\u4dbf"  # CJK extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\uac00-\ud7af"  # Hangul syllables
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\U00020000-\U0002ebef"  # CJK extensions B-F
)
_CJK_CHAR = re.compile(f"[{_CJK}]")
_WORD = re.compile(r"[^\W_]+(?:(?:['’\-]|(?<=\d)[.,](?=\d))[^\W_]+)*")

TOKENS_PER_WORD_ESTIMATE = 1.3


def count_words(text: str | None) -> int:
    """Words in an answer under the rule in the module docstring (never 0 for CJK text)."""
    if not text:
        return 0
    cjk = len(_CJK_CHAR.findall(text))
    rest = _CJK_CHAR.sub(" ", text)
    return cjk + len(_WORD.findall(rest))


def estimate_tokens(text: str | None) -> int:
    """Token estimate where a server reports no usage: words × 1.3 (an estimate, say so)."""
    return round(count_words(text) * TOKENS_PER_WORD_ESTIMATE)


# --- SQuAD-style answer normalisation, extended to non-ASCII punctuation and CJK ----------------

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


class _PunctuationToSpace(dict[int, int]):
    """A str.translate table that decides each character once: punctuation becomes a space."""

    def __missing__(self, codepoint: int) -> int:
        char = chr(codepoint)
        punctuation = char in string.punctuation or unicodedata.category(char).startswith("P")
        self[codepoint] = 32 if punctuation else codepoint
        return self[codepoint]


_PUNCTUATION_TO_SPACE = _PunctuationToSpace()


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation and English articles, fold whitespace (SQuAD's rule)."""
    text = unicodedata.normalize("NFKC", text).lower().translate(_PUNCTUATION_TO_SPACE)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def answer_tokens(text: str) -> list[str]:
    """Tokens for F1: whitespace tokens of the normalised text, each CJK character apart."""
    spaced = _CJK_CHAR.sub(lambda m: f" {m.group(0)} ", normalize_answer(text))
    return spaced.split()


def token_f1(prediction: str, truth: str) -> float:
    """SQuAD token-overlap F1 between one prediction and one ground truth."""
    pred, gold = answer_tokens(prediction), answer_tokens(truth)
    if not pred or not gold:
        return float(pred == gold)
    common = Counter(pred) & Counter(gold)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred), overlap / len(gold)
    return 2 * precision * recall / (precision + recall)


def best_f1(prediction: str, truths: tuple[str, ...] | list[str]) -> float:
    """The max F1 over every acceptable answer, as SQuAD scores it."""
    return max((token_f1(prediction, t) for t in truths), default=0.0)


def average_ranks(scores: dict[str, float]) -> dict[str, float]:
    """Rank by score, highest first (rank 1 = best), ties sharing their average rank."""
    ordered = sorted(scores.items(), key=lambda kv: -kv[1])
    ranks: dict[str, float] = {}
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1][1] == ordered[i][1]:
            j += 1
        shared = (i + 1 + j + 1) / 2
        for name, _ in ordered[i : j + 1]:
            ranks[name] = shared
        i = j + 1
    return ranks


def cost_usd(
    prompt_tokens: int | None,
    completion_tokens: int | None,
    input_per_million: float,
    output_per_million: float,
) -> float:
    """Cost of one call from per-million-token prices."""
    return (
        (prompt_tokens or 0) * input_per_million + (completion_tokens or 0) * output_per_million
    ) / 1e6
