"""Nothing is lost or paid twice: cache, re-runs, resume after kill -9 and Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import raq
from raq.testing import Behaviour, FakeOpenAIServer

from .conftest import (
    N_QUESTIONS,
    ConfigWriter,
    ctrl_c_as_in_a_terminal,
    default_behaviours,
    raq_cli_env,
)


def stored(run_dir: Path, table: str) -> int:
    db = run_dir / "raq.sqlite"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return conn.execute(f"SELECT COUNT(*) FROM {table} WHERE error IS NULL").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def sorted_ranks(run_dir: Path) -> pd.DataFrame:
    frame = pd.read_csv(run_dir / "ranks.csv", dtype={"question_id": str})
    return frame.sort_values(["question_id", "repeat", "judge", "candidate"]).reset_index(drop=True)


def test_a_repeated_run_with_the_cache_makes_zero_requests(
    make_config: ConfigWriter, server: FakeOpenAIServer, tmp_path: Path
) -> None:
    config = make_config(cache={"enabled": True, "path": str(tmp_path / "cache.sqlite")})
    first = raq.evaluate(config, output=tmp_path / "one", limit=6, progress=False)
    assert server.count() == 6 * 3 + 6 * 3
    server.reset_log()
    second = raq.evaluate(config, output=tmp_path / "two", limit=6, progress=False)
    assert server.count() == 0
    assert second.summary_json["candidates"]["oracle"]["cached_answers"] == 6
    assert second.summary_json["judges"]["judge"]["cached_judgments"] == 6 * 3
    pd.testing.assert_frame_equal(first.ranks, second.ranks)
    server.reset_log()
    raq.evaluate(config, output=tmp_path / "three", limit=6, progress=False, refresh=True)
    assert server.count() == 6 * 3 + 6 * 3


def test_rerunning_into_the_same_output_reuses_the_store_without_a_cache(
    make_config: ConfigWriter, server: FakeOpenAIServer, tmp_path: Path
) -> None:
    config = make_config()
    raq.evaluate(config, output=tmp_path / "same", limit=5, progress=False)
    server.reset_log()
    raq.evaluate(config, output=tmp_path / "same", limit=5, progress=False)
    assert server.count() == 0


def test_adding_a_candidate_reuses_the_others_answers(
    make_config: ConfigWriter, server: FakeOpenAIServer, tmp_path: Path
) -> None:
    cache = {"enabled": True, "path": str(tmp_path / "c.sqlite")}
    raq.evaluate(
        make_config(candidates=["oracle", "clueless"], cache=cache),
        output=tmp_path / "a",
        limit=4,
        progress=False,
    )
    server.reset_log()
    raq.evaluate(
        make_config(candidates=["oracle", "clueless", "half"], cache=cache),
        output=tmp_path / "b",
        limit=4,
        progress=False,
    )
    assert server.count("oracle") == 0 and server.count("clueless") == 0
    assert server.count("half") == 4
    assert server.count("judge") == 4 * 3, "the answer set changed, so judging is redone"


def test_temperature_above_zero_is_still_cached(
    make_config: ConfigWriter, server: FakeOpenAIServer, tmp_path: Path
) -> None:
    config = make_config(cache={"enabled": True, "path": str(tmp_path / "c.sqlite")})
    text = config.read_text().replace("temperature: 0.1", "temperature: 0.9")
    config.write_text(text)
    raq.evaluate(config, output=tmp_path / "x", limit=3, progress=False)
    server.reset_log()
    raq.evaluate(config, output=tmp_path / "y", limit=3, progress=False)
    assert server.count() == 0


def _slow_server() -> FakeOpenAIServer:
    behaviours = {
        name: Behaviour(reply=b.reply, latency_s=0.03, ttft_s=0.01)
        for name, b in default_behaviours().items()
    }
    return FakeOpenAIServer(behaviours)


def point_at(config: Path, server: FakeOpenAIServer) -> Path:
    config.write_text(re.sub(r"http://127\.0\.0\.1:\d+/v1", server.base_url, config.read_text()))
    return config


def _run_process(config: Path, out: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "raq",
            "run",
            "--config",
            str(config),
            "--output",
            str(out),
            "--quiet",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=raq_cli_env(),
        preexec_fn=ctrl_c_as_in_a_terminal,
    )


def _wait_until(predicate, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.01)


@pytest.mark.parametrize(("table", "at"), [("answers", 20), ("judgments", 30)])
def test_kill_9_then_resume_equals_an_uninterrupted_run(
    make_config: ConfigWriter, tmp_path: Path, table: str, at: int
) -> None:
    with _slow_server() as slow:
        config = point_at(make_config(concurrency=4), slow)
        reference = tmp_path / "reference"
        assert raq_cli_process_ok(config, reference)
        slow.reset_log()

        out = tmp_path / "killed"
        process = _run_process(config, out)
        _wait_until(lambda: stored(out, table) >= at)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        answers_before = stored(out, "answers")
        judgments_before = stored(out, "judgments")
        assert answers_before < N_QUESTIONS * 3 or judgments_before < N_QUESTIONS * 3
        slow.reset_log()

        resumed = subprocess.run(
            [sys.executable, "-m", "raq", "run", "--resume", str(out), "--quiet"],
            capture_output=True, text=True, env=raq_cli_env(), timeout=300,
        )  # fmt: skip
        assert resumed.returncode == 0, resumed.stderr
        candidate_requests = sum(slow.count(m) for m in ("oracle", "clueless", "half"))
        assert candidate_requests == N_QUESTIONS * 3 - answers_before
        assert slow.count("judge") == N_QUESTIONS * 3 - judgments_before
        pd.testing.assert_frame_equal(sorted_ranks(out), sorted_ranks(reference))
        assert (out / "pvalues.csv").read_text() == (reference / "pvalues.csv").read_text()


def raq_cli_process_ok(config: Path, out: Path) -> bool:
    done = subprocess.run(
        [sys.executable, "-m", "raq", "run", "-c", str(config), "-o", str(out), "--quiet"],
        capture_output=True, text=True, env=raq_cli_env(), timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return True


def test_ctrl_c_stops_flushes_and_says_how_to_resume(
    make_config: ConfigWriter, tmp_path: Path
) -> None:
    with _slow_server() as slow:
        config = point_at(make_config(concurrency=2), slow)
        out = tmp_path / "interrupted"
        process = _run_process(config, out)
        _wait_until(lambda: stored(out, "answers") >= 6)
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=20)
        assert time.monotonic() - started < 10
        assert process.returncode == 130
        assert f"raq run --resume {out}" in stderr
        assert "Traceback" not in stderr
        with sqlite3.connect(out / "raq.sqlite") as conn:
            status = conn.execute("SELECT value FROM meta WHERE key='status'").fetchone()[0]
        assert status == '"interrupted"'
        resumed = subprocess.run(
            [sys.executable, "-m", "raq", "run", "--resume", str(out), "--quiet"],
            capture_output=True, text=True, env=raq_cli_env(), timeout=300,
        )  # fmt: skip
        assert resumed.returncode == 0, resumed.stderr
        assert len(pd.read_csv(out / "ranks.csv")) == N_QUESTIONS * 3 * 3


def test_runs_lists_runs(make_config: ConfigWriter, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    raq.evaluate(make_config(), output=runs / "first", limit=2, progress=False)
    done = subprocess.run(
        [sys.executable, "-m", "raq", "runs", str(runs)],
        capture_output=True, text=True, env=raq_cli_env(), timeout=60,
    )  # fmt: skip
    assert done.returncode == 0
    assert "first" in done.stdout and "complete" in done.stdout and "oracle" in done.stdout
