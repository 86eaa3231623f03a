"""The records read while a run's requests are in flight (raq.pipeline.records_ahead): the
same files as one pass over the finished store, however the questions were split, with a
fallback where the pass's assumption fails, and nothing left behind by an interrupted run."""

from __future__ import annotations

import asyncio
import pickle
import random
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import raq
import raq.pipeline.outputs_ahead
import raq.pipeline.records_ahead
from raq.pipeline.finalize import load_result
from raq.result.reading import RecordPass, read_records
from raq.store import RunStore
from raq.testing import Behaviour, FakeOpenAIServer
from raq.testing.fake_server import judge_presented_order

from .conftest import ConfigWriter, default_behaviours
from .test_finalize import _files

RECORD_FILES = ("answers.jsonl", "judgments.jsonl", "ranks.csv")


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    """The suite's models, each answer taking 20 ms (a run long enough to read during), and a
    judge that ranks in presented order (it fails its planted controls)."""
    behaviours = default_behaviours() | {"positional": Behaviour(reply=judge_presented_order())}
    for behaviour in behaviours.values():
        behaviour.latency_s = 0.02
    with FakeOpenAIServer(behaviours) as running:
        yield running


@pytest.fixture
def read_during_the_run(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Read as soon as a question is finished, with the outputs' modules loaded up front;
    returns, for each finished pass, how many questions it had read before the end."""
    # Everything the run imports in the background, fonts included, so its imports are done
    # at once (they pause for the requests and would outlast a run this short).
    raq.pipeline.outputs_ahead._import_outputs(threading.Event())

    monkeypatch.setattr(raq.pipeline.outputs_ahead, "PREPARE_OUTPUTS_AFTER_S", 0.0)
    monkeypatch.setattr(raq.pipeline.records_ahead, "READ_EVERY_S", 0.001)
    read_before_the_end: list[int] = []
    finish = RecordPass.finish

    def spy(self: RecordPass) -> Any:
        if self.expected:
            read_before_the_end.append(self.read_below)
        return finish(self)

    monkeypatch.setattr(RecordPass, "finish", spy)
    return read_before_the_end


@pytest.mark.parametrize(
    "config",
    [
        {"repeats": 2},
        {"repeats": 2, "schedule": "phased"},
        {"repeats": 1, "concurrency": 2},
    ],
    ids=["interleaved", "phased", "one-at-a-time"],
)
def test_a_run_read_during_its_requests_writes_the_files_a_fresh_report_does(
    make_config: ConfigWriter, tmp_path: Path, read_during_the_run: list[int], config: dict
) -> None:
    run_dir = tmp_path / "run"
    raq.evaluate(make_config(**config), output=run_dir, progress=False)
    assert len(read_during_the_run) == 1 and read_during_the_run[0] > 0, "read during the run"
    written = _files(run_dir)
    load_result(run_dir)  # one pass over the finished store
    assert [name for name in written if written[name] != _files(run_dir)[name]] == []


def test_a_candidate_that_never_answers_is_read_again_at_the_end(
    make_config: ConfigWriter,
    tmp_path: Path,
    read_during_the_run: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pass assumes every judge ranks every candidate; one that never answered is never
    ranked, so the records are read again in one pass, and the files are still the same."""
    config = make_config(repeats=1, max_retries=0)
    text = config.read_text().replace("model: clueless", "model: nobody-serves-this")
    config.write_text(text)
    run_dir = tmp_path / "run"
    passes: list[bool] = []
    init = RecordPass.__init__

    def spy(self: RecordPass, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        passes.append(self.expected)

    monkeypatch.setattr(RecordPass, "__init__", spy)
    result = raq.evaluate(config, output=run_dir, progress=False, preflight=False)
    assert result.summary_json["candidates"]["clueless"]["failed_answers"] == 24
    assert read_during_the_run and read_during_the_run[0] > 0
    assert passes == [True, False], "read during the run, then again from the start"
    written = _files(run_dir)
    load_result(run_dir)
    assert [name for name in written if written[name] != _files(run_dir)[name]] == []


def test_a_judge_failing_its_controls_read_during_the_run(
    make_config: ConfigWriter,
    tmp_path: Path,
    read_during_the_run: list[int],
    server: FakeOpenAIServer,
) -> None:
    positional = {"name": "positional", "base_url": server.base_url, "model": "positional"}
    judge = {"name": "judge", "base_url": server.base_url, "model": "judge"}
    run_dir = tmp_path / "run"
    result = raq.evaluate(
        make_config(judges=[judge, positional], repeats=1), output=run_dir, progress=False
    )
    assert result.summary_json["judges"]["positional"]["in_verdict"] is False
    assert read_during_the_run and read_during_the_run[0] > 0
    written = _files(run_dir)
    load_result(run_dir)
    assert [name for name in written if written[name] != _files(run_dir)[name]] == []


def test_any_split_of_the_questions_reads_the_same_records(
    make_config: ConfigWriter, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    raq.evaluate(make_config(repeats=2), output=run_dir, progress=False)
    store = RunStore.open_existing(run_dir)
    try:
        once = read_records(*_record_paths(store, tmp_path / "once"))
        expected = {name: (tmp_path / "once" / name).read_bytes() for name in RECORD_FILES}
        rng = random.Random(5)
        for attempt in range(4):
            out = tmp_path / f"split-{attempt}"
            record_pass = RecordPass(*_record_paths(store, out), expect_every_rank=True)
            below = 0
            while below < 24:
                below += rng.randint(1, 7)
                record_pass.feed(below)
            records = record_pass.finish()
            assert {name: (out / name).read_bytes() for name in RECORD_FILES} == expected
            assert records.answers == once.answers and records.judge_tallies == once.judge_tallies
            assert pickle.dumps(records.words_ranks) == pickle.dumps(once.words_ranks)
            # The rank tallies and box statistics, state for state (arrays included).
            assert pickle.dumps(records.ranks) == pickle.dumps(once.ranks)
            assert pickle.dumps(records.speed_boxes) == pickle.dumps(once.speed_boxes)
    finally:
        store.close()


def test_a_discarded_pass_leaves_the_files_it_would_have_replaced(
    make_config: ConfigWriter, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    raq.evaluate(make_config(repeats=1), output=run_dir, progress=False)
    before = {name: (run_dir / name).read_bytes() for name in RECORD_FILES}
    store = RunStore.open_existing(run_dir)
    try:
        record_pass = RecordPass(*_record_paths(store, run_dir), expect_every_rank=True)
        record_pass.feed(10)
        record_pass.discard()
    finally:
        store.close()
    assert {name: (run_dir / name).read_bytes() for name in RECORD_FILES} == before
    assert sorted(p.name for p in run_dir.glob(".*.tmp")) == []


def test_an_interrupted_run_leaves_no_half_written_file(
    make_config: ConfigWriter, tmp_path: Path, read_during_the_run: list[int]
) -> None:
    run_dir = tmp_path / "run"
    config = make_config(repeats=3, concurrency=1)

    async def interrupt() -> None:
        run = asyncio.create_task(
            raq.evaluate_async(config, output=run_dir, progress=False, preflight=False)
        )
        deadline = asyncio.get_running_loop().time() + 30
        while not list(run_dir.glob(".answers.jsonl.*.tmp")):  # the pass has started
            assert asyncio.get_running_loop().time() < deadline and not run.done()
            await asyncio.sleep(0.01)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run

    asyncio.run(interrupt())
    assert sorted(p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")) == []
    assert not (run_dir / "answers.jsonl").exists()
    store = RunStore.open_existing(run_dir)
    try:
        assert store.get_meta("status") == "interrupted"
    finally:
        store.close()


def _record_paths(store: RunStore, out: Path) -> tuple[RunStore, Path, Path, Path]:
    out.mkdir(exist_ok=True)
    return store, out / "judgments.jsonl", out / "answers.jsonl", out / "ranks.csv"


def test_the_record_pass_may_start_before_the_outputs_slow_imports_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pass needs only the tallies (numpy): it reads along with the requests while scipy,
    statsmodels and matplotlib are still being imported, so a long import (they give way to the
    requests, and took 6 to 7 s of a 9 s run) no longer leaves it all to finalize."""
    import raq.report.plots

    fonts_read = threading.Event()
    monkeypatch.setattr(raq.report.plots, "prepare", lambda: fonts_read.wait(10))
    ahead = raq.pipeline.outputs_ahead.OutputsAhead()
    ahead._start_imports()
    try:
        for _ in range(500):
            if ahead.records_ready():
                break
            threading.Event().wait(0.01)
        assert ahead.records_ready(), "the record pass's modules were imported first"
        assert ahead._imports is not None and ahead._imports.is_alive(), "the rest still loads"
    finally:
        fonts_read.set()
        ahead.join()


def test_the_record_pass_modules_load_without_scipy_pandas_or_matplotlib() -> None:
    """What the pass imports before it starts: the tallies and numpy, about 0.05 s."""
    code = (
        "import sys\nimport raq.result.reading\n"
        "print(*(m in sys.modules for m in ('numpy', 'scipy', 'pandas', 'matplotlib')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["True", "False", "False", "False"]


def test_finished_questions_past_the_last_one_do_not_keep_the_reader_busy(
    make_config: ConfigWriter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pass reads at most to the last question; should the run say more are finished, the
    reader waits for its next turn instead of asking the pass again and again."""
    run_dir = tmp_path / "run"
    raq.evaluate(make_config(repeats=1), output=run_dir, progress=False)
    (run_dir / "answers.jsonl").unlink()  # the pass writes the record files anew
    monkeypatch.setattr(raq.pipeline.records_ahead, "READ_EVERY_S", 0.01)
    store = RunStore.open_existing(run_dir)
    feeds: list[int] = []
    feed = RecordPass.feed

    def counted(self: RecordPass, below: int = 2**63 - 1) -> None:
        feeds.append(below)
        feed(self, below)

    monkeypatch.setattr(RecordPass, "feed", counted)

    async def read_a_while() -> RecordPass | None:
        ahead = raq.pipeline.records_ahead.RecordsAhead(run_dir, store, lambda: 10**9, lambda: True)
        ahead.start()
        await asyncio.sleep(0.2)
        ahead.stop()
        await asyncio.sleep(0)
        return ahead.take()

    try:
        record_pass = asyncio.run(read_a_while())
        assert record_pass is not None and record_pass.read_below == store.question_index_end()
        assert len(feeds) < 100, f"asked {len(feeds)} times in 0.2 s"
        record_pass.finish()
    finally:
        store.close()
