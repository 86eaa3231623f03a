"""Orchestration: config → dataset → answers → judgments → store → outputs (``evaluate``)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import signal
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from raq.answers import answer_fingerprint, answer_request, ask_candidate
from raq.atomic import write_text_atomically
from raq.client import ChatClient, Endpoint, endpoint_for, preflight
from raq.config import (
    LOCAL_BASE_URL,
    CandidateConfig,
    JudgeConfig,
    RunConfig,
    config_to_yaml,
    endpoint_identity,
    load_config,
    load_env_file,
)
from raq.controls import CONTROLS, control_texts, is_control
from raq.errors import ConfigError, EndpointError, StoreError
from raq.judge import (
    JudgeSession,
    judgment_fingerprint,
    llm_judgment,
    presented_order,
    reference_judgment,
    shown_texts,
    with_controls,
)
from raq.progress import Progress, make_progress
from raq.records import Answer, Judgment, QAItem
from raq.report.plot_helper import PlotHelper
from raq.run_lock import LOCK_NAME, RunLock
from raq.store import STORE_NAME, ResponseCache, RunStore, open_cache

if TYPE_CHECKING:
    from raq.result import RunResult

T = TypeVar("T")
# Seconds into the requests when the plot helper process starts: a shorter run ends before the
# helper could be ready, and would only pay for starting it.
PLOT_HELPER_AFTER_S = 2.0


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
    _check_run_dir(run_dir)
    with storage_errors(run_dir), RunLock(run_dir):
        return await _evaluate_in(
            run_dir, run_config, candidates, judges, refresh=refresh, preflight=preflight,
            use_cache=use_cache, cache_path=cache_path, progress=progress, shard=shard,
        )  # fmt: skip


@contextlib.contextmanager
def storage_errors(run_dir: Path) -> Iterator[None]:
    """A full disk, a read-only directory or a locked store as one line that says what to do
    (the store keeps every record committed before it)."""
    import errno
    import sqlite3

    try:
        yield
    except sqlite3.OperationalError as exc:
        text = str(exc)
        if "full" in text:
            raise StoreError(_disk_full(run_dir)) from None
        if "locked" in text:
            raise StoreError(
                f"{run_dir / STORE_NAME}: the run store is locked by another process ({text}); "
                "wait for it to finish or stop it"
            ) from None
        if "readonly" in text or "read-only" in text:
            raise StoreError(f"{run_dir}: cannot write the run store ({text})") from None
        raise StoreError(f"{run_dir / STORE_NAME}: {text}") from None
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise StoreError(_disk_full(run_dir)) from None
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            where = exc.filename or run_dir
            raise StoreError(f"{where}: cannot write here ({exc.strerror})") from None
        raise


def _disk_full(run_dir: Path) -> str:
    return (
        f"{run_dir}: no space left on the device; every answer and judgment stored so far is "
        "kept: free some space, then run the same command again (into the same --output it "
        f"resumes; or raq run --resume {run_dir})"
    )


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
    helpers: list[PlotHelper] = []  # a process that draws half the plots, once started
    complete = False
    try:
        await _questions(run_config, store, shard, reporter)
        _record_start(store, run_config, run_dir)
        for name, session in judges.items():
            session.asker.mode = session.asker.mode or store.get_meta("judge_modes", {}).get(name)
        pipeline = _Pipeline(run_config, store, candidates, judges, reporter)
        with_work = pipeline.endpoints_with_work(cache, refresh)
        if any(e.base_url == LOCAL_BASE_URL for _, e in with_work):
            from raq.local import serving

            local_server = await local.enter_async_context(serving(reporter.note))
            pipeline.point_local_endpoints(local_server.base_url)
            with_work = [(role, pipeline.current(e)) for role, e in with_work]
        if preflight:
            await _preflight(with_work, pipeline)
        client = ChatClient.from_settings(run_config, cache=cache, refresh=refresh)
        client.redact.add(*pipeline.secrets())
        client.on_event = lambda kind, message: reporter.note(message)
        async with client:
            pipeline.client = client
            outputs_ready = _prepare_outputs()
            # Not for a run shorter than the helper's own start (about 2 s of imports).
            helper_due = asyncio.get_running_loop().call_later(
                PLOT_HELPER_AFTER_S, lambda: helpers.extend(filter(None, [PlotHelper.start()]))
            )
            try:
                await pipeline.run()
            finally:
                helper_due.cancel()
                store.set_meta(
                    "judge_modes", {n: s.asker.mode for n, s in judges.items() if s.asker.mode}
                )
                store.set_meta("requests", _counters(client))
                store.set_meta("disabled_endpoints", client.disabled())
        store.set_meta("status", "complete")
        complete = True
    except (asyncio.CancelledError, KeyboardInterrupt):
        store.set_meta("status", "interrupted")
        raise
    finally:
        if not complete:
            for helper in helpers:
                helper.close()
        reporter.stop()
        await local.aclose()
        if cache is not None:
            cache.close()
    outputs_ready.join()
    from raq.result import finalize

    try:
        return finalize(run_dir, store, helpers[0] if helpers else None)
    finally:
        store.close()
        for helper in helpers:
            helper.close()


def _prepare_outputs() -> threading.Thread:
    """Import what the outputs need (pandas, scipy, statsmodels, matplotlib, the report modules,
    the fonts' glyph tables) in a background thread while the requests are in flight: about a
    second of work that would otherwise follow the last answer. A failure is left for the
    outputs themselves to meet and report."""

    def prepare() -> None:
        with contextlib.suppress(Exception):
            import statsmodels.stats.multitest  # noqa: F401

            import raq.report.html
            import raq.report.markdown
            import raq.result  # noqa: F401
            from raq.report.plots import prepare

            prepare()

    thread = threading.Thread(target=prepare, name="raq-prepare-outputs", daemon=True)
    thread.start()
    return thread


def _load(
    config: str | Path | RunConfig | dict, *, limit: int | None, repeats: int | None
) -> RunConfig:
    overrides = {"dataset.limit": limit, "repeats": repeats}
    if isinstance(config, RunConfig):
        data = config.model_dump(mode="json", exclude_unset=True)
        return load_config(data, overrides)
    return load_config(config, overrides)


def _check_run_dir(run_dir: Path) -> None:
    """Refuse to write into a directory that holds something other than a raq run."""
    if run_dir.exists() and not run_dir.is_dir():
        raise StoreError(f"{run_dir}: exists and is not a directory")
    others = run_dir.is_dir() and any(p.name != LOCK_NAME for p in run_dir.iterdir())
    if others and not (run_dir / STORE_NAME).exists():
        raise StoreError(
            f"{run_dir}: not empty and not a raq run directory; raq will not write into it"
        )


def _dataset_key(config: RunConfig, shard: tuple[int, int] | None) -> str:
    material = json.dumps(
        [config.dataset.model_dump(mode="json"), config.seed, shard], sort_keys=True
    )
    return hashlib.sha256(material.encode()).hexdigest()


async def _questions(
    config: RunConfig, store: RunStore, shard: tuple[int, int] | None, progress: Progress
) -> int:
    """Store the run's questions, each with its index in the whole list (which fixes its
    presented orders, so shards merge into exactly the single-machine run), and return how
    many; on resume they are already stored. Questions go from the dataset to the store one
    at a time: the run never holds them as a list."""
    key = _dataset_key(config, shard)
    if store.get_meta("dataset_key") == key and store.question_count():
        return store.question_count()
    from raq.dataset import iter_items

    if config.dataset.generate and not Path(config.dataset.path).exists():
        await _generate_dataset(config, progress)
    generators: list[dict[str, Any]] = []
    indexed: Iterator[tuple[int, QAItem]] = enumerate(
        iter_items(config.dataset, config.seed, generators)
    )
    if shard is not None:
        number, count = shard
        indexed = ((i, item) for i, item in indexed if i % count == number)
    count = store.save_questions(indexed)
    _check_generators(config, generators)
    store.set_meta("dataset_key", key)
    store.set_meta("shard", list(shard) if shard else None)
    return count


async def _generate_dataset(config: RunConfig, progress: Progress) -> None:
    """The ``dataset.generate`` hook: write the dataset first (its requests are cached too)."""
    from raq.generate import generate_async, load_generate_config

    assert config.dataset.generate
    generate_config = load_generate_config(config.dataset.generate)
    forbid = [*generate_config.forbid_models, *config.candidates]
    generate_config = generate_config.model_copy(update={"forbid_models": forbid})
    n = config.dataset.limit or generate_config.n
    progress.note(f"generating {n} questions into {config.dataset.path} …")
    report = await generate_async(
        generate_config, Path(config.dataset.path), n=n, progress=progress
    )
    progress.note(report.line())


def _check_generators(config: RunConfig, generators: list[dict[str, Any]]) -> None:
    """Data written by one of the candidates would favour it: refuse, as for a judge."""
    if config.allow_self_judge:
        return
    by_identity = {c.identity(): c.name for c in config.candidates}
    for generator in generators:
        identity = endpoint_identity(generator.get("base_url"), generator.get("model"))
        if identity in by_identity:
            raise ConfigError(
                f"dataset '{config.dataset.path}' was generated by {generator.get('model')} at "
                f"{generator.get('base_url')}, which is candidate '{by_identity[identity]}': it "
                "would be judged on its own questions (allow_self_judge: true to do it anyway)"
            )


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


def preflight_body(pipeline: _Pipeline, role: str, name: str) -> dict[str, Any]:
    """A one-token request of the kind the run will send: a candidate's plain chat with its
    own parameters, a judge's in its structured-output mode when the config forces one."""
    from raq.judge import ranking_fields

    messages = [{"role": "user", "content": "Reply with the word OK."}]
    if role == "candidate":
        params = dict(pipeline.candidate_configs[name].params)
        fields: dict[str, Any] = {}
    else:
        config = pipeline.judges[name].config
        params = {"temperature": 0.0, **config.params}
        mode = config.structured_output
        fields = ranking_fields(mode, 2) if mode != "auto" else {}
    params.pop("max_completion_tokens", None)
    return {"messages": messages, **params, **fields, "max_tokens": 1}


async def _preflight(endpoints: list[tuple[str, Endpoint]], pipeline: _Pipeline) -> None:
    """Fail fast, naming the endpoint, when one that has work to do refuses a real request."""
    requests: dict[str, tuple[str, Endpoint, dict[str, Any]]] = {}
    for role, endpoint in endpoints:
        body = preflight_body(pipeline, role, endpoint.name)
        same = json.dumps([endpoint.base_url, endpoint.model, endpoint.api_key, body])
        requests.setdefault(same, (role, endpoint, body))
    timeout_s = pipeline.config.timeout_s
    secrets = pipeline.secrets()
    results = await asyncio.gather(
        *(
            preflight(e, body, timeout_s=timeout_s, secrets=secrets)
            for _, e, body in requests.values()
        )
    )
    for (role, endpoint, _), problem in zip(requests.values(), results, strict=True):
        if problem:
            raise EndpointError(
                f"{role} '{endpoint.name}' at {endpoint.base_url} {problem} "
                "(skip this check with --no-preflight)"
            )


def repeats_for(judge: JudgeConfig, repeats: int) -> int:
    """A reference judge is deterministic: repeating it would only duplicate its ranks."""
    return 1 if judge.kind == "reference" else repeats


class _Pipeline:
    """Runs every question through answers then judgments, storing each record as it lands."""

    def __init__(
        self,
        config: RunConfig,
        store: RunStore,
        candidates: dict[str, Endpoint],
        judges: dict[str, JudgeSession],
        progress: Progress,
    ) -> None:
        self.config = config
        self.store = store
        self.candidates = candidates
        self.candidate_configs: dict[str, CandidateConfig] = {c.name: c for c in config.candidates}
        self.judges = judges
        self.progress = progress
        self.client: ChatClient | None = None
        # Phased schedule: set once every candidate has been asked every question in this run,
        # so judging reuses those answers (a failed one too) instead of asking again.
        self._answers_final = False

    def point_local_endpoints(self, base_url: str) -> None:
        """Send ``base_url: local`` endpoints to the server raq started."""
        for name, endpoint in self.candidates.items():
            if endpoint.cache_url == LOCAL_BASE_URL:
                self.candidates[name] = replace(endpoint, base_url=base_url)
        for session in self.judges.values():
            if session.endpoint is not None and session.endpoint.cache_url == LOCAL_BASE_URL:
                session.endpoint = replace(session.endpoint, base_url=base_url)

    def secrets(self) -> list[str | None]:
        """Every configured key: redacted from whatever any server says."""
        judges = [s.endpoint for s in self.judges.values() if s.endpoint is not None]
        return [e.api_key for e in [*self.candidates.values(), *judges]]

    def current(self, endpoint: Endpoint) -> Endpoint:
        if endpoint.name in self.candidates:
            return self.candidates[endpoint.name]
        session = self.judges[endpoint.name]
        return session.endpoint or endpoint

    def endpoints_with_work(
        self, cache: ResponseCache | None, refresh: bool
    ) -> list[tuple[str, Endpoint]]:
        """Endpoints that may be called: preflight skips those whose work is all stored."""
        from raq.client import cache_key

        needed = {
            name: repeats_for(session.config, self.config.repeats)
            for name, session in self.judges.items()
            if session.endpoint is not None
        }
        candidates_with_work: set[str] = set()
        judges_with_work: set[str] = set()
        for _, item in self.store.iter_questions():
            stored = self.store.stored_answers(item.id)
            for name, endpoint in self.candidates.items():
                if name in candidates_with_work:
                    continue
                body = answer_request(self.candidate_configs[name], self.config.prompts, item)
                if refresh or (
                    _reusable(stored.get(name), answer_fingerprint(endpoint, body)) is None
                    and (cache is None or cache.get(cache_key(endpoint, body)) is None)
                ):
                    candidates_with_work.add(name)
            marks = self.store.judgment_marks(item.id)
            for name, repeats in needed.items():
                if refresh or any(not marks.get((r, name), ("", False))[1] for r in range(repeats)):
                    judges_with_work.add(name)
            if candidates_with_work == set(self.candidates) and judges_with_work == set(needed):
                break
        out: list[tuple[str, Endpoint]] = [
            ("candidate", self.candidates[name])
            for name in self.candidates
            if name in candidates_with_work
        ]
        for name in needed:
            if name in judges_with_work:
                endpoint = self.judges[name].endpoint
                assert endpoint is not None
                out.append(("judge", endpoint))
        return out

    async def run(self) -> None:
        n_candidates = len(self.candidates)
        n_questions = self.store.question_count()
        judge_total = (
            sum(repeats_for(s.config, self.config.repeats) for s in self.judges.values())
            * n_questions
        )
        self.progress.start("answers", n_questions * n_candidates)
        self.progress.start("judgments", judge_total)
        if self.config.schedule == "phased":
            await self._answer_phase(n_questions)
        workers = max(8, 2 * self.config.concurrency // max(1, n_candidates))
        await self._over_questions(self._question, workers, n_questions)

    async def _over_questions(
        self, job: Callable[[int, QAItem], Awaitable[object]], workers: int, n_questions: int
    ) -> None:
        """Run ``job`` on every stored question with ``workers`` workers. They share one reader
        of the stored questions, so only the questions in flight (and one page) are in memory,
        however many the run has."""
        questions = self.store.iter_questions()

        async def worker() -> None:
            for index, item in questions:
                await job(index, item)

        tasks = [asyncio.create_task(worker()) for _ in range(min(workers, n_questions))]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _answer_phase(self, n_questions: int) -> None:
        """Phased schedule: every candidate answers every question before any judging.
        Candidates on the same server take turns, one model at a time, so a server that holds
        one model (llama.cpp, Ollama, one GPU) loads each once; different servers work at once.
        """
        by_server: dict[str, list[str]] = {}
        for name, endpoint in self.candidates.items():
            by_server.setdefault(endpoint.base_url, []).append(name)
        workers = max(8, 2 * self.config.concurrency // len(by_server))

        async def one_model_at_a_time(names: list[str]) -> None:
            for name in names:

                async def answer(index: int, item: QAItem, name: str = name) -> Answer:
                    stored = self.store.stored_answers(item.id).get(name)
                    return await self._answer(item, name, stored)

                await self._over_questions(answer, workers, n_questions)

        await asyncio.gather(*(one_model_at_a_time(names) for names in by_server.values()))
        self._answers_final = True

    async def _question(self, index: int, item: QAItem) -> None:
        names = list(self.candidates)
        stored = self.store.stored_answers(item.id)
        answers = await asyncio.gather(
            *(self._answer(item, name, stored.get(name)) for name in names)
        )
        by_name = {a.candidate: a for a in answers}
        present = [name for name in names if by_name[name].ok]
        marks = self.store.judgment_marks(item.id)
        planted: dict[str, str] | None = None
        jobs = []
        for judge_name, session in self.judges.items():
            needed = repeats_for(session.config, self.config.repeats)
            controls = None
            if session.config.plants_controls:
                if planted is None:
                    planted = control_texts(item, self.store.references_near(index))
                controls = planted
            for repeat in range(needed):
                slot = index * self.config.repeats + repeat
                order = [n for n in presented_order(names, self.config.seed, slot) if n in present]
                if controls:
                    order = with_controls(order, CONTROLS, self.config.seed, slot)
                mark = marks.get((repeat, judge_name))
                jobs.append(
                    self._judgment(item, repeat, judge_name, order, by_name, mark, controls)
                )
        await asyncio.gather(*jobs)

    async def _answer(self, item: QAItem, name: str, stored: tuple[str, Answer] | None) -> Answer:
        config = self.candidate_configs[name]
        endpoint = self.candidates[name]
        body = answer_request(config, self.config.prompts, item)
        fingerprint = answer_fingerprint(endpoint, body)
        if self._answers_final and stored is not None and stored[0] == fingerprint:
            return stored[1]  # asked in this run's answer phase (and counted there)
        reused = _reusable(stored, fingerprint)
        if reused is not None:
            self.progress.advance("answers")
            return reused
        assert self.client is not None
        keep_thinking = config.store_thinking
        if keep_thinking is None:
            keep_thinking = self.config.store_thinking
        answer = await ask_candidate(
            self.client, endpoint, config, body, item, fingerprint, keep_thinking=keep_thinking
        )
        self.store.put_answer(answer, fingerprint)
        self.progress.advance("answers")
        return answer

    async def _judgment(
        self,
        item: QAItem,
        repeat: int,
        judge_name: str,
        order: list[str],
        answers: dict[str, Answer],
        stored: tuple[str, bool] | None,
        controls: dict[str, str] | None = None,
    ) -> Judgment:
        session = self.judges[judge_name]
        texts = shown_texts(order, answers, controls)
        fingerprint = judgment_fingerprint(
            session.config, self.config.prompts, item, order, texts, repeat
        )
        if stored == (fingerprint, True):
            self.progress.advance("judgments")
            return Judgment(item.id, repeat, judge_name, tuple(order), None)
        n_candidates = sum(not is_control(n) for n in order)
        if n_candidates < 2:
            judgment = Judgment(
                item.id, repeat, judge_name, tuple(order), None,
                error=f"not judged: {n_candidates} candidate answer(s) to rank, need 2",
            )  # fmt: skip
        elif session.config.kind == "reference":
            judgment = reference_judgment(item, repeat, judge_name, order, answers)
        else:
            assert self.client is not None
            judgment = await llm_judgment(
                self.client, session, self.config.prompts, item, repeat, order, answers, controls
            )
        self.store.put_judgment(judgment, fingerprint)
        self.progress.advance("judgments")
        return judgment


def _reusable(stored: tuple[str, Answer] | None, fingerprint: str) -> Answer | None:
    """A stored answer the run can keep: asked the same way, and it succeeded."""
    if stored is not None and stored[0] == fingerprint and stored[1].ok and stored[1].answer:
        return stored[1]
    return None
