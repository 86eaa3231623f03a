"""The request plan: which chunk, topic or seeds, and which angle, each request asks about.

The plan is a pure function of the seed, the sources and the request's index (entry i never
depends on how many entries are planned), so a re-run asks exactly the same requests, replays
the response cache and costs nothing: resuming is re-running.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from raq.core.records import QAItem
from raq.stages.generation.config import GenerateConfig
from raq.stages.generation.sources import Chunk

# Rotated through requests (seeded), so repeated chunks or topics get different prompts.
ANGLES = (
    "facts stated directly",
    "names, places and dates",
    "numbers and quantities",
    "causes and reasons",
    "definitions and terms",
    "processes and steps",
    "comparisons and relations",
    "purposes and consequences",
)


@dataclass(frozen=True)
class PlanEntry:
    """What one request asks about: a pure function of the seed, the sources and ``index``."""

    index: int
    angle: str
    chunk: Chunk | None = None
    topic: str | None = None
    seeds: tuple[QAItem, ...] = ()


def _rng(seed: int, *parts: object) -> random.Random:
    return random.Random(":".join(["raq-generate", str(seed), *map(str, parts)]))


def build_plan(
    config: GenerateConfig,
    count: int,
    chunks: list[Chunk] | None = None,
    seeds: list[QAItem] | None = None,
) -> list[PlanEntry]:
    """The first ``count`` requests; entry i never depends on count, so plans share prefixes."""
    topics: list[str | None] = list(config.topics or []) or [None]
    orders: dict[int, list[int]] = {}

    def pick(i: int, size: int) -> int:
        """Each pass over the chunks or topics is a fresh seeded shuffle."""
        cycle, position = divmod(i, size)
        if cycle not in orders:
            orders[cycle] = list(range(size))
            _rng(config.seed, "order", cycle).shuffle(orders[cycle])
        return orders[cycle][position]

    plan = []
    for i in range(count):
        angle = _rng(config.seed, "angle", i).choice(ANGLES)
        if config.mode == "documents":
            assert chunks
            plan.append(PlanEntry(i, angle, chunk=chunks[pick(i, len(chunks))]))
        elif config.mode == "topics":
            plan.append(PlanEntry(i, angle, topic=topics[pick(i, len(topics))]))
        else:
            assert seeds and config.seeds
            k = min(config.seeds.per_request, len(seeds))
            plan.append(
                PlanEntry(i, angle, seeds=tuple(_rng(config.seed, "seeds", i).sample(seeds, k)))
            )
    return plan
