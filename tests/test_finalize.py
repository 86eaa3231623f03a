"""Finalize, the outputs a run writes after its last answer: the same files however they are
prepared (in the background during the run, or afresh by ``raq report``), in one pass over the
judgments unless a judge fails its planted controls."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import raq
from raq.pipeline.finalize import finalize, load_result
from raq.report.plot_helper import PlotHelper
from raq.result.files import JsonlWriter, json_safe
from raq.store import RunStore
from raq.testing import Behaviour, FakeOpenAIServer
from raq.testing.fake_server import judge_presented_order

from .conftest import ConfigWriter, default_behaviours

OUTPUTS = (
    "answers.jsonl", "judgments.jsonl", "ranks.csv", "pvalues.csv", "summary.json", "report.md",
    "report.html",
)  # fmt: skip
PLOTS = ("bars", "tradeoff", "significance", "critical_difference", "latency", "position_bias")


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    """The suite's server with a judge that ranks in presented order: it fails its controls."""
    behaviours = default_behaviours() | {"positional": Behaviour(reply=judge_presented_order())}
    with FakeOpenAIServer(behaviours) as running:
        yield running


def _files(run_dir: Path) -> dict[str, bytes]:
    names = [*OUTPUTS, *(f"plots/{key}.png" for key in PLOTS)]
    return {name: (run_dir / name).read_bytes() for name in names}


def test_a_run_and_a_fresh_report_of_its_store_write_identical_files(
    make_config: ConfigWriter, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    raq.evaluate(make_config(repeats=2), output=run_dir, progress=False)
    written = _files(run_dir)
    load_result(run_dir)  # raq report: nothing prepared in the background
    again = _files(run_dir)
    assert [name for name in written if written[name] != again[name]] == []


def test_a_run_writes_every_output_when_preparing_them_in_the_background_fails(
    make_config: ConfigWriter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def broken() -> None:
        calls.append(1)
        raise RuntimeError("no fonts today")

    monkeypatch.setattr("raq.report.plots.prepare", broken)
    monkeypatch.setattr("raq.pipeline.outputs_ahead.PREPARE_OUTPUTS_AFTER_S", 0.0)  # a short run
    run_dir = tmp_path / "run"
    result = raq.evaluate(make_config(repeats=1), output=run_dir, progress=False)
    assert calls == [1]
    assert set(result.plots) == set(PLOTS)
    assert all((run_dir / name).stat().st_size > 0 for name in _files(run_dir))


def test_a_judge_that_fails_its_controls_leaves_the_verdict_as_if_it_had_not_judged(
    make_config: ConfigWriter, tmp_path: Path, server: FakeOpenAIServer
) -> None:
    positional = {"name": "positional", "base_url": server.base_url, "model": "positional"}
    judge = {"name": "judge", "base_url": server.base_url, "model": "judge"}
    panel = raq.evaluate(
        make_config(judges=[judge, positional]), output=tmp_path / "panel", progress=False
    ).summary_json
    alone = raq.evaluate(
        make_config(judges=[judge]), output=tmp_path / "alone", progress=False
    ).summary_json
    assert panel["judges"]["positional"]["qualified"] is False
    assert panel["judges"]["positional"]["in_verdict"] is False
    assert panel["judges"]["judge"]["in_verdict"] is True
    verdict = ("mean_rank", "median_rank", "std_rank", "n_ranks", "mean_rank_ci95")
    for name, entry in alone["candidates"].items():
        assert {k: panel["candidates"][name][k] for k in verdict} == {k: entry[k] for k in verdict}
    assert panel["significant_pairs"] == alone["significant_pairs"]
    assert panel["pairs"] == alone["pairs"]
    assert panel["n_questions_ranked"] == alone["n_questions_ranked"]
    # The diagnostics still see both judges.
    assert set(panel["diagnostics"]["position_bias"]["judges"]) == {"judge", "positional"}


@pytest.mark.parametrize(
    "row",
    [
        {"question_id": "q1", "latency_s": 0.25, "ranks": {"a": 1.0, "b": 2.0}, "x": None},
        {"latency_s": math.nan, "ttft_s": math.inf, "words": -math.inf},
        {"n": np.int64(3), "f": np.float64(0.5), "nested": [{"v": np.float32(2.0)}, (1, 2)]},
        {"text": 'naïve → 東京 "quoted"\n', "ranking": ["b", "a"], "ok": True},
    ],
)
def test_a_jsonl_row_is_written_as_its_json_safe_form(row: dict, tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    with JsonlWriter(path) as out:
        out.write(row)
    expected = json.dumps(json_safe(row), ensure_ascii=False) + "\n"
    assert path.read_text(encoding="utf-8") == expected


def _ready_helper() -> PlotHelper:
    helper = PlotHelper.start()
    assert helper is not None, "this test needs two cores"
    deadline = time.monotonic() + 120
    while not helper.ready():
        assert time.monotonic() < deadline and helper.process.poll() is None
        time.sleep(0.05)
    return helper


def _finalize_again(run_dir: Path, helper: PlotHelper | None) -> dict[str, bytes]:
    store = RunStore.open_existing(run_dir)
    try:
        result = finalize(run_dir, store, helper)
    finally:
        store.close()
        if helper is not None:
            helper.close()
    assert list(result.plots) == list(PLOTS)
    return _files(run_dir)


def test_plots_drawn_half_in_a_helper_process_are_the_same_files(
    make_config: ConfigWriter, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    raq.evaluate(make_config(repeats=2), output=run_dir, progress=False)
    alone = _finalize_again(run_dir, None)
    helper = _ready_helper()
    receive = helper.receive
    helper.receive = lambda within_s: receive(120.0)  # type: ignore[method-assign]
    shared = _finalize_again(run_dir, helper)
    assert helper.process.returncode == 0  # it drew its share, answered and exited
    assert [name for name in alone if alone[name] != shared[name]] == []


def test_a_helper_that_died_leaves_its_plots_to_the_run(
    make_config: ConfigWriter, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    raq.evaluate(make_config(repeats=1), output=run_dir, progress=False)
    alone = _finalize_again(run_dir, None)
    for path in (run_dir / "plots").iterdir():
        path.unlink()
    helper = _ready_helper()
    send = helper.send

    def send_then_die(*args: Any) -> bool:
        sent = send(*args)
        helper.process.kill()
        helper.process.wait()
        return sent

    helper.send = send_then_die  # type: ignore[method-assign]
    assert _finalize_again(run_dir, helper) == alone


def test_the_helpers_rehearsal_leaves_no_file_and_no_style_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The helper warms up on a throwaway figure while the run's requests are in flight; what
    it draws afterwards must not depend on it (the test above compares the files)."""
    import matplotlib

    from raq.report.plots.drawing import rehearse_drawing

    monkeypatch.chdir(tmp_path)
    before = dict(matplotlib.rcParams)
    assert rehearse_drawing(), "it drew (a rehearsal that quietly fails warms nothing)"
    assert dict(matplotlib.rcParams) == before
    assert list(tmp_path.iterdir()) == []
