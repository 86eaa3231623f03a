"""The CI gate, run comparison, raq stats on a ranks file, and shard merging."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import raq
from raq.testing import FakeOpenAIServer

from .conftest import ConfigWriter, raq_cli_env


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "raq", *args],
        capture_output=True, text=True, env=raq_cli_env(), timeout=300,
    )  # fmt: skip


@pytest.fixture
def finished_run(make_config: ConfigWriter, tmp_path: Path) -> Path:
    out = tmp_path / "done"
    raq.evaluate(make_config(), output=out, progress=False)
    return out


def test_gate_passes_a_candidate_not_worse_and_fails_a_worse_one(finished_run: Path) -> None:
    ok = cli("gate", str(finished_run), "--baseline", "clueless", "--candidate", "oracle")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("PASS oracle vs clueless (not-worse): significantly better")

    worse = cli("gate", str(finished_run), "--baseline", "oracle", "--candidate", "clueless")
    assert worse.returncode == 1
    assert worse.stdout.startswith("FAIL clueless vs oracle (not-worse): significantly worse")

    both = cli("gate", str(finished_run), "--baseline", "half")
    assert both.returncode == 1
    assert len(both.stdout.strip().splitlines()) == 2


def test_gate_better_requires_significance(finished_run: Path) -> None:
    better = cli("gate", str(finished_run), "--baseline", "clueless", "--candidate", "oracle",
                 "--require", "better", "--json")  # fmt: skip
    assert better.returncode == 0
    data = json.loads(better.stdout)
    assert data["passed"] is True
    verdict = data["verdicts"][0]
    assert verdict["mean_rank_diff"] < 0 and verdict["p_adjusted"] < 0.05
    strict = cli("gate", str(finished_run), "--baseline", "clueless", "--candidate", "oracle",
                 "--require", "better", "--alpha", "1e-300")  # fmt: skip
    assert strict.returncode == 1


def test_gate_errors_are_one_line(finished_run: Path, tmp_path: Path) -> None:
    unknown = cli("gate", str(finished_run), "--baseline", "nobody")
    assert unknown.returncode == 2 and "baseline 'nobody' is not a candidate" in unknown.stderr
    missing = cli("gate", str(tmp_path / "nowhere"), "--baseline", "x")
    assert missing.returncode == 2 and "no summary.json" in missing.stderr


def test_gate_block_in_the_config_fails_the_run(make_config: ConfigWriter, tmp_path: Path) -> None:
    config = make_config(gate={"baseline": "oracle", "candidates": ["clueless"]})
    done = cli("run", "-c", str(config), "-o", str(tmp_path / "g"), "-q")
    assert done.returncode == 1
    assert "gate: FAIL clueless vs oracle" in done.stdout
    passing = make_config(gate={"baseline": "clueless", "candidates": ["oracle"]})
    assert cli("run", "-c", str(passing), "-o", str(tmp_path / "p"), "-q").returncode == 0


def test_compare_shows_changes(
    finished_run: Path, make_config: ConfigWriter, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    raq.evaluate(
        make_config(candidates=["oracle", "clueless"]), output=other, limit=8, progress=False
    )
    done = cli("compare", str(finished_run), str(other), "--json")
    assert done.returncode == 0, done.stderr
    diff = json.loads(done.stdout)
    assert diff["only_in_a"] == ["half"]
    assert diff["b"]["n_questions"] == 8
    table = cli("compare", str(finished_run), str(other))
    assert "oracle" in table.stdout and "only in A: half" in table.stdout


def test_stats_command_matches_the_run(finished_run: Path) -> None:
    done = cli("stats", str(finished_run / "ranks.csv"), "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    run_pvalues = pd.read_csv(finished_run / "pvalues.csv", index_col=0)
    for a in run_pvalues.index:
        for b in run_pvalues.columns:
            assert data["pvalues"][a][b] == pytest.approx(run_pvalues.at[a, b])
    summary = json.loads((finished_run / "summary.json").read_text())
    assert data["significant_pairs"] == summary["significant_pairs"]
    friedman = cli("stats", str(finished_run / "ranks.csv"), "--test", "friedman")
    assert friedman.returncode == 0 and "Friedman" in friedman.stdout


def test_stats_command_rejects_bad_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("question_id,candidate\nq1,a\n")
    done = cli("stats", str(bad))
    assert done.returncode == 2 and "missing column(s) repeat, judge, rank" in done.stderr
    bad.write_text("question_id,repeat,judge,candidate,rank\nq1,0,j,a,1\nq1,0,j,b,first\n")
    done = cli("stats", str(bad))
    assert done.returncode == 2 and "bad.csv:3: rank must be a number" in done.stderr


def test_shards_merge_into_the_single_machine_run(
    make_config: ConfigWriter, server: FakeOpenAIServer, tmp_path: Path
) -> None:
    config = make_config(judges=[
        {"name": "judge", "base_url": server.base_url, "model": "judge"},
        {"name": "f1", "kind": "reference"},
    ])  # fmt: skip
    single = raq.evaluate(config, output=tmp_path / "single", progress=False)
    shards = []
    for number in range(3):
        shard_dir = tmp_path / f"shard-{number}"
        done = cli("run", "-c", str(config), "-o", str(shard_dir), "-q", "--shard", f"{number}/3")
        assert done.returncode == 0, done.stderr
        shards.append(str(shard_dir))
    merged = cli("merge", *shards, "--output", str(tmp_path / "merged"))
    assert merged.returncode == 0, merged.stderr
    for name in ("ranks.csv", "pvalues.csv", "answers.jsonl"):
        a = (tmp_path / "single" / name).read_text()
        b = (tmp_path / "merged" / name).read_text()
        if name == "answers.jsonl":  # timings differ between runs; the records must not
            a, b = _without_timing(a), _without_timing(b)
        assert a == b, name
    merged_summary = json.loads((tmp_path / "merged" / "summary.json").read_text())
    for name, entry in single.summary_json["candidates"].items():
        assert merged_summary["candidates"][name]["mean_rank"] == entry["mean_rank"]
        assert merged_summary["candidates"][name]["mean_rank_ci95"] == entry["mean_rank_ci95"]
    assert merged_summary["significant_pairs"] == single.summary_json["significant_pairs"]
    missing = cli("merge", shards[0], shards[1], "--output", str(tmp_path / "partial"))
    assert missing.returncode == 2 and "shard(s) [2] of 3 are missing" in missing.stderr


def _without_timing(text: str) -> list[dict]:
    rows = [json.loads(line) for line in text.splitlines()]
    timing = ("latency_s", "ttft_s", "answer_ttft_s", "words_per_second")
    return [{k: v for k, v in row.items() if k not in timing} for row in rows]


# --- Thin evidence and margins (the gate refuses what it cannot vouch for) ----------------------


def edited_summary(run: Path, tmp_path: Path, change) -> Path:
    """A copy of the run's summary.json after ``change`` (the gate reads nothing else)."""
    summary = json.loads((run / "summary.json").read_text())
    change(summary)
    out = tmp_path / "edited"
    out.mkdir(exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary))
    return out


def test_gate_refuses_an_unfinished_run(finished_run: Path, tmp_path: Path) -> None:
    run = edited_summary(finished_run, tmp_path, lambda s: s.update(status="interrupted"))
    done = cli("gate", str(run), "--baseline", "clueless", "--candidate", "oracle")
    assert done.returncode == 1
    assert "FAIL run: the run did not finish (status: interrupted)" in done.stdout
    assert "FAIL oracle vs clueless: refused" in done.stdout


def test_gate_refuses_too_few_questions(make_config: ConfigWriter, tmp_path: Path) -> None:
    run = tmp_path / "six"
    raq.evaluate(make_config(), output=run, limit=6, progress=False)
    done = cli("gate", str(run), "--baseline", "clueless", "--candidate", "oracle")
    assert done.returncode == 1 and "fewer than min_questions=20" in done.stdout
    relaxed = cli("gate", str(run), "--baseline", "clueless", "--candidate", "oracle",
                  "--min-questions", "5")  # fmt: skip
    assert "min_questions" not in relaxed.stdout


def test_gate_refuses_a_verdict_without_a_qualified_judge(
    finished_run: Path, tmp_path: Path
) -> None:
    def unqualify(summary: dict) -> None:
        summary["judges"]["judge"]["qualified"] = False

    run = edited_summary(finished_run, tmp_path, unqualify)
    done = cli("gate", str(run), "--baseline", "clueless", "--candidate", "oracle")
    assert done.returncode == 1 and "rests on no qualified judge" in done.stdout


def test_gate_refuses_a_candidate_whose_answers_failed(finished_run: Path, tmp_path: Path) -> None:
    def all_failed(summary: dict) -> None:
        entry = summary["candidates"]["oracle"]
        entry["failed_answers"] = entry["answers"]

    run = edited_summary(finished_run, tmp_path, all_failed)
    done = cli("gate", str(run), "--baseline", "clueless", "--candidate", "oracle")
    assert done.returncode == 1
    assert "candidate 'oracle': 24 of 24 answers failed, above max_failed=0.1" in done.stdout


def test_not_worse_with_a_margin_needs_the_confidence_bound_to_clear_it(
    finished_run: Path,
) -> None:
    summary = json.loads((finished_run / "summary.json").read_text())
    from raq.result.gate import gate

    # oracle is far better than clueless: its upper bound clears any sensible margin
    (ok,) = gate(summary, "clueless", ["oracle"], margin=0.1)
    assert ok.passed and ok.bound is not None and ok.bound < 0
    # clueless is far worse than oracle: not inside a 0.5 margin, nor above 50% - 0.2 wins
    (bad,) = gate(summary, "oracle", ["clueless"], margin=0.5)
    assert not bad.passed and bad.bound > 0.5
    (bad_wins,) = gate(summary, "oracle", ["clueless"], margin=0.2, margin_unit="win-rate")
    assert not bad_wins.passed and bad_wins.bound < 0.3
    # the bound is the one-sided t bound over the shared questions, computed by hand
    from scipy import stats as ss

    pair = next(p for p in summary["pairs"] if {p["a"], p["b"]} == {"clueless", "oracle"})
    sign = 1 if pair["a"] == "clueless" else -1
    n = pair["n_pairs"]
    expected = sign * pair["paired_diff"] + ss.t.isf(0.05, n - 1) * pair["paired_diff_sd"] / n**0.5
    assert bad.bound == pytest.approx(expected)


def test_an_undecided_comparison_says_how_many_questions_would_decide_it(
    finished_run: Path,
) -> None:
    summary = json.loads((finished_run / "summary.json").read_text())
    from raq.result.gate import gate

    (verdict,) = gate(summary, "oracle", ["half"], alpha=1e-300)
    assert "questions would give 80% power" in verdict.reason
    (decided,) = gate(summary, "clueless", ["oracle"])
    assert "80% power" not in decided.reason


# --- Two copies of one model: every question tied ----------------------------------------------


@pytest.fixture
def tied_run(make_config: ConfigWriter, tmp_path: Path) -> Path:
    """The oracle twice under two names, ranked by the reference judge: identical answers, so
    every question ranks them equal and the test has no p-value (its statistic is 0 / 0)."""
    import yaml

    path = make_config(candidates=["oracle"], judges=[{"name": "f1", "kind": "reference"}])
    config = yaml.safe_load(path.read_text())
    config["candidates"].append({**config["candidates"][0], "name": "oracle-again"})
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    out = tmp_path / "tied"
    raq.evaluate(path, output=out, progress=False)
    return out


def test_a_pair_tied_on_every_question_has_no_p_value_and_says_why(tied_run: Path) -> None:
    summary = json.loads((tied_run / "summary.json").read_text())
    (pair,) = summary["pairs"]
    assert pair["p_adjusted"] is None and pair["significant"] is False
    why = f"no p-value: all {pair['n_pairs']} shared questions ranked them equal"
    assert any(why in line for line in summary["tradeoffs"]), summary["tradeoffs"]
    report = (tied_run / "report.md").read_text()
    assert why in report and "nan" not in report
    # The heatmap of p-values would be empty: left out, with the reason in the report.
    assert not (tied_run / "plots" / "significance.png").exists()
    assert "no pair has a p-value" in (tied_run / "report.html").read_text()


def test_the_gate_reads_a_pair_without_a_p_value(tied_run: Path) -> None:
    """It used to stop with a traceback (a None formatted as a number)."""
    same = cli("gate", str(tied_run), "--baseline", "oracle")
    assert same.returncode == 0, same.stdout + same.stderr
    assert same.stdout.startswith("PASS oracle-again vs oracle (not-worse): no significant")
    assert "no p-value: all" in same.stdout and "-0.00" not in same.stdout
    better = cli("gate", str(tied_run), "--baseline", "oracle", "--require", "better")
    assert better.returncode == 1 and "Traceback" not in better.stderr
    assert better.stdout.startswith("FAIL oracle-again vs oracle (better): no significant")


def test_a_p_value_below_the_smallest_float_is_not_printed_as_zero() -> None:
    from raq.result.verdict import p_phrase

    pair = {"p_adjusted": 0.0, "n_pairs": 2500, "paired_diff": -0.5, "paired_diff_sd": 0.5}
    assert p_phrase(pair) == "adjusted p < 1e-300"
    assert p_phrase(pair | {"p_adjusted": 0.0123}) == "adjusted p = 0.012"
    assert p_phrase(pair | {"p_adjusted": None}) == "no p-value: the test's statistic is undefined"
