"""scripts/bench.py's rows still run: a small row of each kind that runs raq differently (the
pipeline with the memory scenario's phases, and the whole command), so a change to what the
bench calls fails here instead of in the next recorded bench run."""

from __future__ import annotations

import dataclasses
import importlib
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "scripts" / "bench.py"


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    """scripts/bench.py as the module ``bench``, importable by the processes its rows spawn
    (they unpickle its functions by name, with this process's sys.path)."""
    sys.path.insert(0, str(BENCH.parent))
    try:
        yield importlib.import_module("bench")
    finally:
        sys.path.remove(str(BENCH.parent))


def small(bench: ModuleType, scenario: str, kind: str, count: int) -> object:
    row = next(r for r in bench.scenarios(True)[scenario] if r.kind == kind)
    return dataclasses.replace(row, count=count, latency_s=min(row.latency_s, 0.01))


def test_a_memory_row_measures_every_phase(bench: ModuleType, tmp_path: Path) -> None:
    result = bench.run_row(small(bench, "memory", "pipeline", 40), tmp_path, False)
    assert result.answers == 80 and result.errors == 0
    assert set(result.phase_peaks_mb) == {"set-up", "pipeline", "finalize"}
    assert all(peak > 0 for peak in result.phase_peaks_mb.values())


def test_the_command_row_runs_raq_run_to_its_end(bench: ModuleType, tmp_path: Path) -> None:
    result = bench.run_row(small(bench, "latency-64", "command", 40), tmp_path, False)
    assert result.answers == 80 and result.errors == 0
    assert math.isfinite(result.wall_s) and result.wall_s > 0
