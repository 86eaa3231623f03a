"""No silent wrong answers: an interrupted, cut or empty reply is a failed answer of its own
kind, retried and never cached; an answer cut by max_tokens is kept but counted."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

import raq
from raq.endpoints.client import ChatClient, Endpoint, RequestError, _retry_after_s
from raq.store import ResponseCache
from raq.testing import Behaviour, FakeOpenAIServer
from raq.testing.fake_server import judge_by_overlap, reply_text

from .conftest import ConfigWriter, oracle

BODY = {"messages": [{"role": "user", "content": "Say something."}]}
LONG = "one two three four five six seven eight nine ten"


def _endpoint(server: FakeOpenAIServer, model: str) -> Endpoint:
    return Endpoint(name=model, base_url=server.base_url, model=model)


@pytest.mark.parametrize(
    ("fault", "kind"),
    [("done-without-finish", "incomplete_stream"), ("cut-stream", "cut_stream"),
     ("empty", "empty_answer")],
)  # fmt: skip
async def test_an_unfinished_stream_is_a_failed_answer_of_its_kind_and_never_cached(
    fault: str, kind: str, tmp_path: Path
) -> None:
    behaviour = Behaviour(reply=reply_text(LONG), faults=lambda i, b: fault)
    cache = ResponseCache(tmp_path / "cache.sqlite")
    with FakeOpenAIServer({"m": behaviour}) as server:
        async with ChatClient(max_retries=2, retry_base_s=0.001, cache=cache) as client:
            with pytest.raises(RequestError) as caught:
                await client.chat(_endpoint(server, "m"), BODY, stream=True)
            assert client.counters()["m"].retries == 2  # retried like a dropped connection
        assert server.count("m") == 3
    assert str(caught.value).startswith(f"{kind}: ")
    assert cache._conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == 0
    cache.close()


async def test_an_interrupted_stream_is_retried_until_it_is_whole() -> None:
    behaviour = Behaviour(reply=reply_text(LONG), faults=["done-without-finish", "cut-stream"])
    with FakeOpenAIServer({"m": behaviour}) as server:
        async with ChatClient(max_retries=3, retry_base_s=0.001) as client:
            completion = await client.chat(_endpoint(server, "m"), BODY, stream=True)
    assert completion.text == LONG and completion.finish_reason == "stop"


async def test_an_empty_cached_reply_from_an_older_raq_is_not_reused(tmp_path: Path) -> None:
    from raq.core.records import Completion
    from raq.endpoints.client import cache_key

    cache = ResponseCache(tmp_path / "cache.sqlite")
    with FakeOpenAIServer({"m": Behaviour(reply=reply_text("fresh"))}) as server:
        endpoint = _endpoint(server, "m")
        cache.put(cache_key(endpoint, BODY), Completion(text="", latency_s=0.1))
        async with ChatClient(max_retries=0, cache=cache) as client:
            completion = await client.chat(endpoint, BODY)
        assert server.count("m") == 1
    assert completion.text == "fresh" and not completion.cached
    cache.close()


def test_interrupted_streams_fail_the_answers_and_the_run_says_so(
    server: FakeOpenAIServer, make_config: ConfigWriter, tmp_path: Path
) -> None:
    """llama.cpp's default behaviour under concurrency, seen as a run: every answer of the
    interrupted candidate is failed and counted, none is an empty success."""
    server.set_behaviour(
        "clueless", Behaviour(reply=reply_text(LONG), faults=lambda i, b: "done-without-finish")
    )
    config = make_config(max_retries=1, retry_base_s=0.001)
    result = raq.evaluate(config, output=tmp_path / "r", limit=4, progress=False)
    entry = result.summary_json["candidates"]["clueless"]
    assert entry["failed_answers"] == 4 and entry["errors"] == {"incomplete_stream": 4}
    answers = [json.loads(line) for line in (tmp_path / "r" / "answers.jsonl").open()]
    clueless = [a for a in answers if a["candidate"] == "clueless"]
    assert all(
        a["answer"] is None and a["error"].startswith("incomplete_stream:") for a in clueless
    )


def test_an_answer_cut_by_max_tokens_is_kept_flagged_and_counted(
    server: FakeOpenAIServer, make_config: ConfigWriter, tmp_path: Path
) -> None:
    server.set_behaviour("clueless", Behaviour(reply=reply_text(LONG), faults=["length", None]))
    result = raq.evaluate(make_config(), output=tmp_path / "t", limit=2, progress=False)
    entry = result.summary_json["candidates"]["clueless"]
    assert entry["failed_answers"] == 0 and entry["truncated_answers"] == 1
    answers = [json.loads(line) for line in (tmp_path / "t" / "answers.jsonl").open()]
    truncated = [a for a in answers if a["truncated"]]
    assert [a["answer"] for a in truncated] == ["one two three four five"]
    report = (tmp_path / "t" / "report.md").read_text()
    assert "truncated" in report and "| candidate clueless | 0/2 | – | 1 |" in report
    html = (tmp_path / "t" / "report.html").read_text()
    assert "Truncated answers:</strong> clueless: 1 of 2 answers" in html


@pytest.mark.parametrize(
    ("fault", "kind"), [("cut-stream", "cut_stream"), ("empty", "empty_answer")]
)
def test_a_cut_or_empty_judge_reply_is_a_failed_judgment(
    fault: str, kind: str, server: FakeOpenAIServer, make_config: ConfigWriter, tmp_path: Path
) -> None:
    server.set_behaviour("judge", Behaviour(reply=judge_by_overlap(), faults=lambda i, b: fault))
    config = make_config(max_retries=1, retry_base_s=0.001, repeats=1)
    result = raq.evaluate(config, output=tmp_path / "j", limit=2, progress=False)
    judge = result.summary_json["judges"]["judge"]
    assert judge["failed_judgments"] == judge["judgments"] == 2
    assert judge["errors"] == {kind: 2}


def test_a_judge_reply_cut_once_is_retried_into_a_judgment(
    server: FakeOpenAIServer, make_config: ConfigWriter, tmp_path: Path
) -> None:
    server.set_behaviour("judge", Behaviour(reply=judge_by_overlap(), faults=["cut-stream"]))
    server.set_behaviour("oracle", Behaviour(reply=oracle))
    config = make_config(max_retries=2, retry_base_s=0.001, repeats=1, concurrency=1)
    result = raq.evaluate(config, output=tmp_path / "j", limit=2, progress=False)
    assert result.summary_json["judges"]["judge"]["failed_judgments"] == 0


@pytest.mark.parametrize("value", ["soon", "nan", "inf", "-5", "", "Wed, 99 Foo 2026", "1e400"])
def test_a_retry_after_that_is_no_duration_falls_back_to_the_backoff(value: str) -> None:
    assert _retry_after_s(value) is None


def test_a_retry_after_in_seconds_or_as_an_http_date_is_honoured() -> None:
    assert _retry_after_s("2.5") == 2.5
    assert _retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: now
    future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 100))
    assert 90 < (_retry_after_s(future) or 0) <= 100


@pytest.mark.parametrize("value", ["soon", "nan", "-1", "99999999"])
async def test_an_odd_retry_after_neither_crashes_nor_stalls_the_request(value: str) -> None:
    behaviour = Behaviour(reply=reply_text("fine"), faults=[f"429:retry-after={value}"])
    with FakeOpenAIServer({"busy": behaviour}) as server:
        async with ChatClient(max_retries=2, retry_base_s=0.001, retry_max_s=0.2) as client:
            started = time.monotonic()
            completion = await client.chat(_endpoint(server, "busy"), BODY, stream=True)
            assert time.monotonic() - started < 1.0  # capped at retry_max_s
    assert completion.text == "fine"
