"""Pacing to a rate limit: learned from 429s or from rate-limit headers, over loopback."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import aiohttp
import pytest

from raq.endpoints.client import ChatClient
from raq.endpoints.endpoint import Endpoint
from raq.endpoints.failures import RequestError
from raq.endpoints.pacing import Pacer, bucket_from_headers, pacer_key, parse_duration_s
from raq.testing import Behaviour, FakeOpenAIServer
from raq.testing.fake_server import RateLimit


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("20ms", 0.02),
        ("1h2m3.5s", 3723.5),
        ("250us", 0.00025),
        ("0.5", 0.5),
        ("7", 7.0),
        ("", None),
        ("soon", None),
        ("5m junk", None),
        ("-1", None),
    ],
)
def test_reset_headers_parse_as_go_durations_or_seconds(text: str, seconds: float | None) -> None:
    assert parse_duration_s(text) == (pytest.approx(seconds) if seconds is not None else None)


def test_header_rate_is_a_lower_bound_of_the_refill() -> None:
    """OpenAI's example: 60 a minute, 59 left, full again in 1s → 1 a second refilled; the
    rounded-down remaining makes (limit − remaining − 1) / reset the safe bound."""
    headers = {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "40",
        "x-ratelimit-reset-requests": "20s",
    }
    bucket = bucket_from_headers(headers, "requests")
    assert bucket is not None
    assert bucket.rate_lower_bound() == pytest.approx(19 / 20)
    assert bucket_from_headers(headers, "tokens") is None
    assert bucket_from_headers({**headers, "x-ratelimit-reset-requests": "x"}, "requests") is None


def test_one_pacer_per_url_and_key_never_the_key_itself() -> None:
    a = pacer_key("http://h:1/v1/", "secret-one")
    assert a == pacer_key("HTTP://h:1/v1", "secret-one")
    assert a != pacer_key("http://h:1/v1", "secret-two")
    assert "secret-one" not in repr(a)


async def test_until_the_first_window_is_all_accepted_only_it_is_sent() -> None:
    """Answers that come back before a refusal of the same window do not open the next one:
    a server answering at once returns its 200s before the 429s of the requests behind them,
    and the requests those answers released would all meet the empty bucket."""
    now = [0.0]
    pacer = Pacer(initial_window=3, clock=lambda: now[0])
    tickets = [await pacer.before_request() for _ in range(3)]
    fourth = asyncio.create_task(pacer.before_request())
    await asyncio.sleep(0.12)  # the window doubles on the pacer's clock, which stands still
    assert not fourth.done()
    pacer.on_response(tickets[0], 200, {})
    pacer.on_response(tickets[1], 200, {})
    await asyncio.sleep(0.05)
    assert not fourth.done()  # the third is not answered yet: it may be refused
    pacer.on_response(tickets[2], 200, {})
    ticket = await asyncio.wait_for(fourth, 1)
    assert ticket.refused is None and tickets[0].refused is False
    assert not pacer.paced  # a success teaches no limit
    # The next window is twice as large: the fourth and five more, then a wait.
    more = [await asyncio.wait_for(pacer.before_request(), 1) for _ in range(5)]
    waiting = asyncio.create_task(pacer.before_request())
    await asyncio.sleep(0.05)
    assert not waiting.done()
    for t in [ticket, *more]:
        pacer.on_response(t, 200, {})
    await asyncio.wait_for(waiting, 1)


async def test_a_refusal_in_the_first_window_paces_the_rest() -> None:
    now = [0.0]
    pacer = Pacer(initial_window=4, clock=lambda: now[0])
    tickets = [await pacer.before_request() for _ in range(4)]
    now[0] = 0.001
    for t in tickets[:3]:
        pacer.on_response(t, 200, {})
    pacer.on_response(tickets[3], 429, {"Retry-After": "1"})
    assert pacer.paced
    assert pacer.requests_per_minute == pytest.approx(3 * 60)  # the 3 accepted in that second
    # The bucket was empty when the refusal left: the next request waits one interval.
    fifth = asyncio.create_task(pacer.before_request())
    await asyncio.sleep(0.02)
    assert not fifth.done()
    now[0] = 0.001 + 1 / 3
    await asyncio.wait_for(fifth, 1)


async def test_refusals_of_requests_sent_before_pacing_do_not_give_the_endpoint_up() -> None:
    """A burst sent before the first refusal meets an empty bucket and comes back refused
    after pacing has begun; that is not an endpoint refusing everything."""
    now = [0.0]
    pacer = Pacer(initial_window=16, clock=lambda: now[0])
    first = await pacer.before_request()
    now[0] = 0.001
    burst = [await pacer.before_request() for _ in range(15)]
    now[0] = 0.002
    pacer.on_response(first, 200, {})
    for ticket in burst:
        pacer.on_response(ticket, 429, {"Retry-After": "1"})
    assert pacer.paced and pacer.refused == 15


@pytest.mark.parametrize("refusal_time_s", [None, 0.02], ids=["not-known", "known"])
async def test_without_any_answer_the_initial_window_doubles_as_time_passes(
    refusal_time_s: float | None,
) -> None:
    """A request that fails without a response never answers: the window must not wait on it.
    It doubles every 0.1 s, or as often as a refusal could come back once that is known: a
    server that sends its headers with the first token is silent for an answer's time, while
    a refusal would have come within round trips."""
    step = refusal_time_s or 0.1
    now = [0.0]
    pacer = Pacer(initial_window=2, clock=lambda: now[0])
    if refusal_time_s is not None:
        pacer.learn_refusal_time(refusal_time_s)
    assert pacer.window_doubling_s == step
    for _ in range(2):
        await pacer.before_request()
    waiting = [asyncio.create_task(pacer.before_request()) for _ in range(6)]
    await asyncio.sleep(0.02)
    assert not any(task.done() for task in waiting)
    now[0] = step + 0.001  # one doubling: 4 in all
    await asyncio.sleep(step + 0.05)  # the waiters' own timers are on the real clock
    assert sum(task.done() for task in waiting) == 2
    now[0] = 2 * step + 0.001  # two: 8 in all
    await asyncio.wait_for(asyncio.gather(*waiting), 1)


async def test_requests_sent_as_time_passed_do_not_hold_back_the_next_window() -> None:
    """A server slower than the window's doubling: the first window's answers open the next
    one even while the requests the doubling let out are still in flight (waiting for those
    cost a whole answer time at the start of every run against such a server)."""
    now = [0.0]
    pacer = Pacer(initial_window=2, clock=lambda: now[0])
    first = [await pacer.before_request() for _ in range(2)]
    now[0] = 0.101  # one doubling: 4 in all
    second = [await asyncio.wait_for(pacer.before_request(), 1) for _ in range(2)]
    waiting = asyncio.create_task(pacer.before_request())
    await asyncio.sleep(0.02)
    assert not waiting.done()
    for ticket in first:
        pacer.on_response(ticket, 200, {})
    # The first window is accepted: the next is twice as large again, on top of the time's
    # doubling (2 + 2 * 2**2 = 10 in all), though the second pair has not answered yet.
    await asyncio.wait_for(waiting, 1)
    more = [await asyncio.wait_for(pacer.before_request(), 1) for _ in range(5)]
    assert len(second) + len(more) + 3 == pacer.sent == 10
    blocked = asyncio.create_task(pacer.before_request())
    await asyncio.sleep(0.02)
    assert not blocked.done()
    blocked.cancel()


async def _ask_all(
    server: FakeOpenAIServer, n: int, concurrency: int, api_key: str | None = None
) -> tuple[ChatClient, list[Endpoint], int]:
    """n distinct questions over two models on one server (one identity); failures counted."""
    endpoints = [
        Endpoint(name=m, base_url=server.base_url, model=m, api_key=api_key) for m in ("a", "b")
    ]
    client = ChatClient(concurrency=concurrency, max_retries=6, retry_max_s=2)
    failed = 0
    questions = iter(range(n))

    async def worker() -> None:
        nonlocal failed
        for i in questions:
            body = {"messages": [{"role": "user", "content": f"question {i}"}]}
            try:
                await client.chat(endpoints[i % 2], body, stream=True)
            except RequestError:
                failed += 1

    async with client:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return client, endpoints, failed


def _counting_server(
    limit: RateLimit | None, latency_s: float = 0.0
) -> tuple[FakeOpenAIServer, Counter[str]]:
    """A server whose reply counts each question it answered (refused requests never reach
    the reply)."""
    answered: Counter[str] = Counter()

    def reply(body: dict[str, Any]) -> str:
        answered[body["messages"][-1]["content"]] += 1
        return "an answer"

    behaviour = Behaviour(reply=reply, latency_s=latency_s)
    server = FakeOpenAIServer(default=behaviour, rate_limit=limit, log_requests=False)
    return server, answered


@pytest.mark.parametrize(
    ("headers", "latency_s"),
    [(False, 0.1), (True, 0.1), (False, 0.0), (True, 0.0)],
    ids=["429s-only", "ratelimit-headers", "429s-only-instant", "ratelimit-headers-instant"],
)
async def test_pacing_learns_the_limit_and_keeps_refusals_few(
    headers: bool, latency_s: float
) -> None:
    """The issue's scenario — 20 requests/s, bucket of 5, 32 workers, no rate in the config:
    raq converges to the limit, the server refuses few requests, and every question is
    answered exactly once. Answers take 0.1 s, as in the bench's rate-limit scenario, or
    come at once, as a hosted endpoint's 429s do: the pacer must not need the latency."""
    limit = RateLimit(20, 5, headers=headers)
    n = 240
    server, answered = _counting_server(limit, latency_s=latency_s)
    with server:
        client, _, failed = await _ask_all(server, n, concurrency=32)
    assert failed == 0
    assert answered == Counter({f"question {i}": 1 for i in range(n)})
    assert limit.accepted == n
    refused = limit.refused / (limit.accepted + limit.refused)
    assert refused < (0.05 if headers else 0.15), f"{limit.refused} of {n} refused"
    [pacer] = client._pacers.values()  # both models share the server's one limit
    assert pacer.requests_per_minute is not None
    assert 0.7 * 20 * 60 <= pacer.requests_per_minute <= 1.3 * 20 * 60  # it probes above
    counters = client.counters()
    assert sum(c.throttled for c in counters.values()) == limit.refused
    assert sum(c.requests for c in counters.values()) == limit.accepted + limit.refused


async def test_without_a_limit_nothing_is_paced() -> None:
    server, answered = _counting_server(None)
    with server:
        client, _, failed = await _ask_all(server, 200, concurrency=32)
    assert failed == 0 and sum(answered.values()) == 200
    [pacer] = client._pacers.values()
    assert not pacer.paced and pacer.requests_per_minute is None and pacer.refused == 0


async def test_different_keys_are_paced_apart() -> None:
    with FakeOpenAIServer() as server:
        body = {"messages": [{"role": "user", "content": "hi"}]}
        async with ChatClient() as client:
            for name, key in (("a", "key-1"), ("b", "key-1"), ("c", "key-2")):
                target = Endpoint(name=name, base_url=server.base_url, model="m", api_key=key)
                await client.chat(target, body)
            assert len(client._pacers) == 2


async def test_fake_rate_limit_refuses_with_retry_after_and_headers() -> None:
    limit = RateLimit(2, 2, headers=True)
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    with FakeOpenAIServer(rate_limit=limit) as server:
        async with aiohttp.ClientSession() as session:
            answers = []
            for _ in range(3):
                async with session.post(f"{server.base_url}/chat/completions", json=body) as r:
                    answers.append((r.status, dict(r.headers)))
    assert [status for status, _ in answers] == [200, 200, 429]
    first, refused = answers[0][1], answers[2][1]
    assert first["x-ratelimit-limit-requests"] == "2"
    assert first["x-ratelimit-remaining-requests"] == "1"
    assert first["x-ratelimit-reset-requests"].endswith("ms")
    assert refused["Retry-After"] == "1"  # whole seconds, rounded up
    assert refused["x-ratelimit-remaining-requests"] == "0"
    assert (limit.accepted, limit.refused) == (2, 1)
    assert server.count() == 3


async def test_an_endpoint_refusing_everything_still_fails_its_requests_promptly() -> None:
    """A spent quota is not a rate to pace to: the requests fail after their retries, as
    before, instead of waiting ever longer for a pace that never gets an answer."""
    with FakeOpenAIServer({"m": Behaviour(faults=lambda index, body: "429")}) as server:
        target = Endpoint(name="m", base_url=server.base_url, model="m")
        body = {"messages": [{"role": "user", "content": "hi"}]}
        async with ChatClient(concurrency=8, max_retries=3, retry_base_s=0.001) as client:
            outcomes = await asyncio.wait_for(
                asyncio.gather(
                    *(client.chat(target, body) for _ in range(24)), return_exceptions=True
                ),
                timeout=60,
            )
        assert all(isinstance(o, RequestError) for o in outcomes)  # 429, then disabled
        [pacer] = client._pacers.values()
        assert not pacer.paced


async def test_a_request_cancelled_as_the_window_opens_stays_cancelled() -> None:
    """Ctrl-C cancels every waiting request; one cancelled in the same step as the answer that
    opens the window must end cancelled (Python 3.11's asyncio.wait_for returned the answer
    instead, and that worker went on asking: a run that ignored Ctrl-C)."""
    pacer = Pacer(initial_window=1, clock=lambda: 0.0)
    first = await pacer.before_request()
    waiting = asyncio.create_task(pacer.before_request())
    await asyncio.sleep(0.01)
    assert not waiting.done()  # the window of one is taken
    pacer.on_response(first, 200, {})
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting


@pytest.mark.parametrize(("told", "doubling_s"), [(0.0001, 0.01), (0.03, 0.03), (5.0, 0.1)])
def test_the_window_doubles_neither_faster_than_10_ms_nor_slower_than_100(
    told: float, doubling_s: float
) -> None:
    pacer = Pacer()
    pacer.learn_refusal_time(told)
    assert pacer.window_doubling_s == doubling_s


async def test_a_round_trip_learned_late_lets_out_one_doubling_not_a_burst() -> None:
    """Learned 50 ms after the first request, a 10 ms doubling must not count the time
    already passed as five doublings (a window of 64 at once)."""
    now = [0.0]
    pacer = Pacer(initial_window=2, clock=lambda: now[0])
    for _ in range(2):
        await pacer.before_request()
    waiting = [asyncio.create_task(pacer.before_request()) for _ in range(10)]
    now[0] = 0.05
    pacer.learn_refusal_time(0.01)
    await asyncio.sleep(0.05)
    assert not any(task.done() for task in waiting)
    now[0] = 0.061
    await asyncio.sleep(0.05)
    assert sum(task.done() for task in waiting) == 2  # 4 in all
    for task in waiting:
        task.cancel()


async def test_the_round_trip_is_measured_at_the_first_request_and_stopped_at_close() -> None:
    measured = asyncio.Event()

    async def never_answers() -> float | None:
        measured.set()
        await asyncio.sleep(3600)
        return None

    pacer = Pacer(refusal_time=never_answers)
    await asyncio.sleep(0.01)
    assert not measured.is_set()  # nothing sent, nothing measured
    await pacer.before_request()
    await asyncio.wait_for(measured.wait(), 1)
    await pacer.aclose()
    assert pacer.window_doubling_s == 0.1  # nothing learned


async def test_a_failed_round_trip_measure_leaves_the_slow_doubling() -> None:
    async def broken() -> float | None:
        raise RuntimeError("no network here")

    pacer = Pacer(refusal_time=broken)
    await pacer.before_request()
    await asyncio.sleep(0.01)
    assert pacer.window_doubling_s == 0.1
    # Swallowed, not left in the task for asyncio to report as never retrieved.
    task = pacer._refusal_time_task
    assert task is not None and task.done() and task.exception() is None
    await pacer.aclose()


async def test_a_client_learns_a_loopback_endpoints_round_trip() -> None:
    """On loopback a refusal could come within milliseconds: the client's pacer doubles its
    window at the fastest allowed pace instead of every 0.1 s."""
    with FakeOpenAIServer() as server:
        target = Endpoint(name="a", base_url=server.base_url, model="m")
        body = {"messages": [{"role": "user", "content": "hi"}]}
        async with ChatClient() as client:
            await client.chat(target, body)
            [pacer] = client._pacers.values()
            for _ in range(100):
                if pacer.window_doubling_s < 0.1:
                    break
                await asyncio.sleep(0.01)
            assert pacer.window_doubling_s < 0.1
