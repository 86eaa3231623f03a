"""A small, real OpenAI-compatible HTTP server for raq's tests and benchmark.

raq's client talks real HTTP to it, so retries, timeouts, streaming and error mapping are
exercised end to end, with configurable latency and injected faults. The benchmark runs it
beside the client to measure the client's CPU, so it stays cheap: no pydantic, and stream
chunks are assembled from cached, pre-encoded pieces.

Run standalone with ``python -m raq.testing.fake_server --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import functools
import itertools
import json
import logging
import re
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web

from raq.testing._behaviour import (
    DEFAULT_TEXT,
    INLINE_THINKING_MARKERS,
    THINKING_FORMS,
    Behaviour,
    Body,
    FaultFn,
    Reply,
)
from raq.testing._faults import (
    FAULT_KINDS,
    HOSTILE_TEXT,
    check_fault,
    early_fault_response,
    is_early,
    stream_error,
)
from raq.testing._rate_limit import RATE_LIMIT_HEADERS, RateLimit, add_rate_limit_headers
from raq.testing._wire import choice, close_connection, dumps, error_response

__all__ = [
    "DEFAULT_TEXT",
    "FAULT_KINDS",
    "HOSTILE_TEXT",
    "THINKING_FORMS",
    "Behaviour",
    "Body",
    "FakeOpenAIServer",
    "FaultFn",
    "RateLimit",
    "Reply",
    "check_fault",
    "judge_by_overlap",
    "judge_presented_order",
    "judge_reply",
    "main",
    "parse_judge_prompt",
    "reply_from_context",
    "reply_text",
]

_log = logging.getLogger(__name__)

_TRUTH_PREFIX = "Based on the correct answer:"
_MAX_BODY = 64 * 1024 * 1024


class _Headers(dict[str, str]):
    """Request headers keyed in lower case, looked up case-insensitively as HTTP does."""

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)


# ---------------------------------------------------------------------------------------------
# Request inspection and response pieces


def _message_text(message: dict[str, Any]) -> str:
    """A message's text, whether content is a string or a list of content parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def _messages(body: Body) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return []
    return [m for m in messages if isinstance(m, dict)]


def _prompt_tokens(body: Body) -> int:
    return sum(len(_message_text(m).split()) for m in _messages(body))


def _last_user_text(body: Body) -> str:
    for message in reversed(_messages(body)):
        if message.get("role") == "user":
            return _message_text(message)
    return ""


def _response_format_type(body: Body) -> str | None:
    rf = body.get("response_format")
    if rf is None:
        return None
    kind = rf.get("type") if isinstance(rf, dict) else None
    return kind if isinstance(kind, str) else "<missing>"


def _unsupported(body: Body, behaviour: Behaviour) -> tuple[str, str] | None:
    """(message, param) naming the first mode the behaviour refuses, or None."""
    kind = _response_format_type(body)
    if kind is not None:
        refused = (kind == "json_schema" and not behaviour.accept_json_schema) or (
            kind == "json_object" and not behaviour.accept_json_object
        )
        if refused or kind not in ("text", "json_schema", "json_object"):
            return f"response_format type {kind} is not supported", "response_format"
    if behaviour.guided_json == "refuse":
        for name in ("guided_json", "nvext"):
            if name in body:
                return f"Unrecognized request argument supplied: {name}", name
    if not behaviour.accept_tools:
        if body.get("tools"):
            return "tools is not supported", "tools"
        if body.get("tool_choice") is not None:
            return "tool_choice is not supported", "tool_choice"
    return None


def _guidance_ignored(body: Body, behaviour: Behaviour) -> bool:
    """Whether the only output constraint asked for is a guided_json the server ignores."""
    if _response_format_type(body) in ("json_schema", "json_object"):
        return False
    asked = [name for name in ("guided_json", "nvext") if name in body]
    honoured = {"top-level": "guided_json", "nvext": "nvext"}.get(behaviour.guided_json)
    return bool(asked) and honoured not in asked


def _tool_name(body: Body) -> str | None:
    """The function a structured reply should call, or None when there is no tool to call."""
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if not isinstance(tools, list) or not tools or choice == "none":
        return None
    if isinstance(choice, dict):
        forced = choice.get("function")
        if isinstance(forced, dict) and isinstance(forced.get("name"), str):
            return forced["name"]
    first = tools[0]
    function = first.get("function") if isinstance(first, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    return name if isinstance(name, str) else "tool"


_PIECE = re.compile(r"\s*\S+\s*")


@functools.lru_cache(maxsize=512)
def _encoded_pieces(text: str) -> tuple[bytes, ...]:
    """JSON-encoded stream pieces (a word and its following space); cached for fixed replies."""
    pieces = _PIECE.findall(text) or ([text] if text else [])
    return tuple(json.dumps(p).encode() for p in pieces)


# ---------------------------------------------------------------------------------------------
# The server


class FakeOpenAIServer:
    """An aiohttp OpenAI-compatible server on loopback, in a daemon thread with its own loop.

    ``behaviours`` maps model names to how they answer; ``default`` answers any other model
    (with neither given, every model gets ``Behaviour()``; with only ``behaviours``, other
    models get 404 ``model_not_found``). ``log_requests=False`` keeps no bodies or headers,
    for long benchmark runs; ``count`` still works.
    """

    def __init__(
        self,
        behaviours: dict[str, Behaviour] | None = None,
        default: Behaviour | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        log_requests: bool = True,
        api_key: str | None = None,
        bad_key_status: int = 401,
        rate_limit: RateLimit | None = None,
    ) -> None:
        if behaviours is None and default is None:
            default = Behaviour()
        self._behaviours: dict[str, Behaviour] = dict(behaviours or {})
        self._default = default
        self.host = host
        self.port = port
        self.requests: list[Body] = []
        self.headers: list[dict[str, str]] = []
        self._log_requests = log_requests
        self._lock = threading.Lock()
        self._counts: Counter[str | None] = Counter()
        self._peers: set[Any] = set()
        self._fault_index: Counter[str | None] = Counter()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._state_lock = threading.Lock()
        self._stopped = False
        # With api_key set, a request with another key is refused with bad_key_status, on
        # /models too: 401 as OpenAI does, or 400 as litellm's proxy does ("No connected db").
        self.api_key = api_key
        self.bad_key_status = bad_key_status
        self.preflights: Counter[str | None] = Counter()  # raq's preflight requests per model
        self.rate_limit = rate_limit
        self._last_model: str | None = None
        self._switches = 0

    # -- public API -----------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT/v1``; known once the server listens."""
        if self._base_url is None:
            raise RuntimeError("FakeOpenAIServer is not started")
        return self._base_url

    def start(self) -> FakeOpenAIServer:
        """Serve from a daemon thread; returns once the socket listens."""
        with self._state_lock:
            if self._thread is not None or self._stopped:
                raise RuntimeError("a FakeOpenAIServer can be started only once")
            ready: concurrent.futures.Future[None] = concurrent.futures.Future()
            self._thread = threading.Thread(
                target=self._run_thread, args=(ready,), name="raq-fake-openai", daemon=True
            )
            self._thread.start()
        ready.result(timeout=30)
        return self

    def stop(self) -> None:
        """Cancel in-flight handlers (hangs included), close the socket, join the thread."""
        with self._state_lock:
            if self._stopped or self._thread is None:
                return
            self._stopped = True
            thread, loop = self._thread, self._loop
        if thread is None or loop is None or loop.is_closed():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._ashutdown(), loop).result(timeout=10)
        finally:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def count(self, model: str | None = None) -> int:
        """Chat-completion requests received, for one model or (None) in all."""
        with self._lock:
            return self._counts[model] if model is not None else sum(self._counts.values())

    def model_switches(self) -> int:
        """How often a chat request named a different model than the one before it: each one
        a reload for a server that holds one model at a time (llama.cpp, Ollama, one GPU)."""
        with self._lock:
            return self._switches

    def connections(self) -> int:
        """Client connections (distinct peer addresses) that sent chat-completion requests."""
        with self._lock:
            return len(self._peers)

    def reset_log(self) -> None:
        """Forget received requests; fault sequences start again from their first entry."""
        with self._lock:
            self._peers.clear()
            self.requests.clear()
            self.headers.clear()
            self._counts.clear()
            self._fault_index.clear()
            self.preflights.clear()
            self._last_model, self._switches = None, 0

    def set_behaviour(self, model: str, behaviour: Behaviour) -> None:
        """Replace a model's behaviour; its fault sequence starts from the first entry."""
        with self._lock:
            self._behaviours[model] = behaviour
            self._fault_index[model] = 0

    # -- lifecycle ------------------------------------------------------------------------

    def _run_thread(self, ready: concurrent.futures.Future[None]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._astart())
        except BaseException as exc:
            ready.set_exception(exc)
            loop.close()
            return
        ready.set_result(None)
        try:
            loop.run_forever()
        finally:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _astart(self) -> None:
        """Bind and listen on the running loop (thread mode and the standalone process)."""
        app = web.Application(client_max_size=_MAX_BODY)
        app.on_response_prepare.append(add_rate_limit_headers)
        for prefix in ("/v1", ""):
            app.router.add_get(f"{prefix}/models", self._handle_models)
            app.router.add_post(f"{prefix}/chat/completions", self._handle_chat)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        port = runner.addresses[0][1]
        self.port = port
        host = f"[{self.host}]" if ":" in self.host else self.host
        self._base_url = f"http://{host}:{port}/v1"

    async def _ashutdown(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- handlers -------------------------------------------------------------------------

    def _key_refused(self, request: web.Request) -> web.Response | None:
        if self.api_key is None or request.headers.get("Authorization") == f"Bearer {self.api_key}":
            return None
        if self.bad_key_status == 400:
            return error_response(400, "No connected db.", "None", code="400")
        return error_response(
            self.bad_key_status,
            "Incorrect API key provided.",
            "invalid_request_error",
            code="invalid_api_key",
        )

    async def _handle_models(self, request: web.Request) -> web.Response:
        refused = self._key_refused(request)
        if refused is not None:
            return refused
        with self._lock:
            names = list(self._behaviours)
        data = [{"id": n, "object": "model", "created": 0, "owned_by": "raq-fake"} for n in names]
        return web.Response(
            body=dumps({"object": "list", "data": data}), content_type="application/json"
        )

    async def _handle_chat(self, request: web.Request) -> web.StreamResponse:
        # Tracked so that stop() can cancel hanging or slow handlers instead of waiting.
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            return await self._chat(request)
        finally:
            if task is not None:
                self._tasks.discard(task)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            return error_response(400, "request body is not valid JSON", "invalid_request_error")
        if not isinstance(body, dict):
            return error_response(
                400, "request body must be a JSON object", "invalid_request_error"
            )
        model = body.get("model")
        if not isinstance(model, str | None):
            return error_response(
                400, "model must be a string", "invalid_request_error", param="model"
            )
        # raq's preflight (one token, before the run) is counted apart and draws no fault:
        # fault sequences and counts describe the run's own requests.
        preflight = request.headers.get("X-Raq-Preflight") == "1"
        with self._lock:
            behaviour = self._behaviours.get(model) if model is not None else None
            if behaviour is None:
                behaviour = self._default
            if preflight:
                self.preflights[model] += 1
            else:
                if self._log_requests:
                    self.requests.append(body)
                    self.headers.append(
                        _Headers((k.lower(), v) for k, v in request.headers.items())
                    )
                self._counts[model] += 1
                if self._counts.total() > 1 and model != self._last_model:
                    self._switches += 1
                self._last_model = model
                if request.transport is not None:
                    self._peers.add(request.transport.get_extra_info("peername"))
            refused = self._key_refused(request)
            index = self._fault_index[model]
            if behaviour is not None and not preflight and refused is None:
                self._fault_index[model] = index + 1
        if refused is not None:
            return refused
        if self.rate_limit is not None:
            accepted, limit_headers = self.rate_limit.take()
            request[RATE_LIMIT_HEADERS] = limit_headers
            if not accepted:
                return error_response(
                    429,
                    "Rate limit reached for requests (fake server token bucket).",
                    "requests",
                    code="rate_limit_exceeded",
                )
        if behaviour is None:
            return error_response(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                "invalid_request_error",
                code="model_not_found",
                param="model",
            )
        try:
            fault = None if preflight else behaviour.fault_for(index, body)
        except Exception as exc:
            _log.exception("fake server: faults callable failed")
            return error_response(500, f"fake server: faults failed: {exc!r}", "server_error")
        if is_early(fault):
            return await early_fault_response(request, fault)
        problem = _unsupported(body, behaviour)
        if problem is not None:
            message, param = problem
            return error_response(400, message, "invalid_request_error", param=param)

        tool_name = _tool_name(body)
        if fault == "stream-error-echo":
            return await stream_error(request, body)
        payload: str | Any
        if preflight:
            payload = "OK"  # the reply functions expect the run's prompts
        elif fault == "empty":
            payload = ""
        elif fault == "not-permutation":
            wants_json = _response_format_type(body) in ("json_schema", "json_object")
            payload = {"ranking": [1, 1]} if tool_name or wants_json else "1, 1"
        else:
            try:
                payload = behaviour.reply(body)
            except Exception as exc:
                _log.exception("fake server: reply function failed")
                return error_response(
                    500, f"fake server: reply function failed: {exc!r}", "server_error"
                )
        text: str | None
        arguments: str | None = None
        if isinstance(payload, str):
            text = payload
        elif tool_name is not None:
            text, arguments = None, json.dumps(payload)
        elif _guidance_ignored(body, behaviour):
            text = f"Here is my answer: {json.dumps(payload)} I hope this helps."
        else:
            text = json.dumps(payload)
        cut = fault == "cut-stream"
        thinking = behaviour.thinking
        if callable(thinking):
            try:
                thinking = thinking(body)
            except Exception as exc:
                _log.exception("fake server: thinking function failed")
                return error_response(
                    500, f"fake server: thinking function failed: {exc!r}", "server_error"
                )
        if fault == "length" and text is not None:
            words = text.split(" ")
            text = " ".join(words[: max(1, len(words) // 2)])
        reply = _Reply(self, body, behaviour, model, text, tool_name, arguments, thinking)
        if fault == "length":
            reply.finish_reason = "length"
        if body.get("stream") is True:
            return await reply.stream(request, cut, interrupted=fault == "done-without-finish")
        return await reply.complete(request, cut)


class _Reply:
    """One completion to send, non-streamed or as server-sent events."""

    def __init__(
        self,
        server: FakeOpenAIServer,
        body: Body,
        behaviour: Behaviour,
        model: str | None,
        text: str | None,
        tool_name: str | None,
        arguments: str | None,
        thinking: str | None = None,
    ) -> None:
        n = next(server._ids)
        self.id = f"chatcmpl-fake{n}"
        self.call_id = f"call_fake{n}"
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
        self._plan(thinking, _max_tokens(body))

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
        prompt_tokens = _prompt_tokens(self.body)
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


def _max_tokens(body: Body) -> int | None:
    """The request's output budget (max_tokens, or max_completion_tokens), if it sets one."""
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


# ---------------------------------------------------------------------------------------------
# Reply helpers


def reply_text(text: str) -> Reply:
    """A reply function that always answers ``text``."""

    def reply(body: Body) -> str:
        return text

    return reply


_CONTEXT = re.compile(r"context:", re.IGNORECASE)
_SENTENCE = re.compile(r"^(.*?[.!?])(?=\s|$)")


def reply_from_context(n_words: int | None = None) -> Reply:
    """Answer with the first sentence after ``context:`` in the last user message.

    A fake answerer that is right when the prompt carries the answer, so tests can tell
    good and bad answers apart; ``n_words`` truncates it to make a worse answerer.
    """

    def reply(body: Body) -> str:
        text = _last_user_text(body)
        match = _CONTEXT.search(text)
        if match is None:
            return "I do not know."
        rest = text[match.end() :].lstrip()
        line = rest.split("\n", 1)[0].strip()
        if not line:
            return "I do not know."
        sentence = _SENTENCE.match(line)
        answer = sentence.group(1) if sentence else line
        if n_words is not None:
            answer = " ".join(answer.split()[:n_words])
        return answer

    return reply


def parse_judge_prompt(body: Body) -> tuple[str, list[dict[str, Any]]]:
    """(truth, answers) from raq's judge prompt in the last user message.

    The answers are decoded as JSON from the first ``<answers>`` line, never cut at a
    closing tag, because an answer may itself contain ``</answers>`` or ``ID: 2 Answer:``.
    The truth is the rest of the ``Based on the correct answer:`` line outside the block
    (best effort: "" when absent). Raises ValueError when there is no answers block.
    """
    text = _last_user_text(body)
    if "<answers>" not in text:  # a re-ask: the judge prompt is an earlier user message
        for message in reversed(_messages(body)):
            if message.get("role") == "user" and "<answers>" in _message_text(message):
                text = _message_text(message)
                break
    tag = re.search(r"^[ \t]*<answers>[ \t]*$", text, re.MULTILINE)
    if tag is not None:
        tag_start, tag_end = tag.start(), tag.end()
    else:
        tag_start = text.find("<answers>")
        if tag_start < 0:
            raise ValueError("judge prompt has no <answers> block")
        tag_end = tag_start + len("<answers>")
    bracket = text.find("[", tag_end)
    if bracket < 0:
        raise ValueError("judge prompt has no JSON array after <answers>")
    answers, end = json.JSONDecoder().raw_decode(text, bracket)
    if not isinstance(answers, list) or not all(isinstance(a, dict) for a in answers):
        raise ValueError("the <answers> block is not a JSON array of objects")
    truth = ""
    for line in (text[:tag_start] + "\n" + text[end:]).splitlines():
        stripped = line.strip()
        if stripped.startswith(_TRUTH_PREFIX):
            truth = stripped[len(_TRUTH_PREFIX) :].strip()
            break
    return truth, answers


def judge_reply(rank: Callable[[list[dict[str, Any]], Body], list[int]]) -> Reply:
    """A judge reply function: parses the judge prompt, answers ``{"ranking": rank(...)}``,
    with a ``rationale`` when the prompt asks for one."""

    def reply(body: Body) -> dict[str, Any]:
        _, answers = parse_judge_prompt(body)
        ranking = list(rank(answers, body))
        if '"rationale"' in str(body["messages"][-1].get("content", "")):
            return {"ranking": ranking, "rationale": f"ID {ranking[0]} matches the reference."}
        return {"ranking": ranking}

    return reply


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


def judge_by_overlap() -> Reply:
    """A plausible fake judge: most words shared with the truth first, then the more precise
    (fewer words), then by id."""

    def rank(answers: list[dict[str, Any]], body: Body) -> list[int]:
        truth, _ = parse_judge_prompt(body)
        truth_words = _words(truth)

        def key(answer: dict[str, Any]) -> tuple[int, int, Any]:
            words = _words(str(answer.get("answer", "")))
            return -len(words & truth_words), len(words), answer.get("id")

        return [a.get("id") for a in sorted(answers, key=key)]  # type: ignore[misc]

    return judge_reply(rank)


def judge_presented_order() -> Reply:
    """A maximally position-biased fake judge: the ids in the order they were presented."""

    def rank(answers: list[dict[str, Any]], body: Body) -> list[int]:
        return [a.get("id") for a in answers]  # type: ignore[misc]

    return judge_reply(rank)


# ---------------------------------------------------------------------------------------------
# Standalone process for the benchmark

_LOREM = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor"
_VOCABULARY = (_LOREM + " incididunt ut labore et dolore magna aliqua").split()


def fixed_text(n_words: int) -> str:
    """A deterministic reply of ``n_words`` words, ending with a full stop."""
    words = [_VOCABULARY[i % len(_VOCABULARY)] for i in range(max(1, n_words))]
    return " ".join(words) + "."


async def _serve(server: FakeOpenAIServer) -> None:
    await server._astart()
    print(f"ready {server.base_url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server._ashutdown()


def main(argv: Sequence[str] | None = None) -> int:
    """Serve every model with a fixed reply until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(
        prog="python -m raq.testing.fake_server",
        description="Serve a fake OpenAI-compatible endpoint with a fixed reply.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8123, help="0 picks a free port")
    parser.add_argument("--latency-s", type=float, default=0.0)
    parser.add_argument("--ttft-s", type=float, default=None)
    parser.add_argument("--tokens-per-s", type=float, default=0.0, help="0: no pacing")
    parser.add_argument("--words", type=int, default=37, help="words in the fixed reply")
    parser.add_argument("--model", default="fake", help="the name /v1/models lists")
    parser.add_argument(
        "--thinking-words", type=int, default=0, help="think this many words first (0: none)"
    )
    parser.add_argument(
        "--thinking-form", default="reasoning", choices=sorted(THINKING_FORMS),
        help="how the thinking is sent",
    )  # fmt: skip
    args = parser.parse_args(argv)

    behaviour = Behaviour(
        reply=reply_text(fixed_text(args.words)),
        latency_s=args.latency_s,
        ttft_s=args.ttft_s,
        tokens_per_s=args.tokens_per_s or None,
        thinking=fixed_text(args.thinking_words) if args.thinking_words > 0 else None,
        thinking_form=args.thinking_form,
    )
    server = FakeOpenAIServer(
        {args.model: behaviour},
        default=behaviour,
        host=args.host,
        port=args.port,
        log_requests=False,
    )
    loop_factory = None
    with contextlib.suppress(ImportError):
        import uvloop  # optional: less server CPU in the benchmark

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(_serve(server))
    return 0


if __name__ == "__main__":
    sys.exit(main())
