"""Structured output from any OpenAI-compatible endpoint: one mode discovery, fallback, re-asks.

Servers differ in what they accept: OpenAI takes ``response_format: json_schema``; NVIDIA NIM
and vLLM constrain to a schema with ``guided_json`` (top level in current NIM releases, inside
``nvext`` in older ones; NIM warns that ``json_object`` alone lets the model return any JSON);
llama.cpp refuses json_schema but constrains ``json_object`` with a ``schema``; others only do
tool calling; some only text. A server that does not know ``guided_json`` may ignore it rather
than refuse it, so those modes are accepted only when the reply is JSON of the schema.
A ``StructuredAsker`` per endpoint tries these in that order once (concurrent asks
wait for the answer rather than each sending a refused request), remembers what worked, and
re-asks a bounded number of times when a reply does not parse. The judge and the dataset
generator both ask through it.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from raq.core.metrics import count_words, estimate_tokens
from raq.core.records import Completion
from raq.endpoints.client import ChatClient, Endpoint, RequestError, ThinkingUnfinished, cache_key

MODES = ("json_schema", "guided_json", "nvext_guided_json", "json_object", "tools", "text")
# Modes a server may ignore without a word: discovery accepts them only by their reply.
IGNORABLE_MODES = frozenset({"guided_json", "nvext_guided_json"})
# Statuses with which servers refuse a request shape they do not support.
MODE_REFUSED_STATUS = {400, 404, 415, 422, 500, 501}


def mode_fields(
    mode: str,
    schema: dict[str, Any],
    *,
    bounded_schema: dict[str, Any] | None = None,
    tool_name: str = "return_result",
) -> dict[str, Any]:
    """The request fields that ask for ``schema`` in one mode.

    ``bounded_schema`` (with minItems/maxItems) goes to grammar-constrained servers in
    json_object mode; OpenAI's strict json_schema mode gets the plain one.
    """
    if mode == "json_schema":
        return {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "result", "strict": True, "schema": schema},
            }
        }
    if mode == "guided_json":
        return {"guided_json": bounded_schema or schema}
    if mode == "nvext_guided_json":
        return {"nvext": {"guided_json": bounded_schema or schema}}
    if mode == "json_object":
        return {"response_format": {"type": "json_object", "schema": bounded_schema or schema}}
    if mode == "tools":
        return {
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": tool_name,
                        "description": "Return the result in this exact shape.",
                        "parameters": schema,
                    },
                }
            ],
            "tool_choice": {"type": "function", "function": {"name": tool_name}},
        }
    return {}


def honoured(mode: str, body: dict[str, Any], text: str) -> bool:
    """Whether a reply shows the server applied an ignorable mode: the whole reply is a JSON
    object with the schema's required keys. Other modes are refused when unsupported."""
    if mode not in IGNORABLE_MODES:
        return True
    schema = body.get("guided_json") or (body.get("nvext") or {}).get("guided_json") or {}
    try:
        value = json.loads(text)
    except ValueError:
        return False
    return isinstance(value, dict) and all(key in value for key in schema.get("required", ()))


def first_json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object embedded anywhere in a reply (models wrap JSON in prose)."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def json_objects(text: str) -> Iterator[dict[str, Any]]:
    """Every top-level JSON object embedded in a reply, in order (an object inside another is
    part of it). A reply may quote JSON from what it was shown before giving its own."""
    decoder = json.JSONDecoder()
    position = 0
    while (start := text.find("{", position)) >= 0:
        try:
            value, end = decoder.raw_decode(text, start)
        except ValueError:
            position = start + 1
            continue
        if isinstance(value, dict):
            yield value
        position = end


@dataclass(frozen=True)
class Asked:
    """The outcome of one structured ask (with its re-asks)."""

    value: Any | None
    raw: str | None
    mode: str | None
    attempts: int
    cached: bool
    error: str | None  # the request failed, or no reply parsed
    invalid: bool = False  # True when replies came but none parsed
    usage: AskUsage | None = None  # the tokens of every reply, re-asks included

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class AskUsage:
    """Tokens of an ask's replies, thinking included (a thinking model pays for it); what a
    server did not report is estimated (words × 1.3) and ``estimated`` says so."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    thinking_words: int = 0
    thinking_tokens: int = 0
    estimated: bool = False

    def add(self, completion: Completion, messages: list[dict[str, Any]]) -> None:
        thinking_tokens = completion.reasoning_tokens
        if thinking_tokens is None:
            thinking_tokens = estimate_tokens(completion.thinking)
            self.estimated |= completion.thinking is not None
        prompt, reply = completion.prompt_tokens, completion.completion_tokens
        if prompt is None:
            prompt = estimate_tokens(" ".join(str(m.get("content") or "") for m in messages))
        if reply is None:
            text = completion.tool_arguments or completion.text
            reply = estimate_tokens(text) + thinking_tokens
        self.estimated |= completion.prompt_tokens is None or completion.completion_tokens is None
        self.prompt_tokens += prompt
        self.completion_tokens += reply
        self.thinking_words += count_words(completion.thinking)
        self.thinking_tokens += thinking_tokens


@dataclass
class StructuredAsker:
    """Per-endpoint state: which structured-output mode works (``forced`` skips discovery)."""

    forced: str | None = None
    mode: str | None = None
    refused: set[str] = field(default_factory=set)
    _discovering: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        if self.forced:
            self.mode = self.forced

    async def ask(
        self,
        client: ChatClient,
        endpoint: Endpoint,
        messages: list[dict[str, Any]],
        *,
        params: dict[str, Any],
        fields: Callable[[str], dict[str, Any]],
        parse: Callable[[str | None], tuple[Any | None, str]],
        reask: Callable[[str], str],
        max_reasks: int,
        salt: str = "",
    ) -> Asked:
        """Ask, parse, and re-ask up to ``max_reasks`` times with the reason it failed."""
        current, raw, reason, cached = messages, None, "", True
        usage = AskUsage()
        for attempt in range(1, max_reasks + 2):
            completion, mode, error = await self._any_mode(
                client, endpoint, current, params, fields, salt, usage
            )
            if completion is None:
                return Asked(None, raw, mode, attempt, False, error, usage=usage)
            usage.add(completion, current)
            cached = cached and completion.cached
            raw = (
                completion.tool_arguments
                if completion.tool_arguments is not None
                else completion.text
            )
            if completion.finish_reason == "length":
                # Cut by max_tokens: even a reply that parses may be a fragment (a thinking
                # model's draft whose closing tag never came), so it is never taken.
                value, reason = None, "the reply was cut by max_tokens (finish_reason=length)"
            else:
                value, reason = parse(raw)
            if value is not None:
                return Asked(value, raw, mode, attempt, cached, None, usage=usage)
            current = [
                *messages,
                {"role": "assistant", "content": raw or ""},
                {"role": "user", "content": reask(reason)},
            ]
        return Asked(
            None,
            raw,
            self.mode,
            max_reasks + 1,
            False,
            f"invalid reply after {max_reasks + 1} asks: {reason}",
            invalid=True,
            usage=usage,
        )

    async def _any_mode(
        self,
        client: ChatClient,
        endpoint: Endpoint,
        messages: list[dict[str, Any]],
        params: dict[str, Any],
        fields: Callable[[str], dict[str, Any]],
        salt: str,
        usage: AskUsage | None = None,
    ) -> tuple[Any, str | None, str]:
        def body(mode: str) -> dict[str, Any]:
            return {"messages": messages, **params, **fields(mode)}

        cached = self._cached_mode(client, endpoint, body, salt)
        if cached is not None:  # a re-run never repeats a refused attempt
            self.mode = self.mode or cached
            return await self._try(client, endpoint, [cached], body, salt, usage)
        if self.mode is None:
            async with self._discovering:
                if self.mode is None:
                    modes = [m for m in MODES if m not in self.refused]
                    return await self._try(client, endpoint, modes, body, salt, usage)
        return await self._try(client, endpoint, [self.mode], body, salt, usage)

    def _cached_mode(
        self,
        client: ChatClient,
        endpoint: Endpoint,
        body: Callable[[str], dict[str, Any]],
        salt: str,
    ) -> str | None:
        if client.cache is None or client.refresh:
            return None
        for mode in [self.mode] if self.mode else MODES:
            hit = client.cache.get(cache_key(endpoint, body(mode), salt))
            if hit is not None and honoured(mode, body(mode), hit.tool_arguments or hit.text):
                return mode
        return None

    async def _try(
        self,
        client: ChatClient,
        endpoint: Endpoint,
        modes: list[str],
        body: Callable[[str], dict[str, Any]],
        salt: str,
        usage: AskUsage | None = None,
    ) -> tuple[Any, str | None, str]:
        error = "no structured-output mode left to try"
        for mode in modes:
            try:
                completion = await client.chat(endpoint, body(mode), cache_salt=salt)
            except RequestError as exc:
                if isinstance(exc, ThinkingUnfinished) and usage is not None:
                    usage.add(exc.completion, body(mode)["messages"])  # its thinking was paid
                discovering = mode != "text" and not self.forced and self.mode is None
                if discovering and exc.status in MODE_REFUSED_STATUS:
                    self.refused.add(mode)
                    error = f"{mode} refused: {exc}"
                    continue
                return None, mode, str(exc)
            discovering = not self.forced and self.mode is None
            if discovering and not honoured(mode, body(mode), completion.text):
                self.refused.add(mode)  # the server ignored it: its reply is not the schema's
                error = f"{mode} ignored: the reply is not JSON of the schema"
                continue
            self.mode = self.mode or mode
            return completion, mode, ""
        return None, None, error
