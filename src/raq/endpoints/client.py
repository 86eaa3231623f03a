"""The one request path: pooled HTTP, streaming, retries, limits, timing and the response cache.

Every call raq makes to a model (candidate answers, judgments, generated data) goes through
``ChatClient.chat``. It speaks the OpenAI chat-completions protocol over aiohttp directly,
parsing server-sent events itself: measured on 2 cores this costs a fraction of the CPU of the
openai SDK's per-chunk pydantic parsing (see scripts/BENCH.md), so the harness is not the
bottleneck and the TTFT it measures is the server's, not the client's. A reasoning model's
thinking, in a separate field or inline, is taken out of the answer here
(raq.endpoints.thinking), so every caller gets the answer alone.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import datetime
import email.utils
import hashlib
import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp
import orjson
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_random_exponential

from raq.config import resolve_api_key
from raq.core.metrics import count_words
from raq.core.records import Completion
from raq.core.redact import Redactor
from raq.endpoints.pacing import Pacer, Ticket, pacer_key
from raq.endpoints.thinking import split_thinking

if TYPE_CHECKING:
    from raq.config import EndpointConfig
    from raq.store import ResponseCache

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529}

# What a reply that came back incomplete is, as the stable first word of its error (reports
# count errors by the text before the first colon). Each is retried like a dropped connection
# and never cached: an answer the server did not finish is not an answer.
INCOMPLETE_STREAM = "incomplete_stream"  # [DONE] without a finish_reason (an interrupted stream)
CUT_STREAM = "cut_stream"  # the body ended before [DONE] and without a finish_reason
EMPTY_ANSWER = "empty_answer"  # a finished reply with no text and no tool call


@dataclass(frozen=True)
class Endpoint:
    """A model behind an OpenAI-compatible URL, with its limits; the key is never printed."""

    name: str
    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    concurrency: int | None = None
    # What the cache and fingerprints know the endpoint as: the configured URL, which for the
    # embedded local server ("local") stays the same whatever port it gets.
    cache_url: str | None = None
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None


def endpoint_for(config: EndpointConfig, role: str, env_file: str | None) -> Endpoint:
    """The Endpoint a candidate, judge or generator config names, with its key resolved."""

    assert config.base_url and config.model
    return Endpoint(
        name=config.name,
        base_url=config.base_url,
        cache_url=config.base_url,
        model=config.model,
        api_key=resolve_api_key(config, role, env_file),
        concurrency=config.concurrency,
        requests_per_minute=config.requests_per_minute,
        tokens_per_minute=config.tokens_per_minute,
    )


class RequestError(Exception):
    """A request that failed; ``retryable`` says whether trying again could help."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.retry_after_s = retry_after_s


class EndpointDisabled(RequestError):
    """The endpoint failed too many times in a row; raq stopped calling it."""


class ThinkingUnfinished(RequestError):
    """A reasoning model's reply ended inside its thinking: cut by ``max_tokens`` while still
    thinking, or no answer after it. A failed answer of its own kind, never an empty success
    (and never cached); the endpoint works, so it does not count towards disabling it."""

    def __init__(self, message: str, completion: Completion) -> None:
        super().__init__(message)
        self.completion = completion


class _AdaptiveLimiter:
    """A concurrency limit that halves on 429 and grows back by one per window of successes."""

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self.limit = maximum
        self.in_flight = 0
        self._successes = 0
        self._changed = asyncio.Condition()

    async def acquire(self) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.in_flight < self.limit)
            self.in_flight += 1

    async def release(self, *, throttled: bool) -> None:
        async with self._changed:
            self.in_flight -= 1
            if throttled:
                self.limit = max(1, self.limit // 2)
                self._successes = 0
            elif self.limit < self.maximum:
                self._successes += 1
                if self._successes >= self.limit:
                    self.limit += 1
                    self._successes = 0
            self._changed.notify_all()


class _Bucket:
    """A token bucket refilled continuously; it holds one second's worth (at least 1)."""

    def __init__(self, per_minute: float) -> None:
        self.per_second = per_minute / 60
        self.capacity = max(1.0, self.per_second)
        self.level = self.capacity
        self.updated = time.monotonic()

    def wait_s(self, need: float) -> float:
        """Take ``need`` if available (0 returned), else how long until it will be."""
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.updated) * self.per_second)
        self.updated = now
        need = min(need, self.capacity)
        if self.level >= need:
            self.level -= need
            return 0.0
        return (need - self.level) / self.per_second


class _RateLimiter:
    """Requests and tokens per minute, client-side (tokens estimated before, debited after).

    Buckets hold one second's worth, so a limit is not broken by an opening burst even where a
    provider enforces it over short windows.
    """

    def __init__(self, requests_per_minute: float | None, tokens_per_minute: float | None) -> None:
        self.requests = _Bucket(requests_per_minute) if requests_per_minute else None
        self.tokens = _Bucket(tokens_per_minute) if tokens_per_minute else None
        self._lock = asyncio.Lock()

    async def acquire(self, tokens: int) -> None:
        if self.requests is None and self.tokens is None:
            return
        async with self._lock:
            for bucket, need in ((self.requests, 1), (self.tokens, tokens)):
                while bucket is not None and (wait := bucket.wait_s(need)) > 0:
                    await asyncio.sleep(wait)

    def debit_tokens(self, tokens: int) -> None:
        if self.tokens is not None:
            self.tokens.level -= tokens


@dataclass
class EndpointCounters:
    requests: int = 0
    cache_hits: int = 0
    retries: int = 0
    failures: int = 0
    throttled: int = 0


class _EndpointState:
    def __init__(self, endpoint: Endpoint, default_concurrency: int, pacer: Pacer) -> None:
        self.limiter = _AdaptiveLimiter(endpoint.concurrency or default_concurrency)
        self.rate = _RateLimiter(endpoint.requests_per_minute, endpoint.tokens_per_minute)
        self.pacer = pacer  # shared by every endpoint on the same URL and key
        self.consecutive_failures = 0
        self.disabled_reason: str | None = None
        self.stream_options_ok = True
        self.counters = EndpointCounters()


def cache_key(endpoint: Endpoint, body: dict[str, Any], salt: str = "") -> str:
    """A hash of everything that determines a response (never the key itself)."""
    url = endpoint.cache_url or endpoint.base_url
    material = {"base_url": url, "model": endpoint.model, "body": body, "salt": salt}
    encoded = json.dumps(material, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(encoded.encode()).hexdigest()


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
        self._retry_wait = wait_random_exponential(multiplier=retry_base_s, max=retry_max_s)
        self._retry_max_s = retry_max_s
        self._global = asyncio.Semaphore(concurrency)
        self._states: dict[str, _EndpointState] = {}
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
        if self._session is not None:
            await self._session.close()
            self._session = None

    def counters(self) -> dict[str, EndpointCounters]:
        return {name: state.counters for name, state in self._states.items()}

    def disabled(self) -> dict[str, str]:
        return {n: s.disabled_reason for n, s in self._states.items() if s.disabled_reason}

    def _state(self, endpoint: Endpoint) -> _EndpointState:
        state = self._states.get(endpoint.name)
        if state is None:
            pacer = self._pacers.setdefault(pacer_key(endpoint.base_url, endpoint.api_key), Pacer())
            state = self._states[endpoint.name] = _EndpointState(endpoint, self.concurrency, pacer)
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
                hit = _separated(hit.text, None, hit)
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
        self, endpoint: Endpoint, state: _EndpointState, body: dict[str, Any], stream: bool
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
        return self._retry_wait(retry_state)

    async def _once(
        self, endpoint: Endpoint, state: _EndpointState, body: dict[str, Any], stream: bool
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
        state: _EndpointState,
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
                        error = await _status_error(response)
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
                        completion = await _read_stream(response, started, deadline.when())
                    else:
                        completion = await _read_json(response, started)
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


async def _status_error(response: aiohttp.ClientResponse) -> RequestError:
    status = response.status
    try:
        text = await response.text()
    except (aiohttp.ClientError, UnicodeDecodeError):
        text = ""
    message = text.strip()[:300]
    try:
        data = json.loads(text)
        error = data.get("error", data) if isinstance(data, dict) else data
        if isinstance(error, dict):
            message = str(error.get("message") or error.get("detail") or error)[:300]
        elif isinstance(error, str):
            message = error[:300]
    except ValueError:
        pass
    retry_after = _retry_after_s(response.headers.get("Retry-After"))
    # Some servers (llama.cpp) answer a request they cannot validate with 500: retrying it
    # only repeats the refusal.
    refused_request = status == 500 and any(m in message for m in _VALIDATION_MARKERS)
    return RequestError(
        f"HTTP {status}: {message}" if message else f"HTTP {status}",
        status=status,
        retryable=status in RETRYABLE_STATUS and not refused_request,
        retry_after_s=retry_after,
    )


_VALIDATION_MARKERS = ("validation error", "literal_error", "Input should be")


def _retry_after_s(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), or None to use the
    normal backoff: servers send "soon", "nan", negative or unparseable values too."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if parsed.tzinfo is None:  # "-0000": UTC by RFC 5322, not local time
            parsed = parsed.replace(tzinfo=datetime.UTC)
        return max(0.0, parsed.timestamp() - time.time())
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _loads(data: bytes) -> Any:
    """Parse a response body or stream event. orjson takes about a quarter of json's CPU, and a
    streamed answer is dozens of events; what orjson refuses but json accepts (NaN, Infinity,
    integers beyond 64 bits) still parses. ValueError when neither can."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


async def _read_json(response: aiohttp.ClientResponse, started: float) -> Completion:
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
    return _separated(completion.text, _reasoning_field(message), completion)


async def _read_stream(
    response: aiohttp.ClientResponse, started: float, deadline: float | None = None
) -> Completion:
    """Parse a streamed answer; ``deadline`` (loop time) is the request's own timeout."""
    content_type = response.headers.get("Content-Type", "")
    if "text/event-stream" not in content_type:
        if "json" in content_type:  # a server that ignores stream=true
            return await _read_json(response, started)
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
        answer_ttft_s=ttft,  # unless thinking came first (_separated)
    )
    return _separated(
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


def _separated(
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


PREFLIGHT_HEADER = "X-Raq-Preflight"


async def preflight(
    endpoint: Endpoint, body: dict[str, Any], *, timeout_s: float, secrets: Iterable[str | None]
) -> str | None:
    """None when the endpoint answers a real one-token chat request of the run's own kind,
    else a sentence saying why not (the server's text redacted).

    Listing /models proves little: a gateway answers a wrong key there, and on a chat request,
    with 400; a wrong model or base_url suffix only shows on a chat request. A server error
    that retrying can cure (429, 5xx) does not stop the run: its own retries deal with it.
    """
    async with ChatClient(
        timeout_s=timeout_s,
        max_retries=0,
        secrets=secrets,
        headers={PREFLIGHT_HEADER: "1"},
        require_content=False,
    ) as client:
        for attempt in range(2):
            try:
                await client.chat(endpoint, body)
                return None
            except ThinkingUnfinished:
                return None  # a reasoning model spent its one token thinking: it answered
            except RequestError as exc:
                if exc.status is not None and exc.retryable:
                    return None
                if str(exc).startswith((CUT_STREAM, INCOMPLETE_STREAM, EMPTY_ANSWER)):
                    return None  # it answered, then broke off (llama.cpp under load): reachable
                if attempt == 0 and exc.status == 400 and "max_tokens" in str(exc):
                    body = {k: v for k, v in body.items() if k != "max_tokens"}
                    continue  # a model that takes only max_completion_tokens
                if exc.status is None and "cannot connect" in str(exc):
                    return f"is unreachable ({exc})"
                if exc.status is None:
                    return f"did not answer a one-token chat request ({exc})"
                if exc.status in (401, 403):
                    return f"rejected the API key ({exc})"
                return f"refused a one-token chat request ({exc})"
    return None  # pragma: no cover
