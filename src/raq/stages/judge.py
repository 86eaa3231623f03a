"""Stage 2: show a judge the anonymised answers in a counterbalanced order and parse its ranking.

The judge sees IDs 1..k, where ID i is the answer in presented position i. The answers travel as
a JSON array, so an answer's own text (even "ID: 2 Answer: ..." or "</answers>") stays inside its
JSON string and cannot forge an ID or end the list. The ranking must be a permutation of the IDs;
anything else is re-asked a bounded number of times, then recorded as a failed judgment.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from raq.config import JudgeConfig, PromptsConfig
from raq.core.metrics import average_ranks, best_f1
from raq.core.records import Answer, Judgment, QAItem
from raq.endpoints.client import ChatClient, Endpoint
from raq.endpoints.structured import StructuredAsker, json_objects, mode_fields
from raq.stages.answers import fill
from raq.stages.controls import is_control


def presented_order(candidates: list[str], seed: int, slot: int) -> list[str]:
    """Candidate names by presented position for one (question, repeat) slot.

    Slots are numbered question_index × repeats + repeat. Each run of k consecutive slots (a
    cycle) is a Latin square: a seeded random base order rotated by a seeded permutation of
    the shifts, so every candidate takes every position exactly once per cycle and a judge's
    position bias cancels exactly rather than on average.
    """
    k = len(candidates)
    cycle, row = divmod(slot, k)
    rng = random.Random(f"raq-order:{seed}:{cycle}")
    base = list(candidates)
    rng.shuffle(base)
    shifts = list(range(k))
    rng.shuffle(shifts)
    shift = shifts[row]
    return base[shift:] + base[:shift]


def with_controls(order: list[str], controls: Sequence[str], seed: int, slot: int) -> list[str]:
    """``order`` with the planted controls inserted at counterbalanced positions.

    The candidates keep their Latin-square order among themselves (so a positional judge
    still cannot favour one); the controls' positions cycle through every ordered pair of the
    m = k + len(controls) positions in a seeded order, so each control takes each position
    equally often over every m·(m-1) slots (for two controls)."""
    m = len(order) + len(controls)
    places = list(itertools.permutations(range(m), len(controls)))
    cycle, row = divmod(slot, len(places))
    random.Random(f"raq-controls:{seed}:{cycle}").shuffle(places)
    shown: list[str | None] = [None] * m
    for name, place in zip(controls, places[row], strict=True):
        shown[place] = name
    rest = iter(order)
    return [name if name is not None else next(rest) for name in shown]


def truth_text(item: QAItem) -> str:
    first, *others = item.answers
    if not others:
        return first
    return f"{first} (also acceptable: {'; '.join(others)})"


RATIONALE_REQUEST = (
    '\nAlso say why in one short sentence: reply as {"ranking": [IDs], "rationale": "…"}.'
)


def judge_prompt(
    prompts: PromptsConfig, item: QAItem, texts: list[str], *, rationale: bool = False
) -> str:
    """The judge prompt; ``texts`` are the answers in presented order (ID = position)."""
    block = json.dumps(
        [{"id": i + 1, "answer": text} for i, text in enumerate(texts)],
        ensure_ascii=False,
        indent=1,
    )
    prompt = fill(prompts.judge, truth=truth_text(item), question=item.question, answers=block)
    return prompt + RATIONALE_REQUEST if rationale else prompt


def ranking_schema(k: int, *, bounded: bool, rationale: bool = False) -> dict[str, Any]:
    items: dict[str, Any] = {
        "type": "array",
        "items": {"type": "integer", "enum": list(range(1, k + 1))},
    }
    if bounded:  # grammar-constrained servers (llama.cpp) use these; OpenAI strict mode does not
        items |= {"minItems": k, "maxItems": k}
    properties: dict[str, Any] = {"ranking": items}
    if rationale:
        properties["rationale"] = {"type": "string"}
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def ranking_fields(mode: str, k: int, *, rationale: bool = False) -> dict[str, Any]:
    """The request fields that ask for a ranking of k IDs (and, optionally, a one-sentence
    rationale) in one structured-output mode."""
    return mode_fields(
        mode,
        ranking_schema(k, bounded=False, rationale=rationale),
        bounded_schema=ranking_schema(k, bounded=True, rationale=rationale),
        tool_name="return_ranking",
    )


def rationale_of(output: str | None) -> str | None:
    """The "rationale" string of the reply's last JSON object that holds a ranking (the same
    object ``parse_ranking`` reads the verdict from)."""
    rankings = [o for o in json_objects(output or "") if "ranking" in o]
    reason = rankings[-1].get("rationale") if rankings else None
    return reason.strip() or None if isinstance(reason, str) else None


_INT = re.compile(r"\d+")


def parse_ranking(output: str | None, k: int) -> tuple[list[int] | None, str]:
    """IDs best first, or None with the reason; accepts JSON or, last, a plain-text list.

    The reply's last ranking is its verdict: a judge may quote an answer that holds its own
    ``{"ranking": …}`` (or a list of IDs) before giving its own, and the answer must not decide.
    """
    if not output or not output.strip():
        return None, "empty reply"
    ids = set(range(1, k + 1))
    rankings = [o for o in json_objects(output) if {"ranking", "rank", "ids"} & o.keys()]
    data = rankings[-1] if rankings else None
    if data is not None:
        raw = data.get("ranking", data.get("rank", data.get("ids")))
        if isinstance(raw, str):
            raw = _INT.findall(raw)
        if isinstance(raw, list):
            try:
                ranking = [
                    int(_INT.search(str(x)).group()) if not isinstance(x, int) else x for x in raw
                ]  # type: ignore[union-attr]
            except (AttributeError, ValueError):
                return None, f"ranking holds non-IDs: {raw!r}"[:200]
            if len(ranking) == k and set(ranking) == ids:
                return ranking, ""
            return None, f"ranking {ranking} is not a permutation of the IDs 1..{k}"
    numbers = [int(n) for n in _INT.findall(output)]
    for start in range(len(numbers) - k, -1, -1):
        window = numbers[start : start + k]
        if set(window) == ids:
            return window, ""
    return None, f"no permutation of the IDs 1..{k} in the reply"


@dataclass
class JudgeSession:
    """Per-judge state for a run: its endpoint and which structured-output mode it accepts."""

    config: JudgeConfig
    endpoint: Endpoint | None
    asker: StructuredAsker = field(init=False)

    def __post_init__(self) -> None:
        forced = None if self.config.structured_output == "auto" else self.config.structured_output
        self.asker = StructuredAsker(forced=forced)


def judgment_fingerprint(
    judge: JudgeConfig,
    prompts: PromptsConfig,
    item: QAItem,
    order: list[str],
    texts: list[str],
    repeat: int,
) -> str:
    material = {
        "judge": judge.model_dump(mode="json", exclude={"name"}),
        "template": prompts.judge,
        "question": item.question,
        "truth": list(item.answers),
        "order": order,
        "texts": texts,
        "repeat": repeat,
    }
    return hashlib.sha256(
        json.dumps(material, sort_keys=True, ensure_ascii=False).encode()
    ).hexdigest()


def reference_judgment(
    item: QAItem, repeat: int, judge: str, order: list[str], answers: dict[str, Answer]
) -> Judgment:
    """Rank by SQuAD token F1 against the best-matching acceptable answer; ties share ranks."""
    scores = {name: best_f1(answers[name].answer or "", item.answers) for name in order}
    return Judgment(
        question_id=item.id,
        repeat=repeat,
        judge=judge,
        presented_order=tuple(order),
        raw_output=json.dumps({"f1": {n: round(s, 4) for n, s in scores.items()}}),
        ranks=average_ranks(scores),
        mode="reference",
    )


def shown_texts(
    order: list[str], answers: dict[str, Answer], controls: dict[str, str] | None = None
) -> list[str]:
    """The answer texts in presented order, planted controls included."""
    planted = controls or {}
    return [planted[n] if n in planted else answers[n].answer or "" for n in order]


def split_ranking(
    order: list[str], ranking: list[int]
) -> tuple[dict[str, float], dict[str, float]]:
    """A ranking of presented IDs (best first) as the candidates' ranks among themselves and
    the planted controls' ranks among everything ranked."""
    candidates: dict[str, float] = {}
    controls: dict[str, float] = {}
    for place, rid in enumerate(ranking, start=1):
        name = order[rid - 1]
        if is_control(name):
            controls[name] = float(place)
        else:
            candidates[name] = float(len(candidates) + 1)
    return candidates, controls


async def llm_judgment(
    client: ChatClient,
    session: JudgeSession,
    prompts: PromptsConfig,
    item: QAItem,
    repeat: int,
    order: list[str],
    answers: dict[str, Answer],
    controls: dict[str, str] | None = None,
) -> Judgment:
    """Ask an LLM judge for a permutation of the IDs; re-ask bad rankings, then record failure.

    ``order`` may hold planted controls (``controls`` gives their texts); the candidates' ranks
    are the judge's ranking with the controls taken out."""
    assert session.endpoint is not None
    texts = shown_texts(order, answers, controls)
    k = len(order)
    messages: list[dict[str, Any]] = []
    if session.config.system:
        messages.append({"role": "system", "content": session.config.system})
    wants_reason = session.config.rationale
    messages.append(
        {"role": "user", "content": judge_prompt(prompts, item, texts, rationale=wants_reason)}
    )
    asked = await session.asker.ask(
        client,
        session.endpoint,
        messages,
        params={"temperature": 0.0, **session.config.params},
        fields=lambda mode: ranking_fields(mode, k, rationale=wants_reason),
        parse=lambda raw: parse_ranking(raw, k),
        reask=lambda reason: (
            f"That is not a valid ranking ({reason}). Reply in JSON as "
            f'{{"ranking": [IDs]}} with each of the IDs 1 to {k} exactly once, most correct first.'
        ),
        max_reasks=session.config.max_reasks,
        salt=f"repeat={repeat}",
    )
    ranking = asked.value
    ranks, control_ranks = split_ranking(order, ranking) if ranking is not None else ({}, {})
    usage = asked.usage
    return Judgment(
        question_id=item.id,
        repeat=repeat,
        judge=session.config.name,
        presented_order=tuple(order),
        raw_output=asked.raw,
        ranks=ranks,
        controls=control_ranks,
        rationale=rationale_of(asked.raw) if wants_reason and ranking is not None else None,
        mode=asked.mode,
        attempts=asked.attempts,
        error=asked.error,
        cached=asked.cached,
        prompt_tokens=usage.prompt_tokens if usage else None,
        completion_tokens=usage.completion_tokens if usage else None,
        thinking_words=usage.thinking_words if usage else None,
        thinking_tokens=usage.thinking_tokens if usage else None,
        tokens_estimated=usage.estimated if usage else False,
    )
