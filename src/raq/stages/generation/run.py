"""A generation from config to file: ``generate_async``, ``generate``, ``GenerationReport``.

Responses are committed in plan order, never in completion order, and requests are sent in
waves whose size depends only on the results committed so far, so the same responses always
give the same dataset and a re-run sends exactly the requests the first run sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from raq.config import LOCAL_BASE_URL, load_env_file
from raq.core.errors import DatasetError
from raq.core.progress import Progress, make_progress
from raq.dataset import load_items
from raq.endpoints.client import ChatClient
from raq.endpoints.endpoint import endpoint_for
from raq.endpoints.local import serving
from raq.stages.generation.asking import Asker
from raq.stages.generation.collecting import Collector
from raq.stages.generation.config import (
    GenerateConfig,
    check_independence,
    load_generate_config,
)
from raq.stages.generation.output import check_output, write_output
from raq.stages.generation.plan import PlanEntry, build_plan
from raq.stages.generation.sources import load_chunks
from raq.store import open_cache


@dataclass(frozen=True)
class GenerationReport:
    """What a generation did, in numbers; ``line()`` is the summary the CLI prints."""

    generated: int
    rejected: dict[str, int]
    deduplicated: int
    requests: int  # HTTP requests sent (retries and refused structured-output modes included)
    cache_hits: int
    target: int = 0
    near_duplicates: int = 0
    failed_requests: int = 0
    planned_requests: int = 0  # the budget: ceil(n / per_request) × 3
    asked: int = 0  # plan entries used
    stop_reason: str = ""  # "reached n", "plan exhausted", "generator disabled"
    structured_mode: str | None = None
    output: str | None = None

    def line(self) -> str:
        rejected = sum(self.rejected.values())
        reasons = ", ".join(
            f"{k} {v}" for k, v in sorted(self.rejected.items(), key=lambda kv: -kv[1])
        )
        parts = [
            f"generated {self.generated}/{self.target} items ({self.stop_reason})",
            f"{self.asked} of at most {self.planned_requests} planned requests "
            f"({self.requests} sent, {self.cache_hits} from cache, {self.failed_requests} failed)",
            f"rejected {rejected}" + (f" ({reasons})" if reasons else ""),
            f"{self.deduplicated} duplicates ({self.near_duplicates} near)",
        ]
        if self.structured_mode:
            parts.append(f"structured output: {self.structured_mode}")
        return " · ".join(parts)


def _wave_size(needed: int, accepted: int, asked: int, per_request: int, left: int) -> int:
    """Requests for the next wave, from the yield so far (a function of committed results only)."""
    rate = accepted / asked if asked else per_request
    return max(1, min(left, math.ceil(needed / max(rate, 0.5))))


async def generate_async(
    config: GenerateConfig | str | Path,
    out: str | Path,
    *,
    n: int | None = None,
    fmt: Literal["jsonl", "parquet"] = "jsonl",
    progress: Progress | bool | None = None,
    refresh: bool = False,
    use_cache: bool | None = None,
    cache_path: str | Path | None = None,
    retry_base_s: float | None = None,
) -> GenerationReport:
    """Generate until ``n`` items are accepted or the plan is spent; write ``out`` atomically."""
    if not isinstance(config, GenerateConfig):
        config = load_generate_config(config)
    out = Path(out)
    check_output(out, fmt)
    check_independence(config.generator, config.forbid_models)
    load_env_file(config.env_file)
    endpoint = endpoint_for(config.generator, "generator", config.env_file)
    target = n or config.n
    budget = math.ceil(target / config.per_request) * 3
    seeds = load_items(config.seeds.as_dataset(), config.seed) if config.seeds else []
    chunks = load_chunks(config.documents, config.seed) if config.mode == "documents" else None
    assert config.documents or config.mode != "documents"
    with_context = config.mode == "seeds" and any(s.context for s in seeds)
    plan = build_plan(config, budget, chunks=chunks, seeds=seeds)
    reporter = make_progress(progress)
    cache = open_cache(config.cache, use_cache, cache_path)
    if retry_base_s is not None:  # an override for tests and scripts
        config = config.model_copy(update={"retry_base_s": retry_base_s})
    client = ChatClient.from_settings(config, cache=cache, refresh=refresh)
    client.on_event = lambda kind, message: reporter.note(message)
    partial_path = Path(f"{out}.partial")
    partial_path.parent.mkdir(parents=True, exist_ok=True)
    reporter.start("generate", target)
    try:
        with partial_path.open("w", encoding="utf-8") as partial:
            collector = Collector(config, target, partial, seeds, with_context, reporter)
            async with contextlib.AsyncExitStack() as local, client:
                if endpoint.base_url == LOCAL_BASE_URL:  # the embedded server (raq[local])
                    server = await local.enter_async_context(serving(reporter.note))
                    endpoint = dataclasses.replace(endpoint, base_url=server.base_url)
                asker = Asker(client, endpoint, config, with_context)
                stop = await _run_plan(plan, asker, collector, client)
    finally:
        reporter.stop()
        if cache is not None:
            cache.close()
    counters = client.counters().get(endpoint.name)
    report = GenerationReport(
        generated=len(collector.records),
        rejected=dict(collector.rejected),
        deduplicated=sum(collector.duplicates.values()),
        requests=counters.requests if counters else 0,
        cache_hits=counters.cache_hits if counters else 0,
        target=target,
        near_duplicates=collector.duplicates["near"],
        failed_requests=collector.failed,
        planned_requests=budget,
        asked=collector.asked,
        stop_reason=stop,
        structured_mode=asker.mode,
        output=str(out),
    )
    if not collector.records:
        partial_path.unlink(missing_ok=True)
        last = f"; last error: {collector.last_error}" if collector.last_error else ""
        raise DatasetError(f"generation produced no usable items: {report.line()}{last}")
    write_output(out, collector.records, fmt)
    partial_path.unlink(missing_ok=True)
    return report


async def _run_plan(
    plan: list[PlanEntry], asker: Asker, collector: Collector, client: ChatClient
) -> str:
    """Send the plan in waves, committing in plan order; say why it stopped."""
    next_index = 0
    while not collector.full:
        if next_index >= len(plan):
            return "plan exhausted"
        if client.disabled():
            return "generator disabled"
        size = _wave_size(
            collector.target - len(collector.records),
            len(collector.records),
            collector.asked,
            asker.config.per_request,
            len(plan) - next_index,
        )
        wave = plan[next_index : next_index + size]
        next_index += size
        tasks = [asyncio.create_task(asker.ask(entry)) for entry in wave]
        try:
            for task in tasks:
                collector.commit(await task)
        finally:
            for task in tasks:
                task.cancel()  # only unfinished ones: an interrupt or an error
    return "reached n"


def generate(config: GenerateConfig | str | Path, out: str | Path, **kw: Any) -> GenerationReport:
    """Synchronous ``generate_async`` for scripts and the CLI."""
    return asyncio.run(generate_async(config, out, **kw))
