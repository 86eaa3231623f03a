"""Orchestration: config → dataset → answers → judgments → store → outputs (``evaluate``)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from raq.config import (
    LOCAL_BASE_URL,
    RunConfig,
    config_to_yaml,
    load_config,
    load_env_file,
)
from raq.core.atomic import write_text_atomically
from raq.core.progress import Progress, make_progress
from raq.endpoints.client import ChatClient
from raq.endpoints.endpoint import Endpoint, endpoint_for
from raq.endpoints.local import serving
from raq.pipeline.outputs_ahead import OutputsAhead
from raq.pipeline.preflight import preflight_endpoints
from raq.pipeline.questions import stage_questions
from raq.pipeline.records_ahead import RecordsAhead
from raq.pipeline.run_dir import check_run_dir, storage_errors
from raq.pipeline.schedule import Pipeline
from raq.stages.judge import (
    JudgeSession,
)
from raq.store import RunStore, open_cache
from raq.store.lock import RunLock

if TYPE_CHECKING:
    from raq.result import RunResult

T = TypeVar("T")


def default_run_dir(config: RunConfig) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path("runs") / f"{stamp}-{config.name}"


def evaluate(config: str | Path | RunConfig | dict, **options: Any) -> RunResult:
    """Run a whole RAQ evaluation and return its result (works inside a running event loop).

    Options are those of ``evaluate_async``. In a notebook, where a loop already runs in this
    thread, the evaluation runs on its own loop in a worker thread and this call waits for it.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_cancel_on_sigterm(evaluate_async(config, **options)))
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["result"] = asyncio.run(evaluate_async(config, **options))
        except BaseException as exc:  # re-raised in the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=work, name="raq-evaluate")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


async def _cancel_on_sigterm(work: Coroutine[Any, Any, T]) -> T:
    """SIGTERM (a CI timeout, ``kill``) stops the run like Ctrl-C: stored, resumable, no orphan
    local server. Only possible in the main thread, where the CLI runs."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    try:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    except (NotImplementedError, RuntimeError, ValueError):
        return await work
    try:
        return await work
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


async def evaluate_async(
    config: str | Path | RunConfig | dict,
    *,
    output: str | Path | None = None,
    limit: int | None = None,
    repeats: int | None = None,
    refresh: bool = False,
    preflight: bool = True,
    use_cache: bool | None = None,
    cache_path: str | Path | None = None,
    progress: Progress | bool = True,
    shard: tuple[int, int] | None = None,
) -> RunResult:
    """Evaluate the candidates of a config and write the run directory; see ``evaluate``."""
    run_config = _load(config, limit=limit, repeats=repeats)
    load_env_file(run_config.env_file)
    candidates = {
        c.name: endpoint_for(c, "candidate", run_config.env_file) for c in run_config.candidates
    }
    judges = {
        j.name: JudgeSession(
            j, endpoint_for(j, "judge", run_config.env_file) if j.kind == "llm" else None
        )
        for j in run_config.judges
    }
    run_dir = Path(output) if output else default_run_dir(run_config)
    check_run_dir(run_dir)
    with storage_errors(run_dir), RunLock(run_dir):
        return await _evaluate_in(
            run_dir, run_config, candidates, judges, refresh=refresh, preflight=preflight,
            use_cache=use_cache, cache_path=cache_path, progress=progress, shard=shard,
        )  # fmt: skip


async def _evaluate_in(
    run_dir: Path,
    run_config: RunConfig,
    candidates: dict[str, Endpoint],
    judges: dict[str, JudgeSession],
    *,
    refresh: bool,
    preflight: bool,
    use_cache: bool | None,
    cache_path: str | Path | None,
    progress: Progress | bool,
    shard: tuple[int, int] | None,
) -> RunResult:
    """The run itself, in a directory this process holds the lock of."""
    store = RunStore(run_dir)
    cache = open_cache(run_config.cache, use_cache, cache_path)
    reporter = make_progress(progress)
    local = contextlib.AsyncExitStack()
    ahead = OutputsAhead()
    records: RecordsAhead | None = None
    try:
        try:
            await stage_questions(run_config, store, shard, reporter)
            _record_start(store, run_config, run_dir)
            stored_modes = store.get_meta("judge_modes", {})
            for name, session in judges.items():
                session.asker.mode = session.asker.mode or stored_modes.get(name)
            pipeline = Pipeline(run_config, store, candidates, judges, reporter)
            records = RecordsAhead(run_dir, store, pipeline.finished_below, ahead.records_ready)
            with_work = pipeline.endpoints_with_work(cache, refresh)
            if any(e.base_url == LOCAL_BASE_URL for _, e in with_work):
                local_server = await local.enter_async_context(serving(reporter.note))
                pipeline.point_local_endpoints(local_server.base_url)
                with_work = [(role, pipeline.current(e)) for role, e in with_work]
            if preflight:
                await preflight_endpoints(with_work, pipeline)
            client = ChatClient.from_settings(run_config, cache=cache, refresh=refresh)
            client.redact.add(*pipeline.secrets())
            client.on_event = lambda kind, message: reporter.note(message)
            async with client:
                pipeline.client = client
                ahead.schedule()
                records.start()
                try:
                    await pipeline.run()
                finally:
                    ahead.stop_scheduling()
                    records.stop()
                    store.set_meta(
                        "judge_modes", {n: s.asker.mode for n, s in judges.items() if s.asker.mode}
                    )
                    store.set_meta("requests", _counters(client))
                    store.set_meta("disabled_endpoints", client.disabled())
            store.set_meta("status", "complete")
        except (asyncio.CancelledError, KeyboardInterrupt):
            store.set_meta("status", "interrupted")
            raise
        finally:
            reporter.stop()
            await local.aclose()
            if cache is not None:
                cache.close()
        ahead.join()
        # Deferred for start-up, not a circle: finalize loads pandas, scipy and matplotlib,
        # which the requests do not need, so the first request goes out before they are
        # imported.
        from raq.pipeline.finalize import finalize

        try:
            return finalize(run_dir, store, ahead.plot_helper, records.take())
        finally:
            store.close()
    finally:
        if records is not None:
            records.discard()
        ahead.close()


def _load(
    config: str | Path | RunConfig | dict, *, limit: int | None, repeats: int | None
) -> RunConfig:
    overrides = {"dataset.limit": limit, "repeats": repeats}
    if isinstance(config, RunConfig):
        data = config.model_dump(mode="json", exclude_unset=True)
        return load_config(data, overrides)
    return load_config(config, overrides)


def _record_start(store: RunStore, config: RunConfig, run_dir: Path) -> None:
    write_text_atomically(run_dir / "config.yaml", config_to_yaml(config))
    store.set_meta("config", config.model_dump(mode="json"))
    store.set_meta("name", config.name)
    if store.get_meta("created_at") is None:
        store.set_meta("created_at", datetime.now(UTC).isoformat(timespec="seconds"))
    store.set_meta("updated_at", datetime.now(UTC).isoformat(timespec="seconds"))
    store.set_meta("status", "running")


def _counters(client: ChatClient) -> dict[str, dict[str, int]]:
    return {name: vars(c).copy() for name, c in client.counters().items()}
