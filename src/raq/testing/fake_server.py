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
import itertools
import json
import logging
import re
import signal
import sys
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web

from raq.testing._answer import answer
from raq.testing._behaviour import (
    DEFAULT_TEXT,
    THINKING_FORMS,
    Behaviour,
    Body,
    FaultFn,
    Reply,
)
from raq.testing._chat_request import Headers, chat_messages, last_user_text, message_text
from raq.testing._faults import (
    FAULT_KINDS,
    HOSTILE_TEXT,
    check_fault,
    early_fault_response,
    is_early,
)
from raq.testing._rate_limit import RATE_LIMIT_HEADERS, RateLimit, add_rate_limit_headers
from raq.testing._wire import dumps, error_response

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
    "fixed_text",
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
                    self.headers.append(Headers((k.lower(), v) for k, v in request.headers.items()))
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
        return await answer(
            request, body, behaviour, model, fault, preflight=preflight, numbers=self._ids
        )


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
        text = last_user_text(body)
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
    text = last_user_text(body)
    if "<answers>" not in text:  # a re-ask: the judge prompt is an earlier user message
        for message in reversed(chat_messages(body)):
            if message.get("role") == "user" and "<answers>" in message_text(message):
                text = message_text(message)
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
