"""Planted controls: how a run checks that each LLM judge can tell a right answer from a wrong one.

Among the anonymised answers a judge ranks, raq plants two that are not candidates: the
question's own reference answer (it should come first) and a plainly wrong answer, the
reference of another question (it should come last). They take counterbalanced positions like
every other answer, so a judge that ranks by position, or at random, puts the reference first
only as often as chance (1 in the number of answers shown) and above the wrong answer half the
time. A judge qualifies when the lower 95% bound of both rates beats chance; one that does not
is *unqualified*: its rankings are left out of the verdict. How often the wrong answer came
last is reported too, but does not decide: a candidate's own wrong answer may rightly share
the bottom with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from raq.core.metrics import best_f1
from raq.core.records import QAItem

REFERENCE = "#reference"
WRONG = "#wrong"
CONTROLS = (REFERENCE, WRONG)
# Used when no other question's reference is plainly different from this question's truth.
FALLBACK_WRONG = "There is no answer to this question."


def is_control(name: str) -> bool:
    return name in CONTROLS


def control_texts(item: QAItem, other_references: Iterable[Sequence[str]]) -> dict[str, str]:
    """The two planted answers for one question: its first reference, and the first reference
    of a following question that shares no word with any of this question's references."""
    wrong = next(
        (
            answers[0]
            for answers in other_references
            if answers and answers[0].strip() and best_f1(answers[0], item.answers) == 0.0
        ),
        FALLBACK_WRONG,
    )
    return {REFERENCE: item.answers[0], WRONG: wrong}
