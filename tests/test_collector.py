"""The cyclic garbage collector while raq imports: paused, then running again, and frozen
only in raq's own process (the command), never in a library caller's."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import raq.pipeline.outputs_ahead as outputs_ahead
from raq.core import collector
from tests.conftest import raq_cli_env


@pytest.fixture(autouse=True)
def fresh_collector(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(
        collector, "_state", {"pauses": 0, "was_enabled": False, "owner": False, "froze": False}
    )
    enabled, frozen = gc.isenabled(), gc.get_freeze_count()
    yield
    if not frozen:
        gc.unfreeze()
    (gc.enable if enabled else gc.disable)()


def test_imports_run_paused_and_the_collector_runs_again_after() -> None:
    gc.enable()
    with collector.paused():
        assert not gc.isenabled()
        with collector.paused():  # the command's and the background imports may nest
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0  # a library caller's objects are never frozen
    assert not collector.froze_process()


def test_in_its_own_process_raq_freezes_what_the_imports_built() -> None:
    gc.enable()
    collector.own_process()
    with collector.paused():
        built = [[i] for i in range(100)]
    assert gc.isenabled()
    assert gc.get_freeze_count() >= len(built)
    assert collector.froze_process()


def test_a_collector_the_caller_turned_off_stays_off() -> None:
    gc.disable()
    collector.own_process()
    with collector.paused():
        pass
    assert not gc.isenabled()
    assert gc.get_freeze_count() == 0


def test_resuming_without_a_pause_changes_nothing() -> None:
    gc.enable()
    collector.own_process()
    collector.resume()
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_the_outputs_background_imports_run_paused(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bool] = []
    monkeypatch.setattr(outputs_ahead, "_import_outputs", lambda _: seen.append(gc.isenabled()))
    gc.enable()
    outputs_ahead.OutputsAhead()._import_outputs_paused()
    assert seen == [False] and gc.isenabled()


def test_the_command_resumes_the_collector_before_it_works(tmp_path: Path) -> None:
    """`raq` pauses the collector for its imports; a command's work runs with it on, over a
    frozen start-up."""
    code = (
        "import atexit, gc, sys\n"
        "from raq.cli import main\n"
        "atexit.register(lambda: print('collector', gc.isenabled(), gc.get_freeze_count() > 0))\n"
        f"sys.argv = ['raq', 'runs', {str(tmp_path)!r}]\n"
        "main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=raq_cli_env(),
        cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("collector True True")


def test_a_librarys_full_collection_scans_only_what_is_new_and_no_freeze_is_left() -> None:
    with collector.full_collections_cheap():
        assert gc.get_freeze_count() > 0  # what existed is out of the pass
    assert gc.get_freeze_count() == 0


def test_a_process_raq_froze_stays_frozen_after_a_librarys_collection() -> None:
    gc.enable()
    collector.own_process()
    with collector.paused():
        pass
    frozen = gc.get_freeze_count()
    with collector.full_collections_cheap():
        pass
    assert gc.get_freeze_count() == frozen > 0
