"""``raq merge``: combine shard stores into one run, equal to a single-machine run.

Shards of one config hold disjoint questions, each with its index in the whole question list,
so the merged store has exactly the records one machine would have written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from raq.config import RunConfig, config_to_yaml
from raq.core.errors import InputError, StoreError
from raq.pipeline.finalize import finalize
from raq.store import RunStore
from raq.store.lock import LOCK_NAME, RunLock

if TYPE_CHECKING:
    from raq.result import RunResult


def merge_runs(run_dirs: list[Path], output: Path) -> RunResult:
    """Copy every shard's questions, answers and judgments into a new run at ``output``."""
    if len(run_dirs) < 1:
        raise InputError("give at least one run directory to merge")
    if output.exists() and not output.is_dir():
        raise StoreError(f"{output}: exists and is not a directory")
    # One writer per run directory, as for raq run: a second merge into the same output is
    # refused by name instead of racing on the new store.
    with RunLock(output):
        if any(p.name != LOCK_NAME for p in output.iterdir()):
            raise StoreError(f"{output}: not empty; merge writes a new run directory")
        return _merge(run_dirs, output)


def _merge(run_dirs: list[Path], output: Path) -> RunResult:
    shards = [RunStore.open_existing(d) for d in run_dirs]
    try:
        config = _common_config(shards, run_dirs)
        merged = RunStore(output)
        try:
            _copy(shards, run_dirs, merged, config)
            (output / "config.yaml").write_text(
                config_to_yaml(RunConfig.model_validate(config)), encoding="utf-8"
            )
            return finalize(output, merged)
        finally:
            merged.close()
    finally:
        for store in shards:
            store.close()


def _common_config(shards: list[RunStore], run_dirs: list[Path]) -> dict:
    configs = [s.get_meta("config") for s in shards]
    first = json.dumps(configs[0], sort_keys=True)
    for run_dir, config in zip(run_dirs[1:], configs[1:], strict=True):
        if json.dumps(config, sort_keys=True) != first:
            raise InputError(f"{run_dir}: its config differs from {run_dirs[0]}'s; only shards "
                             "of one config can be merged")  # fmt: skip
    shard_specs = [s.get_meta("shard") for s in shards]
    counts = {spec[1] for spec in shard_specs if spec}
    if len(counts) > 1:
        raise InputError(f"the runs are slices of different shard counts: {sorted(counts)}")
    numbers = [spec[0] for spec in shard_specs if spec]
    if len(numbers) != len(set(numbers)):
        raise InputError("the same shard appears twice")
    if counts and len(numbers) < next(iter(counts)):
        missing = sorted(set(range(next(iter(counts)))) - set(numbers))
        raise InputError(f"shard(s) {missing} of {next(iter(counts))} are missing")
    return configs[0]


def _copy(shards: list[RunStore], run_dirs: list[Path], merged: RunStore, config: dict) -> None:
    for store in shards:
        merged.copy_from(store.path)
    statuses = {s.get_meta("status") for s in shards}
    merged.set_meta("config", config)
    merged.set_meta("name", config.get("name"))
    merged.set_meta("status", "complete" if statuses == {"complete"} else "incomplete shards")
    merged.set_meta("merged_from", [str(d) for d in run_dirs])
    merged.set_meta("created_at", min(str(s.get_meta("created_at")) for s in shards))
    merged.set_meta("requests", _sum_requests([s.get_meta("requests") or {} for s in shards]))
    merged.set_meta("judge_modes", shards[0].get_meta("judge_modes") or {})


def _sum_requests(parts: list[dict]) -> dict:
    total: dict[str, dict[str, int]] = {}
    for part in parts:
        for name, counters in part.items():
            into = total.setdefault(name, {})
            for key, value in counters.items():
                into[key] = into.get(key, 0) + value
    return total
