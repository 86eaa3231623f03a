"""One chat completion on the wire: laid out as tokens when it thinks or max_tokens cuts it,
sent as one JSON body or as server-sent events paced to the behaviour's timing, with usage.

The benchmark measures the client beside this server, so the common stream (a fixed reply, no
thinking, no cut) is assembled from cached, pre-encoded pieces rather than JSON per chunk.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import time
from typing import Any

from aiohttp import web

from raq.testing._behaviour import INLINE_THINKING_MARKERS, Behaviour, Body
from raq.testing._chat_request import count_prompt_tokens, output_budget
from raq.testing._wire import choice, close_connection, dumps

_PIECE = re.compile(r"\s*\S+\s*")


@functools.lru_cache(maxsize=512)
def _encoded_pieces(text: str) -> tuple[bytes, ...]:
    """JSON-encoded stream pieces (a word and its following space); cached for fixed replies."""
    pieces = _PIECE.findall(text) or ([text] if text else [])
    return tuple(json.dumps(p).encode() for p in pieces)


class Completion:
    """One completion to send, non-streamed or as server-sent events; ``number`` (the server's
    count of completions) names its id and its tool call's id."""

    def __init__(
        self,
        number: int,
        body: Body,
        behaviour: Behaviour,
        model: str | None,
        text: str | None,
        tool_name: str | None,
        arguments: str | None,
        thinking: str | None = None,
    ) -> None:
        self.id = f"chatcmpl-fake{number}"
        self.call_id = f"call_fake{number}"
        self.created = int(time.time())
        self.body = body
        self.behaviour = behaviour
        self.model = model if model is not None else "fake"
        self.text = text
        self.tool_name = tool_name
        self.arguments = arguments
        self.finish_reason = "stop" if arguments is None else "tool_calls"
        # The reply as (field, piece) tokens when it thinks or max_tokens cuts it; None for
        # the plain reply, which streams from cached pre-encoded pieces.
        self.tokens: list[tuple[str, str]] | None = None
        self.reasoning_tokens = 0
        self._plan(thinking, output_budget(body))

    def _plan(self, thinking: str | None, budget: int | None) -> None:
        """Lay out thinking and reply as tokens (a word or tag each) and cut them at
        ``budget`` (max_tokens) as a server would: finish_reason "length"."""
        if thinking is None:  # the common case: cut only if the reply is over budget
            payload = (self.text or "") if self.arguments is None else self.arguments
            if budget is None or len(_encoded_pieces(payload)) <= budget:
                return
        form = self.behaviour.thinking_form
        tokens: list[tuple[str, str]] = []
        if thinking is not None:
            words = _PIECE.findall(thinking) or [thinking]
            if form in INLINE_THINKING_MARKERS:
                opening, closing = INLINE_THINKING_MARKERS[form]
                tokens += [("content", opening)] if opening else []
                tokens += [("content", w) for w in words] + [("content", closing)]
            else:
                tokens += [(form, w) for w in words]
        thought = len(tokens)
        if self.arguments is not None:
            tokens += [("arguments", w) for w in _PIECE.findall(self.arguments)]
        else:
            tokens += [("content", w) for w in _PIECE.findall(self.text or "")]
        if budget is not None and len(tokens) > budget:
            tokens = tokens[:budget]
            self.finish_reason = "length"
            if self.arguments is not None:  # a cut call is no call
                tokens = [t for t in tokens if t[0] != "arguments"]
                self.arguments = None
        if thinking is None and self.finish_reason != "length":
            return
        self.tokens = tokens
        self.reasoning_tokens = min(thought, len(tokens))
        self.text = "".join(p for field, p in tokens if field == "content")

    def usage(self) -> dict[str, Any]:
        if self.tokens is not None:
            completion_tokens = len(self.tokens)
        else:
            completion = self.text if self.arguments is None else self.arguments
            completion_tokens = len((completion or "").split())
        prompt_tokens = count_prompt_tokens(self.body)
        out: dict[str, Any] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        if self.reasoning_tokens and self.behaviour.send_reasoning_tokens:
            out["completion_tokens_details"] = {"reasoning_tokens": self.reasoning_tokens}
        return out

    async def complete(self, request: web.Request, cut: bool) -> web.StreamResponse:
        if self.behaviour.latency_s > 0:
            await asyncio.sleep(self.behaviour.latency_s)
        message: dict[str, Any] = {"role": "assistant", "content": self.text, "tool_calls": None}
        if self.tokens is not None:
            for form in ("reasoning", "reasoning_content"):
                thought = "".join(p for field, p in self.tokens if field == form)
                if thought:
                    message[form] = thought
            message["content"] = self.text or None  # as vLLM: no answer, no content
        if self.arguments is not None:
            function = {"name": self.tool_name, "arguments": self.arguments}
            message["tool_calls"] = [{"id": self.call_id, "type": "function", "function": function}]
        out: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": self.finish_reason,
                }
            ],
        }
        if self.behaviour.send_usage:
            out["usage"] = self.usage()
        data = dumps(out)
        if not cut:
            return web.Response(body=data, content_type="application/json")
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.content_length = len(data)
        try:
            await resp.prepare(request)
            await resp.write(data[: len(data) // 2])
        except ConnectionError:
            return resp
        close_connection(request)
        return resp

    def _chunk_head(self) -> bytes:
        """The start of every streamed chunk of this reply, up to its choices."""
        return b"".join(
            [
                b'data: {"id":',
                dumps(self.id),
                b',"object":"chat.completion.chunk","created":',
                str(self.created).encode(),
                b',"model":',
                dumps(self.model),
                b',"choices":',
            ]
        )

    def _events(self) -> tuple[bytes, list[bytes], bytes]:
        """(role chunk, content chunks, finish chunk) as SSE bytes."""
        if self.tokens is not None:
            return self._token_events()
        head = self._chunk_head()
        if self.arguments is None:
            role = head + b'[{"index":0,"delta":{"role":"assistant","content":""},'
            role += b'"logprobs":null,"finish_reason":null}]}\n\n'
            start = head + b'[{"index":0,"delta":{"content":'
            end = b'},"logprobs":null,"finish_reason":null}]}\n\n'
            chunks = [start + piece + end for piece in _encoded_pieces(self.text or "")]
            finish = (
                head
                + b'[{"index":0,"delta":{},"logprobs":null,"finish_reason":'
                + dumps(self.finish_reason)
                + b"}]}\n\n"
            )
            return role, chunks, finish
        call = {
            "index": 0,
            "id": self.call_id,
            "type": "function",
            "function": {"name": self.tool_name, "arguments": ""},
        }
        delta = {"role": "assistant", "content": None, "tool_calls": [call]}
        role = head + dumps([choice(delta)]) + b"}\n\n"
        args = self.arguments or ""
        half = len(args) // 2
        parts = [args[:half], args[half:]] if half else [args]
        chunks = [
            head
            + dumps([choice({"tool_calls": [{"index": 0, "function": {"arguments": part}}]})])
            + b"}\n\n"
            for part in parts
        ]
        finish = head + dumps([choice({}, "tool_calls")]) + b"}\n\n"
        return role, chunks, finish

    def _token_events(self) -> tuple[bytes, list[bytes], bytes]:
        """Events of a thinking or cut reply: a chunk per token, in its own delta field."""
        head = self._chunk_head()
        assert self.tokens is not None
        role = head + dumps([choice({"role": "assistant", "content": ""})]) + b"}\n\n"
        chunks = []
        opened = False
        for field, piece in self.tokens:
            if field == "arguments":
                call: dict[str, Any] = {"index": 0, "function": {"arguments": piece}}
                if not opened:
                    call |= {"id": self.call_id, "type": "function"}
                    call["function"]["name"] = self.tool_name
                    opened = True
                delta: dict[str, Any] = {"tool_calls": [call]}
            else:
                delta = {field: piece}
            chunks.append(head + dumps([choice(delta)]) + b"}\n\n")
        finish = head + dumps([choice({}, self.finish_reason)]) + b"}\n\n"
        return role, chunks, finish

    async def stream(
        self, request: web.Request, cut: bool, *, interrupted: bool = False
    ) -> web.StreamResponse:
        b = self.behaviour
        ttft = b.ttft_s if b.ttft_s is not None else b.latency_s
        role, chunks, finish = self._events()
        n = len(chunks)
        interval = tail = 0.0
        if b.tokens_per_s is not None and b.tokens_per_s > 0:
            interval = 1.0 / b.tokens_per_s
        elif b.latency_s > ttft:
            if n > 1:
                interval = (b.latency_s - ttft) / (n - 1)
            else:
                tail = b.latency_s - ttft
        if interrupted:  # llama-cpp-python: the first chunk, then [DONE], no finish_reason
            chunks, trailer = chunks[:1], b"data: [DONE]\n\n"
        elif cut:
            chunks = chunks[: min(3, max(1, n // 2))] if n else []
            trailer = b""
        else:
            options = self.body.get("stream_options")
            include_usage = isinstance(options, dict) and options.get("include_usage") is True
            trailer = finish
            if include_usage and b.send_usage:
                trailer += self._usage_event()
            trailer += b"data: [DONE]\n\n"

        if ttft > 0:
            await asyncio.sleep(ttft)
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        try:
            await resp.prepare(request)
            loop = asyncio.get_running_loop()
            start = loop.time()
            pending = [role]
            for i, chunk in enumerate(chunks):
                delay = start + i * interval - loop.time()
                if delay > 0:
                    await resp.write(b"".join(pending))
                    pending.clear()
                    await asyncio.sleep(delay)
                pending.append(chunk)
            if tail > 0:
                await resp.write(b"".join(pending))
                pending.clear()
                await asyncio.sleep(tail)
            pending.append(trailer)
            await resp.write(b"".join(pending))
            if cut:
                close_connection(request)
                return resp
            await resp.write_eof()
        except ConnectionError:
            pass  # the client went away; nothing to finish
        return resp

    def _usage_event(self) -> bytes:
        out = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": self.usage(),
        }
        return b"data: " + dumps(out) + b"\n\n"
