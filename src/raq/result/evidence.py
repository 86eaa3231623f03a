"""The evidence behind each significant pair: the questions where the two differ most, with the
question, the reference, both answers and every judgment of it, read from the run store.

A bounded number per pair, so a report stays small whatever the size of the run; the texts are
data and every rendering escapes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from raq.core.records import Answer, Judgment, QAItem
from raq.result.verdict import oriented
from raq.store import RunStore

QUESTIONS_PER_PAIR = 3


@dataclass(frozen=True)
class Example:
    """One question where ``better`` and ``worse`` were ranked far apart."""

    item: QAItem
    rank_difference: float  # mean rank of better − mean rank of worse (negative: better won)
    answers: dict[str, Answer]
    judgments: list[Judgment]


@dataclass(frozen=True)
class PairEvidence:
    better: str
    worse: str
    examples: list[Example]


def pair_evidence(
    store: RunStore, summary: dict[str, Any], per_pair: int = QUESTIONS_PER_PAIR
) -> list[PairEvidence]:
    """For each significant pair, in the verdict's order, its most telling questions."""
    judges = [n for n, j in summary.get("judges", {}).items() if j.get("in_verdict", True)]
    candidates = summary["candidates"]
    significant = [oriented(p) for p in summary.get("pairs", []) if p["significant"]]
    significant.sort(key=lambda t: (candidates[t[0]]["mean_rank"], candidates[t[1]]["mean_rank"]))
    out = []
    for better, worse, _ in significant:
        examples = []
        for question_id, difference in store.disagreements(better, worse, judges, per_pair):
            item = store.question(question_id)
            if item is None:
                continue
            answers = {name: a for name, (_, a) in store.stored_answers(question_id).items()}
            judgments = [j for j in store.question_judgments(question_id) if j.judge in judges]
            examples.append(Example(item, float(difference), answers, judgments))
        out.append(PairEvidence(better, worse, examples))
    return out
