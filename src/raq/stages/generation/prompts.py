"""The user message of one generation request, for documents, topics or seeds mode.

The prompt depends only on the config and the plan entry, so the same plan always sends the
same requests (and hits the same cache entries).
"""

from __future__ import annotations

import json

from raq.stages.generation.config import GenerateConfig
from raq.stages.generation.plan import PlanEntry
from raq.stages.generation.replies import reply_shape


def _rules(config: GenerateConfig, entry: PlanEntry) -> list[str]:
    rules = [
        'Questions must be self-contained (name what they ask about; never say "the passage" '
        'or "the text") and ask about different facts; an answer never repeats its question.',
        f"Prefer questions about {entry.angle}.",
    ]
    if config.instructions:
        rules.append(config.instructions.strip())
    return [f"- {rule}" for rule in rules]


def build_prompt(config: GenerateConfig, entry: PlanEntry, with_context: bool) -> str:
    """The user message for one request."""
    k = config.per_request
    if entry.chunk is not None:
        answer_rule = (
            "Each answer is a short span copied word for word from the passage (usually 1 to 5 "
            "words)."
            if config.extractive
            else "Each answer is short (a few words) and fully supported by the passage."
        )
        head = [
            f"Write {k} question-answer pairs for a reading-comprehension test on the "
            "passage below.",
            f"- {answer_rule}",
        ]
        tail = [f'<passage source="{entry.chunk.source}">', entry.chunk.text, "</passage>"]
    elif config.mode == "topics":
        about = entry.topic or config.description or ""
        head = [
            f"Write {k} closed-book quiz question-answer pairs about: {about}.",
            "- Each question has one short, unambiguous, checkable answer (usually 1 to 5 "
            "words) that experts agree on without any document.",
        ]
        if entry.topic and config.description:
            head.insert(1, f"The dataset as a whole: {config.description}")
        tail = []
    else:
        examples = [
            {"question": s.question, "answer": s.answers[0]}
            | ({"context": s.context} if s.context else {})
            for s in entry.seeds
        ]
        head = [
            "Below are example items from a question-answering dataset, as JSON. Write "
            f"{k} new items of the same kind (style, difficulty, language, answer format) about "
            "different facts. Do not copy or paraphrase the examples.",
        ]
        if with_context:
            head.append(
                '- Each new item has its own "context" passage, written like the examples\' '
                "contexts, that contains its answer word for word."
            )
        tail = ["Examples:", json.dumps(examples, ensure_ascii=False, indent=1)]
    return "\n".join([*head, *_rules(config, entry), reply_shape(with_context), "", *tail])
