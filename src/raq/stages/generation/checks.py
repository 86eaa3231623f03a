"""Whether one generated item is usable, else the reason it is dropped (counted in the report).

Answers are verified, not trusted: an extractive answer must occur in its chunk (or its own
context in seeds mode), and an answer may not copy its question.
"""

from __future__ import annotations

from typing import Any

from raq.core.metrics import answer_tokens, normalize_answer
from raq.stages.generation.plan import PlanEntry


def _text(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return str(value)
    return value.strip() if isinstance(value, str) else None


def occurs_in(answer: str, passage: str) -> bool:
    """Whether the answer's normalised tokens occur as a contiguous run in the passage's."""
    needle = " ".join(answer_tokens(answer))
    return bool(needle) and f" {needle} " in f" {' '.join(answer_tokens(passage))} "


def check_item(
    raw: dict[str, Any], entry: PlanEntry, *, extractive: bool, with_context: bool
) -> tuple[str, str, str | None] | str:
    """(question, answer, context) for a valid item, else the reason it is dropped."""
    question, answer = _text(raw.get("question")), _text(raw.get("answer"))
    if question is None or answer is None:
        return "malformed_item"
    if not normalize_answer(question):
        return "empty_question"
    if not normalize_answer(answer):
        return "empty_answer"
    if occurs_in(question, answer):
        return "answer_copies_question"
    if entry.chunk is not None:
        if extractive and not occurs_in(answer, entry.chunk.text):
            return "answer_not_in_chunk"
        return question, answer, entry.chunk.text
    if not with_context:
        return question, answer, None
    context = _text(raw.get("context"))
    if not context:
        return "missing_context"
    if extractive and not occurs_in(answer, context):
        return "answer_not_in_context"
    return question, answer, context
