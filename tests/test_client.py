"""The one request path: streaming, timing, usage, limits, cache keys — over loopback."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from aiohttp import web

from raq.endpoints.client import ChatClient, Endpoint, RequestError, _AdaptiveLimiter, cache_key
from raq.testing import Behaviour, FakeOpenAIServer
from raq.testing.fake_server import reply_text

BODY = {"messages": [{"role": "user", "content": "Say something."}]}


@pytest.fixture
def fake() -> FakeOpenAIServer:
    with FakeOpenAIServer(
        {
            "slow": Behaviour(reply=reply_text("one two three four"), latency_s=0.3, ttft_s=0.1),
            "quiet": Behaviour(reply=reply_text("no usage here"), send_usage=False),
            "tool": Behaviour(reply=lambda body: {"ranking": [2, 1]}),
        }
    ) as server:
        yield server


def endpoint(server: FakeOpenAIServer, model: str, **limits: float) -> Endpoint:
    return Endpoint(name=model, base_url=server.base_url, model=model, **limits)  # type: ignore[arg-type]


async def test_stream_measures_ttft_and_latency(fake: FakeOpenAIServer) -> None:
    async with ChatClient() as client:
        completion = await client.chat(endpoint(fake, "slow"), BODY, stream=True)
    assert completion.text == "one two three four"
    assert completion.ttft_s is not None and completion.ttft_s >= 0.1
    assert completion.latency_s >= 0.3 > completion.ttft_s
    assert completion.completion_tokens == 4 and completion.prompt_tokens is not None
    assert fake.requests[-1]["stream_options"] == {"include_usage": True}


async def test_missing_usage_is_none_not_zero(fake: FakeOpenAIServer) -> None:
    async with ChatClient() as client:
        streamed = await client.chat(endpoint(fake, "quiet"), BODY, stream=True)
        plain = await client.chat(endpoint(fake, "quiet"), BODY)
    assert streamed.completion_tokens is None and plain.completion_tokens is None
    assert streamed.text == plain.text == "no usage here"


async def test_tool_call_arguments_are_returned(fake: FakeOpenAIServer) -> None:
    body = {**BODY, "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}
    async with ChatClient() as client:
        for stream in (False, True):
            completion = await client.chat(endpoint(fake, "tool"), body, stream=stream)
            assert completion.tool_arguments == '{"ranking": [2, 1]}'


async def test_requests_per_minute_is_enforced(fake: FakeOpenAIServer) -> None:
    target = endpoint(fake, "quiet", requests_per_minute=120)  # 2 per second
    started = time.monotonic()
    async with ChatClient() as client:
        await asyncio.gather(*(client.chat(target, BODY) for _ in range(6)))
    assert time.monotonic() - started >= 1.9  # 2 at once, then one every 0.5 s


async def test_unknown_model_is_not_retried(fake: FakeOpenAIServer) -> None:
    async with ChatClient(max_retries=5) as client:
        with pytest.raises(RequestError, match="HTTP 404") as info:
            await client.chat(endpoint(fake, "nope"), BODY)
    assert info.value.retryable is False
    assert fake.count("nope") == 1


async def test_adaptive_limit_halves_on_429_and_grows_back() -> None:
    limiter = _AdaptiveLimiter(8)
    await limiter.acquire()
    await limiter.release(throttled=True)
    assert limiter.limit == 4
    await limiter.acquire()
    await limiter.release(throttled=True)
    assert limiter.limit == 2
    for _ in range(2 + 3):
        await limiter.acquire()
        await limiter.release(throttled=False)
    assert limiter.limit == 4  # one step per window of `limit` successes


async def test_adaptive_limit_bounds_requests_in_flight() -> None:
    limiter = _AdaptiveLimiter(2)
    in_flight = peak = 0

    async def work() -> None:
        nonlocal in_flight, peak
        await limiter.acquire()
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        await limiter.release(throttled=False)

    await asyncio.gather(*(work() for _ in range(10)))
    assert peak == 2


def test_cache_key_ignores_the_api_key_but_not_the_request() -> None:
    a = Endpoint("a", "http://x/v1", "m", api_key="secret-1")
    b = Endpoint("a", "http://x/v1", "m", api_key="secret-2")
    assert cache_key(a, BODY) == cache_key(b, BODY)
    assert cache_key(a, BODY) != cache_key(a, {**BODY, "temperature": 0.5})
    assert cache_key(a, BODY, "repeat=1") != cache_key(a, BODY, "repeat=2")
    local = Endpoint("l", "http://127.0.0.1:5555/v1", "m", cache_url="local")
    moved = Endpoint("l", "http://127.0.0.1:6666/v1", "m", cache_url="local")
    assert cache_key(local, BODY) == cache_key(moved, BODY)


def test_events_orjson_refuses_but_json_accepts_still_parse() -> None:
    """orjson decodes responses; NaN, Infinity and huge integers (which some servers put in
    logprobs) fall back to json instead of failing the answer as malformed."""
    from raq.endpoints.client import _loads

    event = b'{"choices":[{"delta":{"content":"\xc3\xa9"},"logprob":-Infinity}],"n":NaN,"id":' + (
        b"123456789012345678901234567890}"
    )
    parsed = _loads(event)
    assert parsed["choices"][0]["delta"]["content"] == "é"
    assert parsed["choices"][0]["logprob"] == float("-inf")
    assert parsed["id"] == 123456789012345678901234567890
    with pytest.raises(ValueError):
        _loads(b'{"choices": [')


@pytest.mark.parametrize("max_retries", [0, 1, 3])
async def test_a_failing_request_is_tried_exactly_max_retries_plus_one_times(
    max_retries: int,
) -> None:
    with FakeOpenAIServer({"down": Behaviour(faults=lambda index, body: "503")}) as server:
        async with ChatClient(max_retries=max_retries, retry_base_s=0.001) as client:
            with pytest.raises(RequestError, match="HTTP 503"):
                await client.chat(endpoint(server, "down"), BODY)
            counters = client.counters()["down"]
        assert server.count("down") == max_retries + 1
    assert counters.requests == max_retries + 1
    assert counters.retries == max_retries
    assert counters.failures == 1


async def test_the_first_retry_waits_for_retry_after_then_succeeds() -> None:
    behaviour = Behaviour(reply=reply_text("fine"), faults=["429:retry-after=0.3"])
    with FakeOpenAIServer({"busy": behaviour}) as server:
        async with ChatClient(max_retries=2, retry_base_s=0.001) as client:
            started = time.monotonic()
            completion = await client.chat(endpoint(server, "busy"), BODY, stream=True)
            waited = time.monotonic() - started
            counters = client.counters()["busy"]
        assert server.count("busy") == 2
    assert completion.text == "fine"
    assert waited >= 0.3
    assert (counters.requests, counters.retries, counters.throttled) == (2, 1, 1)


async def test_a_successful_request_leaves_no_garbage_cycles(fake: FakeOpenAIServer) -> None:
    """Retry state is a reference cycle; built for every request it made the cyclic garbage
    collector, not the requests, the bottleneck of a fast run (scripts/BENCH.md)."""
    import gc

    async with ChatClient() as client:
        target = endpoint(fake, "quiet")
        await client.chat(target, BODY, stream=True)  # warm the connection pool
        gc.collect()
        gc.disable()
        try:
            for _ in range(20):
                await client.chat(target, BODY, stream=True)
            unreachable = gc.collect()
        finally:
            gc.enable()
    assert unreachable < 20  # one object per request would already be 20


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "plain"])
async def test_sequential_requests_reuse_one_connection(
    fake: FakeOpenAIServer, stream: bool
) -> None:
    """Sequential requests share one pooled connection (the case where the body ends after
    [DONE] in its own packet is pinned down below, with a server that always does that)."""
    async with ChatClient() as client:
        for _ in range(10):
            completion = await client.chat(endpoint(fake, "quiet"), BODY, stream=stream)
            assert completion.text == "no usage here"
    assert fake.connections() == 1


class _SseServer:
    """A one-route SSE server whose handler the test writes: for the stream endings the
    fake server does not produce. Counts client connections by peer address."""

    def __init__(self, handler) -> None:
        self.handler = handler
        self.peers: set[object] = set()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        self.peers.add(request.transport.get_extra_info("peername"))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await self.handler(response)
        return response

    async def __aenter__(self) -> Endpoint:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return Endpoint(name="sse", base_url=f"http://127.0.0.1:{port}/v1", model="sse")

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()


def _event(text: str, finish_reason: str | None = None) -> bytes:
    choice = {"index": 0, "delta": {"content": text}, "finish_reason": finish_reason}
    return f"data: {json.dumps({'choices': [choice]})}\n\n".encode()


async def test_the_connection_is_pooled_when_the_body_ends_after_done() -> None:
    """The end of the body comes 50 ms after [DONE], in its own packet: leaving at [DONE]
    closed the connection, so each of these requests opened a new one."""

    async def late_end(response: web.StreamResponse) -> None:
        await response.write(_event("pooled", "stop") + b"data: [DONE]\n\n")
        await asyncio.sleep(0.05)
        await response.write_eof()

    server = _SseServer(late_end)
    async with server as target, ChatClient(max_retries=0) as client:
        for _ in range(5):
            completion = await client.chat(target, BODY, stream=True)
            assert completion.text == "pooled"
            assert completion.latency_s < 0.04  # taken at [DONE], not at the body's end
    assert len(server.peers) == 1


async def test_a_stream_left_open_after_done_still_answers() -> None:
    """A server that never ends the body after [DONE] costs the connection, not the answer
    (nor a timeout), and the latency stops at [DONE]."""

    async def left_open(response: web.StreamResponse) -> None:
        await response.write(_event("still here", "stop") + b"data: [DONE]\n\n")
        await asyncio.sleep(30)

    async with _SseServer(left_open) as target, ChatClient(max_retries=0) as client:
        started = time.monotonic()
        completion = await client.chat(target, BODY, stream=True)
        took = time.monotonic() - started
    assert completion.text == "still here"
    assert completion.latency_s < 0.2
    assert took < 1.0  # the wait for the body's end is bounded (0.25 s)


async def test_waiting_for_the_body_end_never_outlasts_the_request_timeout() -> None:
    """[DONE] at 0.8 s of a 1 s timeout, body left open: the answer is kept, not turned into
    a timeout by the wait for the body's end."""

    async def late_done(response: web.StreamResponse) -> None:
        await asyncio.sleep(0.8)
        await response.write(_event("just in time", "stop") + b"data: [DONE]\n\n")
        await asyncio.sleep(30)

    async with _SseServer(late_done) as target, ChatClient(timeout_s=1.0, max_retries=0) as client:
        completion = await client.chat(target, BODY, stream=True)
    assert completion.text == "just in time"


@pytest.mark.parametrize(
    "ending",
    [b"data: [DONE]", b""],
    ids=["done-without-newline", "finish-reason-without-done"],
)
async def test_a_stream_may_end_without_a_final_newline_or_without_done(ending: bytes) -> None:
    async def ends(response: web.StreamResponse) -> None:
        await response.write(_event("all ") + _event("there", finish_reason="stop") + ending)
        await response.write_eof()

    async with _SseServer(ends) as target, ChatClient(max_retries=0) as client:
        completion = await client.chat(target, BODY, stream=True)
    assert completion.text == "all there"
    assert completion.finish_reason == "stop"


async def test_a_stream_cut_before_done_or_a_finish_reason_is_an_error() -> None:
    async def cut(response: web.StreamResponse) -> None:
        await response.write(_event("half"))
        await response.write_eof()

    async with _SseServer(cut) as target, ChatClient(max_retries=0) as client:
        with pytest.raises(RequestError, match="ended before"):
            await client.chat(target, BODY, stream=True)
