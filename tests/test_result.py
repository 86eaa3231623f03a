"""summary.json's per-candidate speed, token and cost figures, recomputed independently.

The run writes answers.jsonl and summary.json from its store; these tests recompute every
figure of summary.json from answers.jsonl alone, in plain Python (no numpy, no pandas).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

import raq
from raq.testing import Behaviour, FakeOpenAIServer
from raq.testing.fake_server import judge_by_overlap

from .conftest import N_QUESTIONS, half_right, oracle

PRICES = {"usage": (0.3, 0.6), "no-usage": (1.5, 2.5)}


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between the closest ranks (the common 'type 7' definition)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def expected_distribution(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "mean": None, "p50": None, "p90": None, "p99": None}
    return {
        "n": len(values),
        "mean": sum(values) / len(values),
        **{f"p{q}": percentile(values, q) for q in (50, 90, 99)},
    }


def sometimes_empty(body: dict[str, Any]) -> str:
    reply = half_right(body)
    return "" if "number 5?" in body["messages"][-1]["content"] else reply


def evaluate_serially(tmp_path: Path, config: dict[str, Any]) -> raq.RunResult:
    """Run ``config`` into tmp_path/run one request at a time, without retries or cache (so
    the fake server's faults land where the test put them)."""
    config = config | {
        "concurrency": 1, "max_retries": 0, "cache": {"enabled": False}, "env_file": None,
    }  # fmt: skip
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return raq.evaluate(path, output=tmp_path / "run", progress=False)


@pytest.fixture
def mixed_run(tmp_path: Path, qa_file: Path) -> tuple[raq.RunResult, list[dict[str, Any]]]:
    """One candidate that reports usage; one that does not, fails twice and once says nothing."""
    behaviours = {
        "usage": Behaviour(reply=oracle, ttft_s=0.003, latency_s=0.012),
        "no-usage": Behaviour(
            reply=sometimes_empty,
            send_usage=False,
            ttft_s=0.002,
            latency_s=0.02,
            faults=("500", None, None, "503"),
        ),
        "judge": Behaviour(reply=judge_by_overlap()),
    }
    with FakeOpenAIServer(behaviours) as server:
        config = {
            "name": "summary-check",
            "seed": 5,
            "dataset": {"path": str(qa_file)},
            "candidates": [
                {
                    "name": name,
                    "base_url": server.base_url,
                    "model": name,
                    "price": {"input_per_million": inp, "output_per_million": out},
                }
                for name, (inp, out) in PRICES.items()
            ],
            "judges": [{"name": "judge", "base_url": server.base_url, "model": "judge"}],
            "repeats": 2,
        }
        result = evaluate_serially(tmp_path, config)
    rows = [json.loads(line) for line in (tmp_path / "run" / "answers.jsonl").open()]
    return result, rows


def test_speed_token_and_cost_figures_match_answers_jsonl(
    mixed_run: tuple[raq.RunResult, list[dict[str, Any]]],
) -> None:
    result, rows = mixed_run
    summary = json.loads((result.run_dir / "summary.json").read_text())
    for name, (input_price, output_price) in PRICES.items():
        own = [r for r in rows if r["candidate"] == name]
        ok = [r for r in own if r["error"] is None and r["answer"] is not None]
        entry = summary["candidates"][name]
        assert entry["answers"] == len(own) == N_QUESTIONS
        assert entry["failed_answers"] == len(own) - len(ok)
        assert entry["empty_answers"] == sum(r["answer"] == "" for r in ok)
        errors: dict[str, int] = {}
        for r in own:
            if r["error"]:
                errors[r["error"].split(":")[0]] = errors.get(r["error"].split(":")[0], 0) + 1
        assert entry["errors"] == errors

        def column(key: str, rows: list[dict[str, Any]] = ok) -> list[float]:
            return [float(r[key]) for r in rows if r[key] is not None]

        for key in ("latency_s", "ttft_s", "words_per_second"):
            assert entry[key] == pytest.approx(sum(column(key)) / len(column(key)), rel=1e-12)
        assert entry["answer_words"] == pytest.approx(
            sum(column("words")) / len(column("words")), rel=1e-12
        )
        decode = [
            (r["latency_s"] - r["ttft_s"], r["completion_tokens"])
            for r in ok
            if r["ttft_s"] is not None and r["latency_s"] and (r["completion_tokens"] or 0) > 1
        ]
        decode = [(seconds, tokens) for seconds, tokens in decode if seconds > 0]
        expected = {
            "latency_s": column("latency_s"),
            "ttft_s": column("ttft_s"),
            "words_per_second": column("words_per_second"),
            "answer_words": column("words"),
            "time_per_output_token_s": [s / (t - 1) for s, t in decode],
            "output_tokens_per_second": [(t - 1) / s for s, t in decode],
        }
        distributions = entry["distributions"]
        for key, values in expected.items():
            want = expected_distribution(values)
            got = distributions[key]
            assert got["n"] == want["n"], key
            for stat in ("mean", "p50", "p90", "p99"):
                assert got[stat] == pytest.approx(want[stat], rel=1e-12), (key, stat)
        assert distributions["tokens_estimated"] == any(r["tokens_estimated"] for r in ok)

        assert entry["tokens"] == {
            "prompt": sum(r["prompt_tokens"] or 0 for r in ok),
            "completion": sum(r["completion_tokens"] or 0 for r in ok),
            "prompt_reported": sum(r["prompt_tokens"] is not None for r in ok),
            "completion_estimated": sum(r["tokens_estimated"] for r in ok),
            "n_answers": len(ok),
        }
        cost = sum(
            ((r["prompt_tokens"] or 0) * input_price + (r["completion_tokens"] or 0) * output_price)
            / 1e6
            for r in ok
        )
        assert entry["cost_usd"]["total"] == pytest.approx(cost, rel=1e-12)
        assert entry["cost_usd"]["per_answer"] == pytest.approx(cost / len(ok), rel=1e-12)
        assert entry["cost_usd"]["n_answers"] == len(ok)
        assert entry["cost_usd"]["estimated"] == any(r["tokens_estimated"] for r in ok)


def test_the_mixed_run_exercises_what_it_claims(
    mixed_run: tuple[raq.RunResult, list[dict[str, Any]]],
) -> None:
    """Guards the test above against passing vacuously on a run without the hard cases."""
    result, _ = mixed_run
    usage = result.summary_json["candidates"]["usage"]
    no_usage = result.summary_json["candidates"]["no-usage"]
    assert usage["failed_answers"] == 0 and not usage["distributions"]["tokens_estimated"]
    assert usage["tokens"]["prompt_reported"] == N_QUESTIONS
    assert no_usage["failed_answers"] == 3  # an empty answer is a failed one
    assert no_usage["errors"] == {"HTTP 500": 1, "HTTP 503": 1, "empty_answer": 1}
    assert no_usage["empty_answers"] == 0
    assert no_usage["distributions"]["tokens_estimated"] and no_usage["cost_usd"]["estimated"]
    assert no_usage["distributions"]["time_per_output_token_s"]["n"] > 10


def test_the_length_bias_pairs_are_counted_from_the_record_files(
    mixed_run: tuple[raq.RunResult, list[dict[str, Any]]],
) -> None:
    """One (answer words, mean rank over the repeats) pair per judge, candidate and question
    whose answer succeeded: counted here from answers.jsonl and ranks.csv alone, and by the
    record pass as it reads the store (a question's ranks arrive repeat by repeat)."""
    import csv

    from raq.result.reading import read_records
    from raq.store import RunStore

    result, rows = mixed_run
    words = {(r["question_id"], r["candidate"]): r["words"] for r in rows if r["error"] is None}
    ranks: dict[tuple[str, str, str], list[float]] = {}
    with (result.run_dir / "ranks.csv").open() as file:
        for row in csv.DictReader(file):
            key = (row["judge"], row["candidate"], row["question_id"])
            ranks.setdefault(key, []).append(float(row["rank"]))
    expected: dict[str, dict[str, dict[tuple[float, float], int]]] = {}
    for (judge, candidate, question), values in ranks.items():
        if (question, candidate) in words:
            pair = (float(words[question, candidate]), round(sum(values) / len(values), 9))
            counts = expected.setdefault(judge, {}).setdefault(candidate, {})
            counts[pair] = counts.get(pair, 0) + 1
    assert any(len(v) == 2 for v in ranks.values()), "repeats fold together"
    assert sum(r["error"] is not None for r in rows) == 3, "failed answers have no length"
    store = RunStore.open_existing(result.run_dir)
    try:
        assert read_records(store).words_ranks == expected
    finally:
        store.close()
    n_pairs = sum(sum(c.values()) for by in expected.values() for c in by.values())
    assert result.summary_json["diagnostics"]["length_bias"]["n"] == n_pairs


def test_result_answers_holds_every_answer_with_its_text(
    mixed_run: tuple[raq.RunResult, list[dict[str, Any]]],
) -> None:
    result, rows = mixed_run
    answers = result.answers
    assert len(answers) == len(rows)
    assert list(answers["answer"].fillna("<none>")) == [
        "<none>" if r["answer"] is None else r["answer"] for r in rows
    ]
    assert list(answers["candidate"]) == [r["candidate"] for r in rows]


def test_both_reports_show_each_speed_percentile_in_its_unit_with_its_n(
    mixed_run: tuple[raq.RunResult, list[dict[str, Any]]],
) -> None:
    """The report's speed cells are summary.json's figures: time per output token in ms,
    each distribution with the n it was computed over."""
    result, _ = mixed_run
    markdown = (result.run_dir / "report.md").read_text(encoding="utf-8")
    html = (result.run_dir / "report.html").read_text(encoding="utf-8")
    assert "time per output token ms" in markdown and "time per output token ms" in html
    for entry in result.summary_json["candidates"].values():
        d = entry["distributions"]
        per_token = d["time_per_output_token_s"]
        assert per_token["n"] > 0 and d["output_tokens_per_second"]["n"] > 0
        ms = " / ".join(f"{per_token[k] * 1000:.1f}" for k in ("p50", "p90", "p99"))
        assert f"{ms} (n = {per_token['n']})" in markdown
        tokens = d["output_tokens_per_second"]
        rate = " / ".join(f"{tokens[k]:.1f}" for k in ("p50", "p90", "p99"))
        assert f"{rate} (n = {tokens['n']})" in markdown
        assert f"{ms} (n = {per_token['n']})" in html
        assert f"{rate} (n = {tokens['n']})" in html


def test_judges_are_checked_even_where_the_test_cannot_run(tmp_path: Path, qa_file: Path) -> None:
    """Two candidates that fail on alternate questions leave no complete block, so Friedman
    cannot run; the judge diagnostics and their plot come from the ranks all the same."""

    def fails_when(parity: int) -> Callable[[int, dict[str, Any]], str | None]:
        def fault(_: int, body: dict[str, Any]) -> str | None:
            number = re.search(r"number (\d+)\?", body["messages"][-1]["content"])
            return "500" if number and int(number.group(1)) % 2 == parity else None

        return fault

    behaviours = {
        "steady": Behaviour(reply=oracle),
        "odd": Behaviour(reply=half_right, faults=fails_when(1)),
        "even": Behaviour(reply=half_right, faults=fails_when(0)),
        "judge": Behaviour(reply=judge_by_overlap()),
    }
    with FakeOpenAIServer(behaviours) as server:
        config = {
            "name": "no-complete-blocks",
            "dataset": {"path": str(qa_file)},
            "candidates": [
                {"name": name, "base_url": server.base_url, "model": name}
                for name in ("steady", "odd", "even")
            ],
            "judges": [{"name": "judge", "base_url": server.base_url, "model": "judge"}],
            "stats": {"test": "friedman"},
        }
        result = evaluate_serially(tmp_path, config)
    summary = result.summary_json
    assert result.stats is None and "complete questions" in summary["test"]["error"]
    bias = summary["diagnostics"]["position_bias"]
    assert bias["n"] > len(result.ranks) > 0  # every ranked item, planted controls included
    assert (tmp_path / "run" / "plots" / "position_bias.png").is_file()
    # one (words, rank) pair per answer and question: the repeats fold together
    assert summary["diagnostics"]["length_bias"]["n"] == len(
        result.ranks[["question_id", "candidate"]].drop_duplicates()
    )
