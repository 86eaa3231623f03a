"""Reading a successful reply into a ``Completion``: a JSON body or a server-sent event stream,
its timing (time to first token, and to the first answer token after any thinking), its usage,
a reasoning model's thinking taken out of the answer, and the end of the body drained so the
connection returns to the pool.

This is the hot path of every streamed answer, so the parsing is written for CPU (orjson, one
await per network read); an error status is turned into an error by raq.endpoints.failures.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import time
from dataclasses import replace
from typing import Any

import aiohttp
import orjson

from raq.core.metrics import count_words
from raq.core.records import Completion
from raq.endpoints.failures import CUT_STREAM, INCOMPLETE_STREAM, RequestError, ThinkingUnfinished
from raq.endpoints.thinking import split_thinking


def _loads(data: bytes) -> Any:
    """Parse a response body or stream event. orjson takes about a quarter of json's CPU, and a
    streamed answer is dozens of events; what orjson refuses but json accepts (NaN, Infinity,
    integers beyond 64 bits) still parses. ValueError when neither can."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


async def read_json(response: aiohttp.ClientResponse, started: float) -> Completion:
    raw = await response.read()
    try:
        data = _loads(raw)
    except ValueError:
        kind = response.headers.get("Content-Type", "unknown type")
        raise RequestError(f"HTTP 200 with a non-JSON body ({kind})", retryable=True) from None
    latency = time.perf_counter() - started
    if not isinstance(data, dict) or not data.get("choices"):
        message = data.get("error") if isinstance(data, dict) else None
        raise RequestError(
            f"response without choices: {str(message or data)[:200]}", retryable=True
        )
    choice = data["choices"][0]
    message = choice.get("message") or {}
    tool_calls = message.get("tool_calls") or []
    arguments = tool_calls[0].get("function", {}).get("arguments") if tool_calls else None
    if arguments is None and message.get("function_call"):
        arguments = message["function_call"].get("arguments")
    usage = data.get("usage") or {}
    completion = Completion(
        text=message.get("content") or "",
        latency_s=latency,
        ttft_s=None,
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
        tool_arguments=arguments,
        finish_reason=choice.get("finish_reason"),
        reasoning_tokens=_reasoning_tokens(usage),
    )
    return with_thinking_separated(completion.text, _reasoning_field(message), completion)


async def read_stream(
    response: aiohttp.ClientResponse, started: float, deadline: float | None = None
) -> Completion:
    """Parse a streamed answer; ``deadline`` (loop time) is the request's own timeout."""
    content_type = response.headers.get("Content-Type", "")
    if "text/event-stream" not in content_type:
        if "json" in content_type:  # a server that ignores stream=true
            return await read_json(response, started)
        raise RequestError(f"HTTP 200 with a non-stream body ({content_type})", retryable=True)
    parts: list[str] = []
    arguments: list[str] = []
    thoughts: list[str] = []  # a separate reasoning field's pieces
    # How many content pieces had come after each network read that brought some, and when
    # that read arrived: the first answer token is found by its offset once the whole reply
    # shows where the thinking ended. Timing is per read (what arrived together arrived at
    # one time), and costs nothing per piece.
    pieces_read: list[int] = []
    read_times: list[float] = []
    arguments_s: float | None = None
    ttft: float | None = None
    usage: dict[str, Any] = {}
    finish_reason: str | None = None
    done = False
    loads = _loads
    pending = b""
    # Read whatever bytes arrived and split lines ourselves: one await per network read, not
    # one per line, which halves the client CPU of a streamed answer.
    async for received in response.content.iter_any():
        arrived = time.perf_counter() - started
        lines = (pending + received).split(b"\n")
        pending = lines.pop()
        for line in lines:
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                done = True
                finished = time.perf_counter()
                break
            try:
                chunk = loads(data)
            except ValueError:
                raise RequestError("malformed event in the stream", retryable=True) from None
            if "error" in chunk:
                raise RequestError(
                    f"error inside the stream: {str(chunk['error'])[:200]}", retryable=True
                )
            if chunk.get("usage"):
                usage = chunk["usage"]
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") or {}
                text = delta.get("content")
                if text:
                    if ttft is None:
                        ttft = arrived
                    parts.append(text)
                # Separate thinking (raq.endpoints.thinking): "reasoning_content" (older vLLM,
                # DeepSeek, llama.cpp, gateways) or "reasoning" (current vLLM, Ollama).
                thought = (
                    delta.get("reasoning_content") or delta.get("reasoning")
                    if not text or len(delta) > 1  # a lone content piece has none
                    else None
                )
                if thought and isinstance(thought, str):
                    if ttft is None:
                        ttft = arrived
                    thoughts.append(thought)
                for call in delta.get("tool_calls") or ():
                    piece = (call.get("function") or {}).get("arguments")
                    if piece:
                        if arguments_s is None:
                            arguments_s = arrived
                            ttft = arrived if ttft is None else ttft
                        arguments.append(piece)
                if choice.get("finish_reason"):
                    finish_reason = choice["finish_reason"]
        if parts and pieces_read[-1:] != [len(parts)]:
            pieces_read.append(len(parts))
            read_times.append(arrived)
        if done:
            break
    if done:
        await _drain(response, deadline)
    else:
        finished = time.perf_counter()
        done = pending.strip() == b"data: [DONE]"  # [DONE] without its newline
        if not done and finish_reason is None:
            raise RequestError(
                f"{CUT_STREAM}: the stream ended before [DONE] and without a finish_reason",
                retryable=True,
            )
    if finish_reason is None:
        # llama.cpp's Python server (and litellm in front of it) ends a stream it interrupts
        # with [DONE] right after the first chunk: the text so far is not the answer.
        raise RequestError(
            f"{INCOMPLETE_STREAM}: [DONE] came without a finish_reason "
            f"(the server interrupted the answer after {sum(map(len, parts))} characters)",
            retryable=True,
        )
    completion = Completion(
        text="".join(parts),
        latency_s=finished - started,
        ttft_s=ttft,
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
        tool_arguments="".join(arguments) if arguments else None,
        finish_reason=finish_reason,
        reasoning_tokens=_reasoning_tokens(usage),
        answer_ttft_s=ttft,  # unless thinking came first (with_thinking_separated)
    )
    return with_thinking_separated(
        completion.text,
        "".join(thoughts),
        completion,
        (parts, pieces_read, read_times),
        arguments_s,
    )


def _arrival(offset: int, parts: list[str], pieces_read: list[int], times: list[float]) -> float:
    """When the content character at ``offset`` arrived: the time of the first read after
    which the content pieces reached past it."""
    ends, length, counted = [], 0, 0
    for count in pieces_read:
        length += sum(len(piece) for piece in parts[counted:count])
        ends.append(length)
        counted = count
    return times[min(bisect.bisect_right(ends, offset), len(times) - 1)]


def _reasoning_field(part: dict[str, Any]) -> str | None:
    """A message's or delta's separate thinking: ``reasoning_content`` (older vLLM, DeepSeek,
    llama.cpp, gateways) or ``reasoning`` (current vLLM, Ollama). A server in transition may
    send both with the same text; one is read."""
    for name in ("reasoning_content", "reasoning"):
        value = part.get(name)
        if value and isinstance(value, str):
            return value
    return None


def _reasoning_tokens(usage: dict[str, Any]) -> int | None:
    details = usage.get("completion_tokens_details")
    value = details.get("reasoning_tokens") if isinstance(details, dict) else None
    return value if isinstance(value, int) else None


def with_thinking_separated(
    content: str,
    separate: str | None,
    completion: Completion,
    content_reads: tuple[list[str], list[int], list[float]] | None = None,
    arguments_s: float | None = None,
) -> Completion:
    """``completion`` with its thinking taken out of the answer (raq.endpoints.thinking), its
    time to the first answer token, and ThinkingUnfinished when it ended inside the thinking."""
    split = split_thinking(content, separate)
    if split.thinking is None and not split.unfinished:
        # No thinking (the common case): its first token is its first answer token, and the
        # reply stays as it came unless an empty thinking block (Qwen3 with thinking off)
        # is to be taken out of it.
        if split.tagged:
            return replace(completion, text=split.answer, answer_ttft_s=completion.ttft_s)
        if completion.answer_ttft_s == completion.ttft_s:
            return completion
        return replace(completion, answer_ttft_s=completion.ttft_s)
    answer_ttft = completion.ttft_s
    if completion.ttft_s is not None:
        answer_ttft = arguments_s
        if split.answer and content_reads is not None:
            answer_ttft = _arrival(split.answer_offset, *content_reads)
    separated = replace(
        completion, text=split.answer, thinking=split.thinking, answer_ttft_s=answer_ttft
    )
    no_answer = not split.answer and completion.tool_arguments is None
    if split.unfinished or (split.thinking is not None and no_answer):
        words = count_words(split.thinking)
        if completion.finish_reason == "length":
            why = f"max_tokens ran out while the model was still thinking ({words} words)"
        else:
            why = (
                f"no answer after {words} words of thinking "
                f"(finish_reason={completion.finish_reason})"
            )
        raise ThinkingUnfinished(f"thinking_unfinished: {why}", separated)
    return separated


# How long to wait, after [DONE], for the end of the response body.
_DRAIN_S = 0.25


async def _drain(response: aiohttp.ClientResponse, deadline: float | None) -> None:
    """Read to the end of the body after [DONE] so the connection goes back to the pool.

    The body's end (the chunked-encoding terminator) often arrives in its own packet after
    [DONE]. Leaving before it closes the connection instead of pooling it, and every streamed
    request then pays a new TCP (and TLS) handshake. The wait is bounded, and ends before the
    request's own timeout: a server that keeps the body open after [DONE] costs the
    connection and holds the request's concurrency slot up to ``_DRAIN_S`` longer, but the
    answer is kept.
    """
    if response.content.is_eof():
        return
    loop = asyncio.get_running_loop()
    until = loop.time() + _DRAIN_S
    if deadline is not None:
        until = min(until, deadline - 0.05)
    if until <= loop.time():
        return
    with contextlib.suppress(TimeoutError, aiohttp.ClientError):
        async with asyncio.timeout_at(until):
            await response.content.read()
