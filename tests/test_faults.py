"""Faults a real endpoint throws at a run: it completes and accounts for every item."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import raq
from raq.core.errors import StoreError
from raq.testing import Behaviour, FakeOpenAIServer
from raq.testing.fake_server import judge_by_overlap

from .conftest import N_QUESTIONS, ConfigWriter, clueless, oracle, raq_cli_env

FAULTS = [
    "429", "429:retry-after=0.05", "500", "502", "503", "reset", "hang", "cut-stream",
    "non-json", None, "429", "500",
]  # fmt: skip


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_fault_kind_is_retried_and_the_run_completes(
    server: FakeOpenAIServer, make_config: ConfigWriter, tmp_path: Path
) -> None:
    server.set_behaviour("oracle", Behaviour(reply=oracle, faults=FAULTS))
    server.set_behaviour("clueless", Behaviour(reply=clueless, faults=list(reversed(FAULTS))))
    server.set_behaviour("judge", Behaviour(reply=judge_by_overlap(), faults=FAULTS))
    config = make_config(
        candidates=["oracle", "clueless"], timeout_s=1.0, max_retries=10, retry_base_s=0.01,
        concurrency=1,
    )  # fmt: skip
    result = raq.evaluate(config, output=tmp_path / "f", progress=False)
    answers = read_jsonl(tmp_path / "f" / "answers.jsonl")
    judgments = read_jsonl(tmp_path / "f" / "judgments.jsonl")
    assert len(answers) == N_QUESTIONS * 2 and all(a["error"] is None for a in answers)
    assert len(judgments) == N_QUESTIONS * 3
    assert [j["error"] for j in judgments if j["error"]] == []
    assert result.summary.index[0] == "oracle"
    counters = result.summary_json["requests"]
    assert counters["oracle"]["retries"] >= len([f for f in FAULTS if f])
    assert counters["oracle"]["throttled"] >= 3


def test_429_backs_off_and_honours_retry_after(
    server: FakeOpenAIServer, make_config: ConfigWriter, tmp_path: Path
) -> None:
    import time

    server.set_behaviour("oracle", Behaviour(reply=oracle, faults=["429:retry-after=0.6"]))
    config = make_config(candidates=["oracle", "clueless"], retry_base_s=0.01, concurrency=1)
    started = time.monotonic()
    raq.evaluate(config, output=tmp_path / "r", limit=1, progress=False, repeats=1)
    assert time.monotonic() - started >= 0.6


def test_what_still_fails_is_recorded_counted_and_gated(
    server: FakeOpenAIServer, make_config: ConfigWriter, tmp_path: Path
) -> None:
    def every_third(index: int, body: dict) -> str | None:
        return "503" if index % 3 == 0 else None

    server.set_behaviour("clueless", Behaviour(reply=clueless, faults=every_third))
    config = make_config(max_retries=0, retry_base_s=0.01, max_failure_rate=0.1)
    out = tmp_path / "g"
    done = subprocess.run(
        [sys.executable, "-m", "raq", "run", "-c", str(config), "-o", str(out), "-q"],
        capture_output=True, text=True, env=raq_cli_env(), timeout=300,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "max_failure_rate=0.1" in done.stdout and "clueless" in done.stdout
    summary = json.loads((out / "summary.json").read_text())
    entry = summary["candidates"]["clueless"]
    assert entry["failed_answers"] == N_QUESTIONS // 3
    assert entry["errors"] == {"HTTP 503": N_QUESTIONS // 3}
    assert "HTTP 503" in (out / "report.md").read_text()


def test_empty_answers_are_failed_answers_retried_and_never_cached(
    server: FakeOpenAIServer, make_config: ConfigWriter, tmp_path: Path
) -> None:
    server.set_behaviour("clueless", Behaviour(reply=clueless, faults=lambda i, b: "empty"))
    config = make_config(max_retries=1, retry_base_s=0.01, cache={"path": str(tmp_path / "c")})
    result = raq.evaluate(config, output=tmp_path / "e", limit=4, progress=False)
    entry = result.summary_json["candidates"]["clueless"]
    assert entry["failed_answers"] == 4 and entry["errors"] == {"empty_answer": 4}
    assert entry["empty_answers"] == 0
    assert result.summary.loc["clueless", "n_ranks"] == 0
    assert server.count("clueless") == 4 * 2  # each retried once
    # Nothing empty was cached: the next run asks again, and now gets answers.
    server.set_behaviour("clueless", Behaviour(reply=clueless))
    again = raq.evaluate(config, output=tmp_path / "e2", limit=4, progress=False)
    assert again.summary_json["candidates"]["clueless"]["failed_answers"] == 0
    assert again.summary_json["requests"]["clueless"]["cache_hits"] == 0


def test_dead_endpoint_is_abandoned_after_consecutive_failures(
    server: FakeOpenAIServer, make_config: ConfigWriter, tmp_path: Path
) -> None:
    server.set_behaviour("half", Behaviour(faults=lambda i, b: "500"))
    config = make_config(
        max_retries=1, retry_base_s=0.01, max_consecutive_failures=4, concurrency=2
    )
    result = raq.evaluate(config, output=tmp_path / "dead", progress=False)
    # 4 failures × 2 attempts, plus what was already in flight when it stopped; not all 48
    assert server.count("half") <= 16, "stops calling soon after 4 consecutive failures"
    assert "half" in result.summary_json["disabled_endpoints"]
    assert result.summary_json["candidates"]["half"]["failed_answers"] == N_QUESTIONS
    assert result.summary.loc["oracle", "n_ranks"] == N_QUESTIONS


def test_truncated_store_is_refused_and_left_untouched(
    make_config: ConfigWriter, tmp_path: Path
) -> None:
    out = tmp_path / "t"
    raq.evaluate(make_config(), output=out, limit=2, progress=False)
    db = out / "raq.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 2])
    before = db.read_bytes()
    with pytest.raises(StoreError, match="raq will not"):
        raq.evaluate(make_config(), output=out, limit=2, progress=False)
    assert db.read_bytes() == before


def test_foreign_files_are_never_overwritten(make_config: ConfigWriter, tmp_path: Path) -> None:
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    done = subprocess.run(
        [sys.executable, "-m", "raq", "run", "-c", str(make_config()), "-o", str(occupied)],
        capture_output=True, text=True, env=raq_cli_env(), timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert "not a raq run directory" in done.stderr and "Traceback" not in done.stderr
    assert [p.name for p in occupied.iterdir()] == ["notes.txt"]

    fake_db = tmp_path / "fake" / "raq.sqlite"
    fake_db.parent.mkdir()
    fake_db.write_text("this is not sqlite")
    with pytest.raises(StoreError):
        raq.evaluate(make_config(), output=fake_db.parent, progress=False)
    assert fake_db.read_text() == "this is not sqlite"

    other_sqlite = tmp_path / "cache.sqlite"
    with sqlite3.connect(other_sqlite) as conn:
        conn.execute("CREATE TABLE mine (x)")
    config = make_config(cache={"enabled": True, "path": str(other_sqlite)})
    with pytest.raises(StoreError, match="not a raq response cache"):
        raq.evaluate(config, output=tmp_path / "c", progress=False)


def test_dataset_with_a_line_cut_in_half_is_one_clear_error(
    make_config: ConfigWriter, qa_file: Path
) -> None:
    text = qa_file.read_text()
    cut = text[: len(text) // 2]
    broken_line = cut.count("\n") + 1
    qa_file.write_text(cut)
    done = subprocess.run(
        [sys.executable, "-m", "raq", "run", "-c", str(make_config())],
        capture_output=True, text=True, env=raq_cli_env(), timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert (
        done.stderr.startswith("raq: error: ")
        and f"qa.jsonl:{broken_line}: not valid JSON" in done.stderr
    )
    assert "Traceback" not in done.stderr and done.stderr.strip().count("\n") == 0


def test_key_never_reaches_the_cache_or_any_output(
    make_config: ConfigWriter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "nvapi-RAQ-LEAK-CHECK-777"
    monkeypatch.setenv("RAQ_LEAK_KEY", key)
    cache = tmp_path / "cache" / "responses.sqlite"
    config = make_config(cache={"enabled": True, "path": str(cache)})
    text = config.read_text()
    config.write_text(text.replace("model: judge\n", "model: judge\n  api_key_env: RAQ_LEAK_KEY\n"))
    raq.evaluate(config, output=tmp_path / "k", limit=3, progress=False)
    for path in [*(tmp_path / "k").rglob("*"), *cache.parent.rglob("*")]:
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path
