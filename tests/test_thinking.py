"""Reasoning models: the thinking is read in every form servers send it, kept apart from the
answer, timed, counted, and a reply that ends inside it is a failure — as candidate and judge,
over loopback against the fake server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

import raq
from raq.core.metrics import count_words
from raq.core.records import Completion
from raq.endpoints.client import ChatClient, Endpoint, ThinkingUnfinished, cache_key
from raq.endpoints.thinking import split_thinking
from raq.store import ResponseCache
from raq.testing import Behaviour, FakeOpenAIServer
from raq.testing.fake_server import THINKING_FORMS, judge_by_overlap, reply_text

from .conftest import clueless, oracle

BODY = {"messages": [{"role": "user", "content": "What is the secret?"}]}
THOUGHT = "Let me think about the secret word carefully before I answer it."
# What a thinking judge thinks: a draft of the worst possible ranking (a valid permutation,
# so a parser that read the thinking would take it), then second thoughts.


def decoy(body: dict[str, Any]) -> str:
    right = judge_by_overlap()(body)["ranking"]  # type: ignore[index]
    return (
        f'Draft: {{"ranking": {json.dumps(right[::-1])}}} no wait, let me compare the '
        "answers with the truth again."
    )


# --- the parser's contract ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "answer", "thinking"),
    [
        ("<think>weigh it</think>\n\nThe answer.", "The answer.", "weigh it"),
        ("weigh it</think>The answer.", "The answer.", "weigh it"),  # DeepSeek-R1, no <think>
        ("◁think▷weigh it◁/think▷The answer.", "The answer.", "weigh it"),  # Kimi
        (
            "<|channel|>analysis<|message|>weigh it<|end|><|start|>assistant<|channel|>final"
            "<|message|>The answer.<|return|>",
            "The answer.",
            "weigh it",
        ),
        (
            "<|channel|>analysis<|message|>weigh it<|end|><|start|>assistant<|channel|>final "
            "<|constrain|>json<|message|>{}",
            "{}",
            "weigh it",
        ),
        ("<think>\n\n</think>\n\nThe answer.", "The answer.", None),  # Qwen3, thinking off
        ("<|channel|>final<|message|>The answer.<|return|>", "The answer.", None),
        ("  The answer.  ", "The answer.", None),
    ],
)
def test_inline_thinking_is_split_from_the_answer(
    content: str, answer: str, thinking: str | None
) -> None:
    split = split_thinking(content)
    assert (split.answer, split.thinking, split.unfinished) == (answer, thinking, False)
    assert content[split.answer_offset :].startswith(answer)


def test_a_tag_mentioned_inside_an_answer_is_left_alone() -> None:
    content = "HTML-like tags such as <think> and </think> mark a model's reasoning."
    split = split_thinking(content)
    assert split.answer == content and split.thinking is None


@pytest.mark.parametrize(
    "content",
    [
        "<think>still weighing it",
        "◁think▷still weighing it",
        "<|channel|>analysis<|message|>still weighing it",
        "<think>",
    ],
)
def test_content_that_ends_inside_its_thinking_is_unfinished(content: str) -> None:
    split = split_thinking(content)
    assert split.unfinished and split.answer == ""


def test_a_separate_field_and_inline_tags_are_both_thinking() -> None:
    split = split_thinking("<think>second</think>The answer.", "first")
    assert split.thinking == "first\nsecond" and split.answer == "The answer."


# --- the client, over loopback -----------------------------------------------------------------


def thinker(form: str, reply: str = "The secret is word01.", **options: Any) -> Behaviour:
    return Behaviour(reply=reply_text(reply), thinking=THOUGHT, thinking_form=form, **options)


@pytest.fixture
def thinkers() -> FakeOpenAIServer:
    behaviours = {form: thinker(form, tokens_per_s=400.0) for form in THINKING_FORMS}
    behaviours["plain"] = Behaviour(reply=reply_text("The secret is word01."), tokens_per_s=400.0)
    behaviours["unreported"] = thinker("reasoning", send_reasoning_tokens=False)
    with FakeOpenAIServer(behaviours) as server:
        yield server


def endpoint(server: FakeOpenAIServer, model: str) -> Endpoint:
    return Endpoint(name=model, base_url=server.base_url, model=model)


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("form", sorted(THINKING_FORMS))
async def test_client_separates_thinking_in_every_form(
    thinkers: FakeOpenAIServer, form: str, stream: bool
) -> None:
    async with ChatClient() as client:
        completion = await client.chat(endpoint(thinkers, form), BODY, stream=stream)
    assert completion.text == "The secret is word01."
    assert completion.thinking == THOUGHT.strip()
    assert completion.reasoning_tokens is not None and completion.reasoning_tokens >= 12
    if stream:
        assert completion.ttft_s is not None and completion.answer_ttft_s is not None
        assert completion.answer_ttft_s > completion.ttft_s, "the answer comes after thinking"
    else:
        assert completion.ttft_s is None and completion.answer_ttft_s is None


@pytest.mark.parametrize("stream", [True, False])
async def test_an_empty_thinking_block_is_taken_out_of_the_answer(stream: bool) -> None:
    """Qwen3 with enable_thinking: false still opens and closes an empty block."""
    empty = Behaviour(reply=reply_text("The answer."), thinking="", thinking_form="think_tags")
    with FakeOpenAIServer({"qwen3": empty}) as server:
        async with ChatClient() as client:
            completion = await client.chat(endpoint(server, "qwen3"), BODY, stream=stream)
    assert (completion.text, completion.thinking) == ("The answer.", None)
    assert completion.answer_ttft_s == completion.ttft_s


async def test_a_reply_without_thinking_has_its_first_token_as_first_answer_token(
    thinkers: FakeOpenAIServer,
) -> None:
    async with ChatClient() as client:
        completion = await client.chat(endpoint(thinkers, "plain"), BODY, stream=True)
    assert completion.thinking is None and completion.answer_ttft_s == completion.ttft_s


# Without its opening tag, thinking cut before "</think>" cannot be told from an answer cut by
# max_tokens: the content holds no marker at all (README, "Reasoning models").
CUT_DETECTABLE = sorted(THINKING_FORMS - {"think_close_only"})


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("form", CUT_DETECTABLE)
async def test_thinking_cut_by_max_tokens_is_a_failure_and_never_cached(
    thinkers: FakeOpenAIServer, tmp_path: Path, form: str, stream: bool
) -> None:
    body = {**BODY, "max_tokens": 5}
    cache = ResponseCache(tmp_path / "cache.sqlite")
    async with ChatClient(cache=cache) as client:
        for _ in range(2):
            with pytest.raises(ThinkingUnfinished, match=r"^thinking_unfinished: max_tokens"):
                await client.chat(endpoint(thinkers, form), body, stream=stream)
        assert client.disabled() == {}
    assert thinkers.count(form) == 2, "the failure was not served from the cache"
    cache.close()


async def test_a_response_cached_before_thinking_was_read_is_split_when_served(
    thinkers: FakeOpenAIServer, tmp_path: Path
) -> None:
    cache = ResponseCache(tmp_path / "cache.sqlite")
    plain = endpoint(thinkers, "plain")
    cache.put(cache_key(plain, BODY), Completion(text="<think>hmm</think>Old answer.", latency_s=1))
    async with ChatClient(cache=cache) as client:
        completion = await client.chat(plain, BODY)
    assert (completion.text, completion.thinking, completion.cached) == ("Old answer.", "hmm", True)
    assert thinkers.count() == 0
    cache.close()


def test_the_fake_server_sends_thinking_as_real_servers_do(thinkers: FakeOpenAIServer) -> None:
    """vLLM's shapes: the thinking in its own field, no content when max_tokens cut it in the
    thinking, finish_reason "length", and reasoning_tokens in the usage details."""
    import urllib.request

    def post(model: str, **extra: Any) -> dict[str, Any]:
        data = json.dumps({"model": model, **BODY, **extra}).encode()
        request = urllib.request.Request(
            f"{thinkers.base_url}/chat/completions", data=data,
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    whole = post("reasoning_content")
    message = whole["choices"][0]["message"]
    assert message["reasoning_content"] == THOUGHT and message["content"] == "The secret is word01."
    assert whole["usage"]["completion_tokens_details"] == {"reasoning_tokens": 12}
    assert whole["usage"]["completion_tokens"] == 12 + 4
    cut = post("reasoning", max_tokens=5)
    assert cut["choices"][0]["finish_reason"] == "length"
    assert cut["choices"][0]["message"]["content"] is None
    assert cut["choices"][0]["message"]["reasoning"] == "Let me think about the "
    inline = post("think_close_only")["choices"][0]["message"]
    assert inline["content"] == f"{THOUGHT}</think>The secret is word01."


def test_the_fake_server_refuses_an_unknown_thinking_form() -> None:
    with pytest.raises(ValueError, match="unknown thinking_form 'think'"):
        Behaviour(thinking="hmm", thinking_form="think")


# --- whole runs: a thinking candidate ----------------------------------------------------------


def run_config(server: FakeOpenAIServer, qa_file: Path, **top: Any) -> dict[str, Any]:
    return {
        "name": "thinking",
        "seed": 1,
        "dataset": {"path": str(qa_file), "limit": 4},
        "candidates": [
            {"name": "thinker", "base_url": server.base_url, "model": "thinker"},
            {"name": "clueless", "base_url": server.base_url, "model": "clueless"},
        ],
        "judges": [{"name": "judge", "base_url": server.base_url, "model": "judge"}],
        "repeats": 1,
        "cache": {"enabled": False},
        "env_file": None,
        **top,
    }


def evaluate(tmp_path: Path, config: dict[str, Any], name: str = "run") -> raq.RunResult:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return raq.evaluate(path, output=tmp_path / name, progress=False)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.open(encoding="utf-8")]


def judge_prompts(server: FakeOpenAIServer) -> str:
    return "\n".join(
        json.dumps(body["messages"]) for body in server.requests if body["model"] == "judge"
    )


def oracle_thinking(body: dict[str, Any]) -> str:
    return f"{THOUGHT} It might be word99, but the context says otherwise."


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("form", sorted(THINKING_FORMS))
def test_a_thinking_candidate_is_judged_and_measured_on_its_answer_alone(
    tmp_path: Path, qa_file: Path, form: str, stream: bool
) -> None:
    behaviours = {
        "thinker": Behaviour(
            reply=oracle, thinking=oracle_thinking, thinking_form=form, tokens_per_s=2000.0
        ),
        "clueless": Behaviour(reply=clueless),
        "judge": Behaviour(reply=judge_by_overlap()),
    }
    with FakeOpenAIServer(behaviours) as server:
        config = run_config(server, qa_file)
        config["candidates"][0]["stream"] = stream
        result = evaluate(tmp_path, config)
        prompts = judge_prompts(server)
    assert "word99" not in prompts and "think" not in prompts.lower(), "judge saw the thinking"
    rows = {r["question_id"]: r for r in read_jsonl(tmp_path / "run" / "answers.jsonl")}
    thought = [r for r in rows.values() if r["candidate"] == "thinker"]
    assert all(r["error"] is None for r in thought)
    for row in thought:
        assert row["answer"].startswith("The secret word is word")
        assert row["words"] == 5, "answer words are the answer's"
        assert "word99" in row["thinking"] and row["thinking_words"] == 21
        assert row["thinking_tokens"] >= 21 and not row["thinking_tokens_estimated"]
        assert row["completion_tokens"] > row["thinking_tokens"]
        if stream:
            assert row["answer_ttft_s"] > row["ttft_s"]
    summary = result.summary_json["candidates"]
    assert summary["thinker"]["mean_rank"] < summary["clueless"]["mean_rank"]
    assert summary["thinker"]["answer_words"] == 5
    assert summary["thinker"]["thinking"]["answers_with_thinking"] == 4
    assert summary["clueless"]["thinking"]["answers_with_thinking"] == 0
    if stream:
        assert summary["thinker"]["thinking"]["thinking_share_of_latency"]["n"] == 4
    frame = result.answer_metrics
    assert set(frame.loc[frame.candidate == "thinker", "thinking_words"]) == {21}
    for report in ("report.md", "report.html"):
        assert "Thinking" in (tmp_path / "run" / report).read_text(encoding="utf-8")


def test_the_thinking_section_is_shown_only_when_a_candidate_thought(
    make_config: Any, tmp_path: Path
) -> None:
    raq.evaluate(make_config(), output=tmp_path / "plain", limit=3, repeats=1, progress=False)
    assert "## Thinking" not in (tmp_path / "plain" / "report.md").read_text()
    assert "<h2>Thinking</h2>" not in (tmp_path / "plain" / "report.html").read_text()


def test_store_thinking_off_keeps_the_text_out_but_counts_it(tmp_path: Path, qa_file: Path) -> None:
    behaviours = {
        "thinker": Behaviour(reply=oracle, thinking=oracle_thinking, send_reasoning_tokens=False),
        "clueless": Behaviour(reply=clueless),
        "judge": Behaviour(reply=judge_by_overlap()),
    }
    with FakeOpenAIServer(behaviours) as server:
        evaluate(tmp_path, run_config(server, qa_file, store_thinking=False))
    rows = [
        r for r in read_jsonl(tmp_path / "run" / "answers.jsonl") if r["candidate"] == "thinker"
    ]
    assert all(r["thinking"] is None and r["thinking_words"] == 21 for r in rows)
    assert all(r["thinking_tokens"] == 27 and r["thinking_tokens_estimated"] for r in rows)
    store_text = (tmp_path / "run" / "raq.sqlite").read_bytes()
    assert b"word99" not in store_text


def test_store_thinking_per_candidate_overrides_the_run(tmp_path: Path, qa_file: Path) -> None:
    behaviours = {
        "thinker": Behaviour(reply=oracle, thinking=oracle_thinking),
        "clueless": Behaviour(reply=clueless, thinking="Hmm, no idea at all."),
        "judge": Behaviour(reply=judge_by_overlap()),
    }
    with FakeOpenAIServer(behaviours) as server:
        config = run_config(server, qa_file, store_thinking=False)
        config["candidates"][1]["store_thinking"] = True
        result = evaluate(tmp_path, config)
    rows = read_jsonl(tmp_path / "run" / "answers.jsonl")
    kept = {r["candidate"]: r["thinking"] for r in rows}
    assert kept == {"thinker": None, "clueless": "Hmm, no idea at all."}
    from rich.console import Console

    from raq.report.terminal import print_result

    console = Console(record=True, width=200)
    print_result(result, console)
    assert "thinker thought in 4 of 4 answers (21 words on average" in console.export_text()


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("form", ["reasoning", "reasoning_content", "think_tags", "harmony"])
def test_a_candidate_cut_while_thinking_fails_with_its_own_kind(
    tmp_path: Path, qa_file: Path, form: str, stream: bool
) -> None:
    behaviours = {
        "thinker": Behaviour(reply=oracle, thinking=oracle_thinking, thinking_form=form),
        "clueless": Behaviour(reply=clueless),
        "judge": Behaviour(reply=judge_by_overlap()),
    }
    with FakeOpenAIServer(behaviours) as server:
        config = run_config(server, qa_file, cache={"enabled": True, "path": str(tmp_path / "c")})
        config["candidates"][0] |= {
            "stream": stream,
            "params": {"max_tokens": 10},
            "price": {"input_per_million": 1.0, "output_per_million": 1.0},
        }
        result = evaluate(tmp_path, config)
        asked = server.count("thinker")
        evaluate(tmp_path, config, name="again")  # the failures were not cached as answers
        assert server.count("thinker") == 2 * asked == 8
    rows = [
        r for r in read_jsonl(tmp_path / "run" / "answers.jsonl") if r["candidate"] == "thinker"
    ]
    assert all(r["answer"] is None for r in rows)
    assert all(r["error"].startswith("thinking_unfinished: max_tokens ran out") for r in rows)
    assert all(0 < r["thinking_words"] <= 10 for r in rows)
    entry = result.summary_json["candidates"]["thinker"]
    assert entry["failed_answers"] == 4 and entry["errors"] == {"thinking_unfinished": 4}
    assert entry["empty_answers"] == 0
    assert entry["cost_usd"]["n_failed_answers_paid"] == 4, "the cut thinking was paid for"
    assert entry["cost_usd"]["total"] == pytest.approx(
        sum(r["prompt_tokens"] + r["completion_tokens"] for r in rows) / 1e6
    )
    report = (tmp_path / "run" / "report.md").read_text()
    # report.md escapes markdown in its cells: the underscore arrives as "\_"
    assert "## Thinking" in report and "thinking\\_unfinished ×4" in report


def test_no_answer_after_the_thinking_is_a_failure(tmp_path: Path, qa_file: Path) -> None:
    behaviours = {
        "thinker": Behaviour(reply=reply_text(""), thinking=THOUGHT),
        "clueless": Behaviour(reply=clueless),
        "judge": Behaviour(reply=judge_by_overlap()),
    }
    with FakeOpenAIServer(behaviours) as server:
        result = evaluate(tmp_path, run_config(server, qa_file))
    errors = result.summary_json["candidates"]["thinker"]["errors"]
    assert errors == {"thinking_unfinished": 4}
    rows = [
        r for r in read_jsonl(tmp_path / "run" / "answers.jsonl") if r["candidate"] == "thinker"
    ]
    assert all("no answer after 12 words of thinking" in r["error"] for r in rows)


# --- whole runs: a thinking judge --------------------------------------------------------------

MODES = {
    "json_schema": {},
    "json_object": {"accept_json_schema": False},
    "tools": {"accept_json_schema": False, "accept_json_object": False},
    "text": {"accept_json_schema": False, "accept_json_object": False, "accept_tools": False},
}


def asked_in(body: dict[str, Any], model: str, mode: str) -> bool:
    """Whether ``body`` asked ``model`` for structured output in ``mode``."""
    if body["model"] != model:
        return False
    if "tools" in body:
        return mode == "tools"
    if "guided_json" in body or "guided_json" in (body.get("nvext") or {}):
        return mode == "guided_json"  # NIM's guided decoding, tried before json_object
    return (body.get("response_format") or {}).get("type", "text") == mode


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("form", sorted(THINKING_FORMS))
def test_a_thinking_judge_ranks_after_its_thinking_in_every_mode(
    tmp_path: Path, qa_file: Path, form: str, mode: str
) -> None:
    behaviours = {
        "thinker": Behaviour(reply=oracle),
        "clueless": Behaviour(reply=clueless),
        "judge": Behaviour(
            reply=judge_by_overlap(), thinking=decoy, thinking_form=form, **MODES[mode]
        ),
    }
    with FakeOpenAIServer(behaviours) as server:
        config = run_config(server, qa_file)
        config["judges"][0]["price"] = {"input_per_million": 1.0, "output_per_million": 10.0}
        result = evaluate(tmp_path, config)
        drafts = [decoy(b) for b in server.requests if asked_in(b, "judge", mode)]
    judgments = read_jsonl(tmp_path / "run" / "judgments.jsonl")
    assert {j["mode"] for j in judgments} == {mode}
    assert all(j["error"] is None and j["attempts"] == 1 for j in judgments)
    assert all("Draft" not in j["raw_output"] for j in judgments)
    assert len(drafts) == len(judgments)
    assert sorted(j["thinking_words"] for j in judgments) == sorted(map(count_words, drafts))
    assert all(j["thinking_tokens"] >= j["thinking_words"] for j in judgments)
    summary = result.summary_json
    assert summary["candidates"]["thinker"]["mean_rank"] == 1.0, "the decoy was not read"
    judge = summary["judges"]["judge"]
    assert judge["tokens"]["thinking"] >= sum(j["thinking_words"] for j in judgments)
    assert judge["tokens"]["completion"] > judge["tokens"]["thinking"]
    expected = (judge["tokens"]["prompt"] * 1.0 + judge["tokens"]["completion"] * 10.0) / 1e6
    assert judge["cost_usd"]["total"] == pytest.approx(expected)
    assert "Judge judge thought" in (tmp_path / "run" / "report.md").read_text()


@pytest.mark.parametrize("form", ["reasoning_content", "think_tags", "kimi", "harmony"])
def test_a_judge_cut_while_thinking_is_a_failed_judgment(
    tmp_path: Path, qa_file: Path, form: str
) -> None:
    behaviours = {
        "thinker": Behaviour(reply=oracle),
        "clueless": Behaviour(reply=clueless),
        "judge": Behaviour(reply=judge_by_overlap(), thinking=decoy, thinking_form=form),
    }
    with FakeOpenAIServer(behaviours) as server:
        config = run_config(server, qa_file)
        config["judges"][0]["params"] = {"max_tokens": 8}
        result = evaluate(tmp_path, config)
    judge = result.summary_json["judges"]["judge"]
    assert judge["failed_judgments"] == 4 and judge["errors"] == {"thinking_unfinished": 4}
    assert judge["tokens"]["thinking"] > 0, "the cut thinking was still paid for"
    assert result.summary_json["disabled_endpoints"] == {}


def test_thinking_switches_pass_through_params(tmp_path: Path, qa_file: Path) -> None:
    behaviours = {
        "thinker": Behaviour(reply=oracle),
        "clueless": Behaviour(reply=clueless),
        "judge": Behaviour(reply=judge_by_overlap()),
    }
    with FakeOpenAIServer(behaviours) as server:
        config = run_config(server, qa_file)
        config["candidates"][0] |= {
            "params": {"chat_template_kwargs": {"enable_thinking": False}},
            "system": "detailed thinking off",
        }
        config["judges"][0]["params"] = {"reasoning_effort": "low"}
        evaluate(tmp_path, config)
        sent = [b for b in server.requests if b["model"] == "thinker"]
        judged = [b for b in server.requests if b["model"] == "judge"]
    assert all(b["chat_template_kwargs"] == {"enable_thinking": False} for b in sent)
    assert all(
        b["messages"][0] == {"role": "system", "content": "detailed thinking off"} for b in sent
    )
    assert all(b["reasoning_effort"] == "low" for b in judged)


def test_a_judge_reply_cut_by_max_tokens_is_never_read_as_a_ranking(
    tmp_path: Path, qa_file: Path
) -> None:
    """DeepSeek-R1 without its opening tag, cut inside the thinking: the content is the draft
    with its decoy ranking and no marker; finish_reason=length is what gives it away."""
    behaviours = {
        "thinker": Behaviour(reply=oracle),
        "clueless": Behaviour(reply=clueless),
        "judge": Behaviour(
            reply=judge_by_overlap(), thinking=decoy, thinking_form="think_close_only"
        ),
    }
    with FakeOpenAIServer(behaviours) as server:
        config = run_config(server, qa_file)
        config["judges"][0] |= {"params": {"max_tokens": 8}, "max_reasks": 0}
        result = evaluate(tmp_path, config)
    judgments = read_jsonl(tmp_path / "run" / "judgments.jsonl")
    assert all(j["ranks"] is None for j in judgments)
    assert all("cut by max_tokens" in j["error"] for j in judgments)
    assert result.summary_json["judges"]["judge"]["failed_judgments"] == 4
