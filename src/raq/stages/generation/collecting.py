"""Turning outcomes into dataset records, in plan order: check, deduplicate, record, append.

Each accepted record is appended to the ``.partial`` file as it is accepted, so an interrupted
generation leaves what it had; the collector's counts become the ``GenerationReport``.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import IO, Any

from raq.core.progress import Progress
from raq.core.records import QAItem
from raq.stages.generation.asking import Outcome
from raq.stages.generation.checks import check_item
from raq.stages.generation.config import GenerateConfig
from raq.stages.generation.dedup import Deduplicator


class Collector:
    """Validates, deduplicates and records results in plan order; appends each to .partial."""

    def __init__(
        self,
        config: GenerateConfig,
        target: int,
        partial: IO[str],
        seeds: list[QAItem],
        with_context: bool,
        progress: Progress,
    ) -> None:
        self.config = config
        self.target = target
        self.partial = partial
        self.with_context = with_context
        self.progress = progress
        self.records: list[dict[str, Any]] = []
        self.rejected: Counter[str] = Counter()
        self.duplicates: Counter[str] = Counter()
        self.asked = self.failed = 0
        self.last_error = ""
        self.dedup = Deduplicator()
        for item in seeds:
            self.dedup.add(item.question, f"seed {item.id}")

    @property
    def full(self) -> bool:
        return len(self.records) >= self.target

    def commit(self, outcome: Outcome) -> None:
        self.asked += 1
        if outcome.error is not None:
            self.failed += 1
            self.last_error = outcome.error
            return
        if outcome.invalid is not None:
            self.rejected["unusable_response"] += 1
            return
        for raw in outcome.items:
            if self.full:
                return  # items past n are not needed; their response stays cached
            self._commit_item(raw, outcome)

    def _commit_item(self, raw: dict[str, Any], outcome: Outcome) -> None:
        checked = check_item(
            raw, outcome.entry, extractive=self.config.extractive, with_context=self.with_context
        )
        if isinstance(checked, str):
            self.rejected[checked] += 1
            return
        question, answer, context = checked
        duplicate = self.dedup.find(question)
        if duplicate is not None:
            self.duplicates[duplicate[0]] += 1
            return
        record = self._record(question, answer, context, outcome)
        self.dedup.add(question, record["id"])
        self.records.append(record)
        self.partial.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.partial.flush()
        self.progress.advance("generate")

    def _record(
        self, question: str, answer: str, context: str | None, outcome: Outcome
    ) -> dict[str, Any]:
        g, entry = self.config.generator, outcome.entry
        chunk = {"source": entry.chunk.source, "index": entry.chunk.index} if entry.chunk else None
        return {
            "id": f"{self.config.name}-{len(self.records):05d}",
            "question": question,
            "context": context,
            "answers": {"text": [answer]},  # SQuAD-style: raq's default field map reads it
            "provenance": {
                "generator": {"name": g.name, "model": g.model, "base_url": g.base_url},
                "mode": self.config.mode,
                "seeds": [s.id for s in entry.seeds],
                "chunk": chunk,
                "topic": entry.topic,
                "request": entry.index,
                "structured_output": outcome.mode,
            },
        }
