"""Dataset generation over real loopback HTTP: modes, verification, dedup, fallback, cache."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from raq.config import DatasetConfig, EndpointConfig
from raq.core.errors import ConfigError, DatasetError
from raq.core.metrics import answer_tokens
from raq.dataset import load_items
from raq.stages.generate import (
    Deduplicator,
    GenerateConfig,
    check_independence,
    chunk_text,
    generate_async,
    load_generate_config,
    parse_items,
)
from raq.testing import Behaviour, FakeOpenAIServer

MODEL = "gen-model"
Body = dict[str, Any]


def first_user(body: Body) -> str:
    return next(m["content"] for m in body["messages"] if m["role"] == "user")


def is_reask(body: Body) -> bool:
    return any(m["role"] == "assistant" for m in body["messages"])


def passage(body: Body) -> tuple[str, str]:
    match = re.search(r'<passage source="([^"]*)">\n(.*)\n</passage>', first_user(body), re.S)
    assert match, "documents prompt without a passage"
    return match.group(1), match.group(2)


def examples(body: Body) -> list[dict[str, str]]:
    text = first_user(body)
    return json.loads(text[text.index("Examples:") + len("Examples:") :])


def serve(reply: Callable[[Body], Any], **behaviour: Any) -> FakeOpenAIServer:
    return FakeOpenAIServer({MODEL: Behaviour(reply=reply, **behaviour)})


def make_config(server: FakeOpenAIServer, tmp_path: Path, **fields: Any) -> GenerateConfig:
    data = {
        "name": "t",
        "seed": 3,
        "generator": {"name": "gen", "base_url": server.base_url, "model": MODEL},
        "n": 6,
        "per_request": 3,
        "concurrency": 4,
        "max_retries": 0,
        "env_file": None,
        "cache": {"path": str(tmp_path / "cache.sqlite")},
        **fields,
    }
    return load_generate_config(data)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# ---------------------------------------------------------------------------------------------
# documents mode


def write_docs(tmp_path: Path) -> Path:
    """Two documents of 50 distinct words: with chunk 20 / overlap 5, three chunks each."""
    folder = tmp_path / "docs"
    folder.mkdir()
    for f, suffix in enumerate([".md", ".txt"]):
        (folder / f"doc{f}{suffix}").write_text(" ".join(f"w{f}x{i}" for i in range(50)))
    (folder / "ignored.csv").write_text("not,a,document\n")
    return folder


def documents_reply(body: Body) -> dict[str, Any]:
    """Two answers copied from the chunk and one (marmalade) that is not in it."""
    _, text = passage(body)
    words = text.split()
    items = [
        {
            "question": f"Which word follows {words[1 + 3 * j]} after {words[0]}?",
            "answer": words[2 + 3 * j],
        }
        for j in range(2)
    ]
    items.insert(
        0, {"question": f"What is spread on toast near {words[0]}?", "answer": "marmalade"}
    )
    return {"items": items}


def documents_config(server: FakeOpenAIServer, tmp_path: Path, **fields: Any) -> GenerateConfig:
    docs = {"path": str(write_docs(tmp_path)), "chunk_words": 20, "overlap_words": 5}
    return make_config(server, tmp_path, documents=docs, **fields)


async def test_documents_mode_verifies_extractive_answers(tmp_path: Path) -> None:
    with serve(documents_reply) as server:
        config = documents_config(server, tmp_path)
        assert config.mode == "documents"  # inferred: the only source given
        out = tmp_path / "gen.jsonl"
        report = await generate_async(config, out, retry_base_s=0.01)
        count = server.count()
    rows = read_jsonl(out)
    assert report.generated == len(rows) == 6
    assert report.rejected == {"answer_not_in_chunk": 3}
    assert report.stop_reason == "reached n"
    assert count == report.requests == 3  # 2 valid items per request
    assert all(r["answers"]["text"] != ["marmalade"] for r in rows)
    for row in rows:
        answer = row["answers"]["text"][0]
        assert f" {answer} " in f" {row['context']} "
        chunk = row["provenance"]["chunk"]
        assert chunk["source"] in {"doc0.md", "doc1.txt"} and chunk["index"] in {0, 1, 2}
        assert row["provenance"]["generator"] == {
            "name": "gen",
            "model": MODEL,
            "base_url": config.generator.base_url,
        }
        assert row["provenance"]["mode"] == "documents"
    assert not Path(f"{out}.partial").exists()


async def test_documents_not_extractive_keeps_unverifiable_answers(tmp_path: Path) -> None:
    with serve(documents_reply) as server:
        config = documents_config(server, tmp_path, extractive=False)
        report = await generate_async(config, tmp_path / "gen.jsonl")
    assert report.rejected == {}
    assert "marmalade" in {r["answers"]["text"][0] for r in read_jsonl(tmp_path / "gen.jsonl")}


async def test_output_loads_with_no_field_mapping(tmp_path: Path) -> None:
    with serve(documents_reply) as server:
        config = documents_config(server, tmp_path)
        await generate_async(config, tmp_path / "gen.jsonl")
        await generate_async(config, tmp_path / "gen.parquet", fmt="parquet")
    rows = read_jsonl(tmp_path / "gen.jsonl")
    for path in ("gen.jsonl", "gen.parquet"):
        items = load_items(DatasetConfig(path=str(tmp_path / path)))
        assert [i.id for i in items] == [r["id"] for r in rows]
        assert [i.question for i in items] == [r["question"] for r in rows]
        assert [i.answers for i in items] == [tuple(r["answers"]["text"]) for r in rows]
        assert [i.context for i in items] == [r["context"] for r in rows]


async def test_a_second_run_makes_no_requests_and_writes_the_same_file(tmp_path: Path) -> None:
    # json_schema is refused, so the first run also learns a fallback; the re-run must not
    # repeat even that refused request.
    with serve(documents_reply, accept_json_schema=False) as server:
        config = documents_config(server, tmp_path, n=10, per_request=3)
        first = await generate_async(config, tmp_path / "a.jsonl")
        sent = server.count()
        second = await generate_async(config, tmp_path / "b.jsonl")
        assert server.count() == sent
    assert sent == first.requests > 0
    assert second.requests == 0
    assert second.cache_hits == first.asked
    assert second.structured_mode == "json_object"
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()


# ---------------------------------------------------------------------------------------------
# topics mode


def topics_reply(body: Body) -> dict[str, Any]:
    text = first_user(body)
    topic = re.search(r"about: (.*)\.\n", text).group(1)  # type: ignore[union-attr]
    angle = re.search(r"Prefer questions about (.*)\.", text).group(1)  # type: ignore[union-attr]
    return {
        "items": [
            {"question": f"{topic} question {j} on {angle}?", "answer": f"{topic} {j}"}
            for j in range(2)
        ]
    }


async def test_topics_mode_is_closed_book(tmp_path: Path) -> None:
    with serve(topics_reply) as server:
        config = make_config(
            server, tmp_path, topics=["photosynthesis", "volcanoes"], n=8, per_request=2
        )
        assert config.mode == "topics"
        report = await generate_async(config, tmp_path / "gen.jsonl")
        bodies = list(server.requests)
    rows = read_jsonl(tmp_path / "gen.jsonl")
    assert report.generated == 8
    assert all(r["context"] is None for r in rows)
    assert {r["provenance"]["topic"] for r in rows} == {"photosynthesis", "volcanoes"}
    assert all(r["provenance"]["chunk"] is None and r["provenance"]["seeds"] == [] for r in rows)
    assert all("<passage" not in first_user(b) for b in bodies)
    assert all(r["answers"]["text"][0].startswith(r["provenance"]["topic"]) for r in rows)


# ---------------------------------------------------------------------------------------------
# seeds mode

SEEDS = [
    ("s1", "What gas do green plants absorb from the air in photosynthesis?", "carbon"),
    ("s2", "Which river flows through the city of Cairo in northern Egypt?", "nile"),
    ("s3", "What is the name of the highest mountain on the planet Earth?", "everest"),
    ("s4", "Which city is the capital and largest city of the French republic?", "paris"),
]


def write_seeds(tmp_path: Path) -> Path:
    path = tmp_path / "seed.jsonl"
    rows = [{"id": i, "question": q, "answers": {"text": [a]}} for i, q, a in SEEDS]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def seeds_reply(body: Body) -> dict[str, Any]:
    """Questions that name the answers of the seeds shown, so provenance can be checked."""
    answers = sorted(e["answer"] for e in examples(body))
    joined = " and ".join(answers)
    return {
        "items": [
            {"question": f"Which links {joined} ({j})?", "answer": " + ".join(answers)}
            for j in range(2)
        ]
    }


async def test_seeds_mode_records_the_seed_ids_each_item_came_from(tmp_path: Path) -> None:
    with serve(seeds_reply) as server:
        seeds = {"path": str(write_seeds(tmp_path)), "per_request": 2}
        config = make_config(server, tmp_path, seeds=seeds, n=6, per_request=2)
        assert config.mode == "seeds"
        report = await generate_async(config, tmp_path / "gen.jsonl")
    rows = read_jsonl(tmp_path / "gen.jsonl")
    answer_of = {i: a for i, _, a in SEEDS}
    assert report.generated == 6
    for row in rows:
        ids = row["provenance"]["seeds"]
        assert len(ids) == 2 and set(ids) <= set(answer_of)
        assert row["answers"]["text"][0] == " + ".join(sorted(answer_of[i] for i in ids))
        assert row["provenance"]["mode"] == "seeds"
    assert len({tuple(sorted(r["provenance"]["seeds"])) for r in rows}) > 1  # sampled, not fixed


def variant(question: str, replaced: int) -> str:
    """The question with its last ``replaced`` words swapped for new ones."""
    words = question.rstrip("?").split()
    return " ".join(words[: len(words) - replaced] + ["zz" * (i + 1) for i in range(replaced)])


async def test_dedup_drops_exact_and_near_copies_of_the_seeds(tmp_path: Path) -> None:
    def reply(body: Body) -> dict[str, Any]:
        seed = examples(body)[0]["question"]
        return {
            "items": [
                {"question": seed.upper() + "!!", "answer": "x1"},  # exact after normalising
                {"question": variant(seed, 1), "answer": "x2"},  # Jaccard 9/11 ≥ 0.8: near
                {"question": variant(seed, 2), "answer": "x3"},  # Jaccard 8/12 < 0.8: kept
                {"question": variant(seed, 2) + " again", "answer": "x4"},  # near the last one
                {"question": "A completely new question?", "answer": "x5"},
            ]
        }

    with serve(reply) as server:
        seeds = {"path": str(write_seeds(tmp_path)), "per_request": 1}
        config = make_config(server, tmp_path, seeds=seeds, n=2, per_request=5)
        report = await generate_async(config, tmp_path / "gen.jsonl")
        assert server.count() == 1
    rows = read_jsonl(tmp_path / "gen.jsonl")
    assert [r["answers"]["text"][0] for r in rows] == ["x3", "x5"]
    assert report.deduplicated == 3
    assert report.near_duplicates == 2


def test_near_duplicate_index_agrees_with_brute_force() -> None:
    rng = random.Random(1)
    vocabulary = [f"t{i}" for i in range(14)]
    questions = [" ".join(rng.sample(vocabulary, rng.randint(3, 10))) for _ in range(400)]
    index, kept = Deduplicator(), []
    for q in questions:
        tokens = set(answer_tokens(q))
        brute = any(len(tokens & k) / len(tokens | k) >= 0.8 for k in kept)
        assert (index.find(q) is not None) == brute, q
        if not brute:
            index.add(q, q)
            kept.append(tokens)
    assert 10 < len(kept) < 400  # both outcomes were exercised


def test_dedup_threshold_is_inclusive_at_0_8() -> None:
    index = Deduplicator()
    index.add("a1 a2 a3 a4 a5 a6 a7 a8 a9", "seed")
    assert index.find("a1 a2 a3 a4 a5 a6 a7 a8 b9") == ("near", "seed")  # 8/10 = 0.8
    assert index.find("a1 a2 a3 a4 a5 a6 a7 b8 b9") is None  # 7/11
    assert index.find("The A1, a2 a3 a4 a5 a6 a7 a8 a9!") == ("exact", "seed")


# ---------------------------------------------------------------------------------------------
# structured output, re-asks, bounds


async def test_json_schema_refused_falls_back_to_json_object_once(tmp_path: Path) -> None:
    with serve(topics_reply, accept_json_schema=False) as server:
        config = make_config(server, tmp_path, topics=["tides"], n=10, per_request=2)
        report = await generate_async(config, tmp_path / "gen.jsonl")
        kinds = [b.get("response_format", {}).get("type") for b in server.requests]
    assert report.generated == 10
    assert report.structured_mode == "json_object"
    # Five requests ran concurrently, but only the first tried (and was refused) json_schema,
    # then guided_json at the top level and inside nvext (refused too).
    assert kinds[0] == "json_schema"
    assert "guided_json" in server.requests[1] and "nvext" in server.requests[2]
    assert kinds[1:3] == [None, None]
    assert kinds[3:] == ["json_object"] * (len(kinds) - 3) and len(kinds) >= 8
    assert report.requests == len(kinds)


async def test_no_response_format_falls_back_to_tools(tmp_path: Path) -> None:
    with serve(topics_reply, accept_json_schema=False, accept_json_object=False) as server:
        config = make_config(server, tmp_path, topics=["tides"], n=4, per_request=2)
        report = await generate_async(config, tmp_path / "gen.jsonl")
        last = server.requests[-1]
    assert report.structured_mode == "tools" and report.generated == 4
    assert last["tool_choice"]["function"]["name"] == "return_items"


async def test_invalid_json_is_re_asked(tmp_path: Path) -> None:
    def reply(body: Body) -> Any:
        if not is_reask(body):
            return "Sure! Here are your questions: question one, answer one."
        return topics_reply(body)

    with serve(reply) as server:
        config = make_config(server, tmp_path, topics=["tides"], n=4, per_request=2)
        report = await generate_async(config, tmp_path / "gen.jsonl")
        bodies = list(server.requests)
    assert report.generated == 4
    assert len(bodies) == 4  # two plan entries, each asked twice
    reasks = [b for b in bodies if is_reask(b)]
    assert len(reasks) == 2
    assert "not usable" in reasks[0]["messages"][-1]["content"]
    assert report.rejected == {}


async def test_always_invalid_stops_when_the_bounded_plan_is_spent(tmp_path: Path) -> None:
    with serve(lambda body: "no json here") as server:
        config = make_config(server, tmp_path, topics=["tides"], n=4, per_request=2, max_reasks=1)
        with pytest.raises(DatasetError, match="plan exhausted") as info:
            await generate_async(config, tmp_path / "gen.jsonl")
        count = server.count()
    assert "unusable_response 6" in str(info.value)
    assert count == 6 * 2  # ceil(4/2)*3 plan entries, each asked 1 + max_reasks times
    assert not (tmp_path / "gen.jsonl").exists()


async def test_invalid_items_are_dropped_and_counted_by_reason(tmp_path: Path) -> None:
    def reply(body: Body) -> dict[str, Any]:
        return {
            "items": [
                {"question": "", "answer": "a"},
                {"question": "Why is the sky blue?", "answer": " "},
                {"question": "Why is the sky blue?", "answer": "why is the sky blue"},
                {"question": ["not", "text"], "answer": "a"},
                {"question": "How many moons does Mars have?", "answer": 2},
            ]
        }

    with serve(reply) as server:
        config = make_config(server, tmp_path, topics=["space"], n=1, per_request=5)
        report = await generate_async(config, tmp_path / "gen.jsonl")
    assert report.rejected == {
        "empty_question": 1,
        "empty_answer": 1,
        "answer_copies_question": 1,
        "malformed_item": 1,
    }
    assert read_jsonl(tmp_path / "gen.jsonl")[0]["answers"]["text"] == ["2"]


# ---------------------------------------------------------------------------------------------
# independence, config, helpers


def endpoint(name: str, base_url: str, model: str) -> EndpointConfig:
    return EndpointConfig(name=name, base_url=base_url, model=model)


def test_independence_check() -> None:
    generator = endpoint("gen", "https://API.example.com/v1/", "GPT-4o")
    same = endpoint("cand", "https://api.example.com/v1", "gpt-4o")
    other = endpoint("other", "https://api.example.com/v1", "gpt-4o-mini")
    check_independence(generator, [other])
    with pytest.raises(ConfigError, match="generator 'gen' is candidate 'cand'"):
        check_independence(generator, [other, same])


async def test_a_forbidden_generator_is_refused_before_any_request(tmp_path: Path) -> None:
    with serve(topics_reply) as server:
        config = make_config(server, tmp_path, topics=["tides"])
        forbidden = endpoint("cand", server.base_url + "/", MODEL.upper())
        data = config.model_dump(mode="json")
        with pytest.raises(ConfigError, match="is candidate 'cand'"):
            load_generate_config(data | {"forbid_models": [forbidden.model_dump(mode="json")]})
        sneaky = config.model_copy(update={"forbid_models": [forbidden]})  # skips validation
        with pytest.raises(ConfigError, match="is candidate 'cand'"):
            await generate_async(sneaky, tmp_path / "gen.jsonl")
        assert server.count() == 0


def test_yaml_errors_name_file_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    base = "generator:\n  name: g\n  base_url: http://127.0.0.1:9/v1\n  model: m\n"
    path.write_text(base + "topics: [a]\nper_reqest: 3\n")
    with pytest.raises(ConfigError, match=r"g\.yaml:6: per_reqest: unknown key; did you mean"):
        load_generate_config(path)
    path.write_text(
        base + "topics: [a]\nforbid_models:\n  - {name: c, base_url: "
        "'http://127.0.0.1:9/v1', model: M}\n"
    )
    with pytest.raises(ConfigError, match=r"g\.yaml:1: generator: generator 'g' is candidate"):
        load_generate_config(path)
    path.write_text(base + "mode: documents\n")
    with pytest.raises(ConfigError, match=r"g\.yaml:5: mode: documents needs a documents"):
        load_generate_config(path)
    path.write_text(base + "documents: {path: d, chunk_words: 20, overlap_words: 20}\n")
    with pytest.raises(ConfigError, match=r"g\.yaml:5: documents: overlap_words \(20\) must"):
        load_generate_config(path)


def test_forbid_models_override_from_the_caller(tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text("generator: {name: g, base_url: 'http://h/v1', model: m}\ntopics: [a]\n")
    candidate = endpoint("c", "http://h/v1", "m")
    with pytest.raises(ConfigError, match="is candidate 'c'"):
        load_generate_config(path, {"forbid_models": [candidate]})
    assert load_generate_config(path, {"forbid_models": [endpoint("c", "http://h/v1", "x")]})


def test_the_shipped_example_config_loads() -> None:
    config = load_generate_config(Path(__file__).parent.parent / "configs" / "generate.yaml")
    assert config.mode == "documents" and config.extractive
    assert config.generator.api_key_env == "OPENAI_API_KEY"


def test_chunks_overlap_and_keep_the_original_text() -> None:
    text = "one two  three\nfour five six seven"
    assert chunk_text(text, 3, 1) == ["one two  three", "three\nfour five", "five six seven"]
    assert chunk_text("光合作用是", 2, 0) == ["光合", "作用", "是"]
    assert chunk_text("", 3, 1) == []


def test_parse_items_accepts_common_shapes() -> None:
    item = {"question": "q", "answer": "a"}
    assert parse_items(json.dumps({"items": [item]}))[0] == [item]
    assert parse_items("```json\n" + json.dumps([item]) + "\n```")[0] == [item]
    assert parse_items("Here: " + json.dumps({"items": [item]}) + " done")[0] == [item]
    assert parse_items('{"items": []}') == (None, "the reply holds no items")
    assert parse_items("nothing")[0] is None


async def test_documents_from_a_dataset_chunk_its_context_column(tmp_path: Path) -> None:
    demo = load_items(DatasetConfig(path="builtin:demo"))
    contexts = {f"builtin:demo#{i.id}": i.context for i in demo}
    with serve(documents_reply) as server:
        docs = {"path": "builtin:demo", "chunk_words": 20, "overlap_words": 5}
        config = make_config(server, tmp_path, documents=docs, extractive=False)
        await generate_async(config, tmp_path / "gen.jsonl")
    rows = read_jsonl(tmp_path / "gen.jsonl")
    assert rows
    for row in rows:
        source = row["provenance"]["chunk"]["source"]
        assert row["context"] in contexts[source]
        assert len(row["context"].split()) <= 20
