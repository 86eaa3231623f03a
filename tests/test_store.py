"""The run store: questions streamed in and paged out, per-question lookups, merge copies,
and finalize reading answers without holding their texts."""

from __future__ import annotations

import gc
import json
import tracemalloc
from dataclasses import replace
from pathlib import Path

import pytest

from raq.core.errors import StoreError
from raq.core.records import Answer, Completion, Judgment, QAItem
from raq.pipeline.finalize import finalize
from raq.store import ResponseCache, RunStore

CANDIDATES = ("alpha", "beta")


def item(n: int) -> QAItem:
    return QAItem(f"q{n}", f"Question {n}?", (f"truth {n}",), context=f"Context {n}.")


def test_questions_stream_in_and_page_out_in_index_order(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    consumed: list[int] = []

    def generated():  # a generator: save_questions must not need a list
        for n in (5, 1, 9, 3, 7, 0, 2):
            consumed.append(n)
            yield n * 10, item(n)

    assert store.save_questions(generated()) == 7
    assert consumed == [5, 1, 9, 3, 7, 0, 2]
    pages = list(store.iter_questions(page_size=3))
    assert [index for index, _ in pages] == [0, 10, 20, 30, 50, 70, 90]
    assert pages[1][1] == item(1)
    assert store.question_count() == 7
    assert store.save_questions(iter([(0, item(4))])) == 1, "saving replaces the questions"


def test_answers_and_judgments_of_dropped_questions_are_not_current(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.save_questions([(0, item(0)), (1, item(1))])
    for n in (0, 1):
        for name in CANDIDATES:
            store.put_answer(Answer(f"q{n}", name, f"answer {n}", latency_s=1.0, words=2), "fp")
        store.put_judgment(Judgment(f"q{n}", 0, "j", CANDIDATES, "[1,2]", {"alpha": 1}), "jf")
    store.save_questions([(0, item(1))])  # the dataset changed: q0 is no longer asked
    assert {a.question_id for a in store.answers()} == {"q1"}
    assert [a.candidate for a in store.answers(["beta"])] == ["beta"]
    assert [j.question_id for j in store.judgments()] == ["q1"]
    assert [row[0] for row in store.answer_metrics(["alpha"])] == ["q1"]
    assert set(store.stored_answers("q0")) == set(CANDIDATES), "kept for reuse"
    assert store.judgment_marks("q1") == {(0, "j"): ("jf", True)}


def test_copy_from_refuses_a_question_already_present(tmp_path: Path) -> None:
    first, second = RunStore(tmp_path / "a"), RunStore(tmp_path / "b")
    first.save_questions([(0, item(0))])
    second.save_questions([(1, item(0))])
    merged = RunStore(tmp_path / "m")
    merged.copy_from(first.path)
    with pytest.raises(StoreError, match="question q0 is also in another run"):
        merged.copy_from(second.path)
    assert merged.question_count() == 1


def _write_run(run_dir: Path, n_questions: int, answer_chars: int) -> None:
    """A finished run by hand: every answer is ``answer_chars`` long."""
    config = {
        "name": "memory",
        "dataset": {"path": "qa.jsonl"},
        "candidates": [
            {"name": n, "base_url": "http://127.0.0.1:9/v1", "model": n} for n in CANDIDATES
        ],
        "judges": [{"name": "f1", "kind": "reference"}],
        "stats": {"n_boot": 100},
        "env_file": None,
    }
    store = RunStore(run_dir)
    store.set_meta("config", config)
    store.save_questions((n, item(n)) for n in range(n_questions))
    with store._transaction():
        for n in range(n_questions):
            for i, name in enumerate(CANDIDATES):
                text = (f"{name} {n} " * answer_chars)[:answer_chars]
                answer = Answer(f"q{n}", name, text, latency_s=0.5 + i, ttft_s=0.1, words=9,
                                words_per_second=9 / (0.5 + i), completion_tokens=12)  # fmt: skip
                store.put_answer(answer, "fp")
            ranks = {"alpha": 1.0, "beta": 2.0} if n % 3 else {"alpha": 2.0, "beta": 1.0}
            judgment = Judgment(f"q{n}", 0, "f1", CANDIDATES, None, ranks, mode="reference")
            store.put_judgment(judgment, "jf")
    store.close()


def _finalize_peak_bytes(run_dir: Path, trace: bool = True) -> int:
    """Peak bytes Python allocated while finalizing (tracemalloc: counted, not timed)."""
    store = RunStore.open_existing(run_dir)
    gc.collect()
    if trace:
        tracemalloc.start()
    try:
        result = finalize(run_dir, store)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        store.close()
    assert result.summary_json["n_questions"] > 0
    return peak


def test_finalize_streams_answer_texts_instead_of_holding_them(tmp_path: Path) -> None:
    """10× the questions must not mean holding 10× the answer texts: 900 more questions carry
    2 × 900 × 8 KB ≈ 14 MB more text, and finalize may grow by a small part of it (the
    per-answer numbers and ranks it needs for the statistics). Holding the answers, as raq
    did before, grew it by more than the texts."""
    answer_chars = 8_000
    small, large = tmp_path / "small", tmp_path / "large"
    _write_run(small, 100, answer_chars)
    _write_run(large, 1_000, answer_chars)
    _finalize_peak_bytes(small, trace=False)  # lazy imports and caches happen here
    growth = _finalize_peak_bytes(large) - _finalize_peak_bytes(small)
    extra_text = 2 * 900 * answer_chars
    assert growth < 0.1 * extra_text, f"finalize grew {growth / 1e6:.1f} MB"
    rows = [json.loads(line) for line in (large / "answers.jsonl").open()]
    assert len(rows) == 2_000 and len(rows[-1]["answer"]) == answer_chars


def test_the_response_cache_gives_back_every_field_it_was_given(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "responses.sqlite")
    completion = Completion(
        text="Paris — «ville»", latency_s=0.25, ttft_s=0.05, prompt_tokens=12,
        completion_tokens=3, tool_arguments='{"ranking": [2, 1]}', finish_reason="stop",
    )  # fmt: skip
    cache.put("k", completion)
    assert cache.get("k") == replace(completion, cached=True)
    assert cache.get("other") is None
    cache.close()


def test_finalize_reads_one_snapshot_while_a_run_still_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``raq report`` on a run that is still going: a judgment that lands between finalize's
    reads (here a judge's first one) belongs to the next render, not half to this one."""
    run_dir = tmp_path / "run"
    _write_run(run_dir, 20, 10)
    store = RunStore.open_existing(run_dir)
    config = store.get_meta("config")
    config["judges"].append({"name": "f2", "kind": "reference"})
    store.set_meta("config", config)
    store.close()
    read_candidates = RunStore.ranked_candidates

    def meanwhile(self: RunStore) -> object:
        rows = list(read_candidates(self))
        writer = RunStore(run_dir)
        late = Judgment("q1", 0, "f2", CANDIDATES, None, {"alpha": 1.0, "beta": 2.0}, mode="x")
        writer.put_judgment(late, "jf")
        writer.close()
        return iter(rows)

    monkeypatch.setattr(RunStore, "ranked_candidates", meanwhile)
    store = RunStore.open_existing(run_dir)
    try:
        result = finalize(run_dir, store)
    finally:
        store.close()
    assert result.summary_json["judges"]["f2"]["judgments"] == 0
    assert result.summary_json["test"]["n_ranks"] == 40


# The run store's tables as raq wrote them before the thinking columns (schema 1).
_SCHEMA_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE questions (
    idx INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, question TEXT NOT NULL,
    context TEXT, answers TEXT NOT NULL);
CREATE TABLE answers (
    question_id TEXT NOT NULL, candidate TEXT NOT NULL, fingerprint TEXT NOT NULL,
    answer TEXT, latency_s REAL, ttft_s REAL, words INTEGER, words_per_second REAL,
    prompt_tokens INTEGER, completion_tokens INTEGER, tokens_estimated INTEGER NOT NULL,
    error TEXT, cached INTEGER NOT NULL, created_at REAL NOT NULL,
    PRIMARY KEY (question_id, candidate));
CREATE TABLE judgments (
    question_id TEXT NOT NULL, repeat INTEGER NOT NULL, judge TEXT NOT NULL,
    fingerprint TEXT NOT NULL, presented_order TEXT NOT NULL, raw_output TEXT,
    ranks TEXT NOT NULL, mode TEXT, attempts INTEGER NOT NULL, error TEXT,
    cached INTEGER NOT NULL, created_at REAL NOT NULL,
    PRIMARY KEY (question_id, repeat, judge));
INSERT INTO meta VALUES ('format', 'raq-run/1');
INSERT INTO questions VALUES (7, 'q7', 'Question 7?', NULL, '["truth 7"]');
INSERT INTO answers VALUES ('q7', 'alpha', 'fp', 'old answer', 1.5, 0.2, 2, 1.3, 10, 3, 0,
    NULL, 0, 0);
INSERT INTO judgments VALUES ('q7', 0, 'j', 'jf', '["alpha","beta"]', '{}',
    '{"alpha": 1.0, "beta": 2.0}', 'text', 1, NULL, 0, 0);
"""


def _old_run(run_dir: Path) -> None:
    import sqlite3

    run_dir.mkdir()
    conn = sqlite3.connect(run_dir / "raq.sqlite")
    conn.executescript(_SCHEMA_1)
    conn.close()


def test_a_store_written_before_the_thinking_columns_is_migrated(tmp_path: Path) -> None:
    _old_run(tmp_path / "old")
    store = RunStore.open_existing(tmp_path / "old")
    (old,) = store.answers()
    assert old.answer == "old answer" and old.thinking_words is None and old.answer_ttft_s is None
    (judged,) = store.judgments()
    assert judged.ranks == {"alpha": 1.0, "beta": 2.0} and judged.completion_tokens is None
    assert judged.controls == {}
    thought = Answer(
        "q7", "beta", "new", latency_s=2.0, thinking="hmm", thinking_words=1,
        thinking_tokens=2, thinking_tokens_estimated=True, answer_ttft_s=1.5,
    )  # fmt: skip
    store.put_answer(thought, "fp2")
    assert [a for a in store.answers() if a.candidate == "beta"] == [thought]
    store.close()
    again = RunStore.open_existing(tmp_path / "old")  # opening it again changes nothing
    assert [a for a in again.answers() if a.candidate == "beta"] == [thought]
    again.close()


def test_merge_copies_a_store_written_before_the_thinking_columns(tmp_path: Path) -> None:
    _old_run(tmp_path / "old")
    merged = RunStore(tmp_path / "merged")
    merged.copy_from(tmp_path / "old" / "raq.sqlite")
    (answer,) = merged.answers()
    assert answer.answer == "old answer" and answer.thinking is None
    assert [j.question_id for j in merged.judgments()] == ["q7"]
