"""Asking the generator for one plan entry's items, with structured output and re-asks.

Every request goes through ``ChatClient`` (via the shared ``StructuredAsker``), so retries,
limits and the response cache are the evaluation's own. An ``Outcome`` says what came back:
items, a failed request, or replies that stayed unusable after every re-ask.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from raq.endpoints.client import ChatClient
from raq.endpoints.endpoint import Endpoint
from raq.endpoints.structured import StructuredAsker
from raq.stages.generation.config import GenerateConfig
from raq.stages.generation.plan import PlanEntry
from raq.stages.generation.prompts import build_prompt
from raq.stages.generation.replies import items_fields, parse_items, reply_shape

DEFAULT_TEMPERATURE = 0.7  # some variety between requests; params.temperature overrides it


@dataclass
class Outcome:
    entry: PlanEntry
    items: list[dict[str, Any]] = field(default_factory=list)
    mode: str | None = None
    error: str | None = None  # the request failed
    invalid: str | None = None  # every ask's reply was unusable


class Asker:
    """Asks the generator for one plan entry's items through the shared StructuredAsker."""

    def __init__(
        self, client: ChatClient, endpoint: Endpoint, config: GenerateConfig, with_context: bool
    ) -> None:
        self.client = client
        self.endpoint = endpoint
        self.config = config
        self.with_context = with_context
        forced = None if config.structured_output == "auto" else config.structured_output
        self.structured = StructuredAsker(forced=forced)

    @property
    def mode(self) -> str | None:
        return self.structured.mode

    async def ask(self, entry: PlanEntry) -> Outcome:
        messages = []
        if self.config.generator.system:
            messages.append({"role": "system", "content": self.config.generator.system})
        prompt = build_prompt(self.config, entry, self.with_context)
        messages.append({"role": "user", "content": prompt})
        asked = await self.structured.ask(
            self.client,
            self.endpoint,
            messages,
            params={"temperature": DEFAULT_TEMPERATURE, **self.config.generator.params},
            fields=lambda mode: items_fields(mode, self.with_context, self.config.per_request),
            parse=parse_items,
            reask=lambda reason: (
                f"That reply is not usable ({reason}). " + reply_shape(self.with_context)
            ),
            max_reasks=self.config.max_reasks,
            salt=f"raq-generate:{entry.index}",
        )
        if asked.value is not None:
            return Outcome(entry, asked.value, mode=asked.mode)
        if asked.invalid:
            return Outcome(entry, invalid=asked.error)
        return Outcome(entry, mode=asked.mode, error=asked.error)
