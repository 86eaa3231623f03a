"""A small, real OpenAI-compatible HTTP server for raq's tests and benchmark.

raq's client talks real HTTP to it, so retries, timeouts, streaming and error mapping are
exercised end to end, with configurable latency and injected faults. The benchmark runs it
beside the client to measure the client's CPU, so it stays cheap: no pydantic, and stream
chunks are assembled from cached, pre-encoded pieces.

This module is the server: it routes each request to a model's ``Behaviour``, keeps the log
and counts tests read, checks the key and the rate limit, and runs in a thread or (``main``)
as a process. The rest lives beside it, one concept a module, and is re-exported here:
``_behaviour`` (a model's configuration), ``_faults`` (fault kinds and the responses that
replace a reply), ``_rate_limit`` (the gateway's token bucket), ``_chat_request`` (reading a
request), ``_answer`` (what a model answers), ``_completion`` (a completion on the wire),
``_wire`` (shared encoding) and ``_replies`` (reply functions and fake judges for tests).

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
import signal
import sys
import threading
from collections import Counter
from collections.abc import Sequence
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
from raq.testing._chat_request import Headers
from raq.testing._faults import (
    FAULT_KINDS,
    HOSTILE_TEXT,
    check_fault,
    early_fault_response,
    is_early,
)
from raq.testing._rate_limit import RATE_LIMIT_HEADERS, RateLimit, add_rate_limit_headers
from raq.testing._replies import (
    fixed_text,
    judge_by_overlap,
    judge_presented_order,
    judge_reply,
    parse_judge_prompt,
    reply_from_context,
    reply_text,
)
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
# Standalone process for the benchmark


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
