"""The one request path: pooled HTTP, streaming, retries, limits, timing and the response cache.

Every call raq makes to a model (candidate answers, judgments, generated data) goes through
``ChatClient.chat``. It speaks the OpenAI chat-completions protocol over aiohttp directly,
parsing server-sent events itself: measured on 2 cores this costs a fraction of the CPU of the
openai SDK's per-chunk pydantic parsing (see scripts/BENCH.md), so the harness is not the
bottleneck and the TTFT it measures is the server's, not the client's. A reasoning model's
thinking, in a separate field or inline, is taken out of the answer as the reply is read, so
every caller gets the answer alone.

This module holds ``ChatClient``: the cache lookup, the retries, disabling an endpoint that keeps
failing, the one redaction point and the HTTP post. What it uses lives beside it: the Endpoint
and its cache key (raq.endpoints.endpoint), the errors and failure kinds (.failures), the
per-endpoint limits and counters (.limits, .pacing), reading a reply (.reply, .thinking); the
check before a run is raq.endpoints.preflight.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp

from raq.core.records import Completion
from raq.core.redact import Redactor
from raq.endpoints.endpoint import Endpoint, cache_key
from raq.endpoints.failures import (
    CUT_STREAM,
    EMPTY_ANSWER,
    EndpointDisabled,
    RequestError,
    ThinkingUnfinished,
    status_error,
)
from raq.endpoints.limits import EndpointCounters, EndpointState
from raq.endpoints.pacing import Pacer, Ticket, pacer_key
from raq.endpoints.reply import read_json, read_stream, with_thinking_separated
from raq.endpoints.round_trip import refusal_time_s

if TYPE_CHECKING:
    from tenacity import RetryCallState

    from raq.store import ResponseCache


class RequestSettings(Protocol):
    """The request settings a run config and a generate config share."""

    timeout_s: float
    max_retries: int
    concurrency: int
    max_consecutive_failures: int
    retry_base_s: float
    retry_max_s: float


class ChatClient:
    """Sends chat completions with pooling, bounded concurrency, retries and caching."""

    @classmethod
    def from_settings(
        cls, settings: RequestSettings, *, cache: ResponseCache | None, refresh: bool
    ) -> ChatClient:
        return cls(
            timeout_s=settings.timeout_s,
            max_retries=settings.max_retries,
            concurrency=settings.concurrency,
            max_consecutive_failures=settings.max_consecutive_failures,
            retry_base_s=settings.retry_base_s,
            retry_max_s=settings.retry_max_s,
            cache=cache,
            refresh=refresh,
        )

    def __init__(
        self,
        *,
        timeout_s: float = 120.0,
        max_retries: int = 5,
        concurrency: int = 32,
        max_consecutive_failures: int = 20,
        retry_base_s: float = 0.5,
        retry_max_s: float = 30.0,
        cache: ResponseCache | None = None,
        refresh: bool = False,
        secrets: Iterable[str | None] = (),
        headers: dict[str, str] | None = None,
        require_content: bool = True,
    ) -> None:
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.concurrency = concurrency
        self.max_consecutive_failures = max_consecutive_failures
        self.cache = cache
        self.refresh = refresh
        self._retry_base_s = retry_base_s
        self._retry_max_s = retry_max_s
        self._global = asyncio.Semaphore(concurrency)
        self._states: dict[str, EndpointState] = {}
        self._pacers: dict[tuple[str, str], Pacer] = {}
        self._session: aiohttp.ClientSession | None = None
        self.on_event: Callable[[str, str], None] | None = None
        # Every key this client knows (each endpoint's own is added when first used): removed
        # from every server text before anything stores, caches or prints it.
        self.redact = Redactor(secrets)
        self.headers = dict(headers or {})
        # A reply without text or tool call is a failed request (EMPTY_ANSWER); a preflight,
        # which asks for one token, only needs the server to answer.
        self.require_content = require_content

    async def __aenter__(self) -> ChatClient:
        connector = aiohttp.TCPConnector(limit=self.concurrency * 2, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None),
            json_serialize=lambda o: json.dumps(o, ensure_ascii=False),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        for pacer in self._pacers.values():
            await pacer.aclose()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def counters(self) -> dict[str, EndpointCounters]:
        return {name: state.counters for name, state in self._states.items()}

    def disabled(self) -> dict[str, str]:
        return {n: s.disabled_reason for n, s in self._states.items() if s.disabled_reason}

    def _state(self, endpoint: Endpoint) -> EndpointState:
        state = self._states.get(endpoint.name)
        if state is None:
            key = pacer_key(endpoint.base_url, endpoint.api_key)
            pacer = self._pacers.get(key)
            if pacer is None:
                refusal_time = functools.partial(refusal_time_s, endpoint.base_url)
                pacer = self._pacers[key] = Pacer(refusal_time=refusal_time)
            state = self._states[endpoint.name] = EndpointState(endpoint, self.concurrency, pacer)
            self.redact.add(endpoint.api_key)
        return state

    async def chat(
        self,
        endpoint: Endpoint,
        body: dict[str, Any],
        *,
        stream: bool = False,
        cache_salt: str = "",
        key: str | None = None,
    ) -> Completion:
        """One chat completion, from the cache when it holds the same request. ``key``: the
        request's ``cache_key`` when the caller already has it (an answer's fingerprint)."""
        state = self._state(endpoint)
        if self.cache is not None and key is None:
            key = cache_key(endpoint, body, cache_salt)
        if self.cache is not None and not self.refresh:
            hit = self.cache.get(key)
            if hit is not None and hit.thinking is None:
                # Cached before raq read thinking: split any inline tags out of it now.
                hit = with_thinking_separated(hit.text, None, hit)
            # An empty reply cached by an older raq is no answer; a key it kept is removed.
            if hit is not None and has_content(hit):
                state.counters.cache_hits += 1
                return self._redacted(hit)
        if state.disabled_reason:
            raise EndpointDisabled(state.disabled_reason)
        try:
            completion = await self._with_retries(endpoint, state, body, stream)
        except RequestError as exc:
            state.counters.failures += 1
            if not _says_endpoint_is_down(exc):
                raise  # a refused request shape (400, 422) says nothing about the endpoint
            state.consecutive_failures += 1
            if (
                state.consecutive_failures >= self.max_consecutive_failures
                and not state.disabled_reason
            ):
                state.disabled_reason = (
                    f"stopped calling '{endpoint.name}' after {state.consecutive_failures} "
                    f"consecutive failed requests (last: {exc})"
                )
                if self.on_event:
                    self.on_event("disabled", state.disabled_reason)
            raise
        state.consecutive_failures = 0
        if self.cache is not None:
            assert key is not None
            self.cache.put(key, completion)
        return completion

    async def _with_retries(
        self, endpoint: Endpoint, state: EndpointState, body: dict[str, Any], stream: bool
    ) -> Completion:
        # The first attempt runs outside tenacity: its retry state is a reference cycle of some
        # 30 objects per call that only the cyclic garbage collector frees, and at hundreds of
        # requests a second those collections, not the requests, were what slowed a run. Only a
        # failed first attempt pays for it, and tenacity counts that attempt as its own first.
        try:
            return await self._once(endpoint, state, body, stream)
        except RequestError as exc:
            if not (exc.retryable and self.max_retries):
                raise
            first_error = exc
        # tenacity loads here, at a first failure: most runs never retry, and the first
        # request of every run need not wait for its import.
        from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception(_is_retryable),
            reraise=True,
        )
        attempt_number = 0
        async for attempt in retrying:
            with attempt:
                attempt_number += 1
                if attempt_number == 1:
                    raise first_error
                state.counters.retries += 1
                if state.disabled_reason:
                    raise EndpointDisabled(state.disabled_reason)
                return await self._once(endpoint, state, body, stream)
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait(self, retry_state: RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, RequestError) and exc.retry_after_s is not None:
            return min(max(exc.retry_after_s, 0.0), self._retry_max_s)
        from tenacity.wait import wait_random_exponential

        wait = wait_random_exponential(multiplier=self._retry_base_s, max=self._retry_max_s)
        return wait(retry_state)

    async def _once(
        self, endpoint: Endpoint, state: EndpointState, body: dict[str, Any], stream: bool
    ) -> Completion:
        tokens = _estimated_request_tokens(body)
        await state.rate.acquire(tokens)
        ticket = await state.pacer.before_request(tokens)
        await state.limiter.acquire()
        throttled = False
        try:
            if state.disabled_reason:  # disabled while this request waited for a slot
                raise EndpointDisabled(state.disabled_reason)
            async with self._global:
                state.counters.requests += 1
                completion = await self._post(endpoint, state, body, stream, ticket)
            # The one redaction point: every reply passes here before anything keeps it.
            return self._redacted(completion)
        except RequestError as exc:
            exc.args = (self.redact(str(exc)),)  # every server text in an error, too
            if isinstance(exc, ThinkingUnfinished):  # its text and thinking are kept
                exc.completion = self._redacted(exc.completion)
            throttled = exc.status == 429
            if throttled:
                state.counters.throttled += 1
            raise
        finally:
            # Once the pacer paces the endpoint's rate, halving its concurrency as well would
            # only slow it down below that rate.
            await state.limiter.release(throttled=throttled and not state.pacer.paced)

    def _redacted(self, completion: Completion) -> Completion:
        return replace(
            completion,
            text=self.redact(completion.text),
            tool_arguments=self.redact.optional(completion.tool_arguments),
            thinking=self.redact.optional(completion.thinking),
        )

    async def _post(
        self,
        endpoint: Endpoint,
        state: EndpointState,
        body: dict[str, Any],
        stream: bool,
        ticket: Ticket | None = None,
    ) -> Completion:
        assert self._session is not None, "use ChatClient as an async context manager"
        payload = {**body, "model": endpoint.model}
        if stream:
            payload["stream"] = True
            if state.stream_options_ok:
                payload["stream_options"] = {"include_usage": True}
        headers = {"Content-Type": "application/json", **self.headers}
        if endpoint.api_key:
            headers["Authorization"] = f"Bearer {endpoint.api_key}"
        url = f"{endpoint.base_url}/chat/completions"
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout_s) as deadline:
                async with self._session.post(url, json=payload, headers=headers) as response:
                    if ticket is not None:
                        state.pacer.on_response(ticket, response.status, response.headers)
                    if response.status != 200:
                        error = await status_error(response)
                        if (
                            stream
                            and response.status == 400
                            and state.stream_options_ok
                            and "stream_options" in str(error)
                        ):
                            state.stream_options_ok = False
                            raise RequestError(str(error), status=400, retryable=True)
                        raise error
                    if stream:
                        completion = await read_stream(response, started, deadline.when())
                    else:
                        completion = await read_json(response, started)
        except TimeoutError:
            raise RequestError(
                f"no complete answer within timeout_s={self.timeout_s:g}", retryable=True
            ) from None
        except aiohttp.ClientConnectorError as exc:
            raise RequestError(
                f"cannot connect to {endpoint.base_url}: {exc.os_error}", retryable=True
            ) from None
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
            raise RequestError(
                f"{CUT_STREAM}: connection broke mid-response: {type(exc).__name__}",
                retryable=True,
            ) from None
        except aiohttp.ClientError as exc:
            raise RequestError(
                f"connection error: {type(exc).__name__}: {exc}", retryable=True
            ) from None
        if completion.completion_tokens:
            state.rate.debit_tokens(completion.completion_tokens)
        if self.require_content and not has_content(completion):
            raise RequestError(
                f"{EMPTY_ANSWER}: the reply holds no text and no tool call "
                f"(finish_reason={completion.finish_reason})",
                retryable=True,
            )
        return completion


def has_content(completion: Completion) -> bool:
    """Whether a reply holds an answer: text that is not only whitespace, or a tool call."""
    return bool(completion.text.strip() or (completion.tool_arguments or "").strip())


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, RequestError) and exc.retryable


def _says_endpoint_is_down(exc: RequestError) -> bool:
    if isinstance(exc, ThinkingUnfinished):
        return False
    return exc.retryable or exc.status in (401, 403, 404) or exc.status is None


def _estimated_request_tokens(body: dict[str, Any]) -> int:
    """Prompt tokens, estimated before sending; completion tokens are debited when known."""
    chars = sum(len(str(m.get("content") or "")) for m in body.get("messages", ()))
    return chars // 4 + 1
