"""The schedule of a run's requests: every question through its candidates' answers, then
its judgments (interleaved), or every answer first, one model at a time per server (phased);
each record is stored the moment it lands, and stored ones are reused."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from raq.config import (
    LOCAL_BASE_URL,
    CandidateConfig,
    RunConfig,
    repeats_for,
)
from raq.core.progress import Progress
from raq.core.records import Answer, Judgment, QAItem
from raq.endpoints.client import ChatClient
from raq.endpoints.endpoint import Endpoint, cache_key
from raq.stages.answers import answer_fingerprint, answer_request, ask_candidate
from raq.stages.controls import CONTROLS, control_texts, is_control
from raq.stages.judge import (
    JudgeSession,
    judgment_fingerprint,
    llm_judgment,
    presented_order,
    reference_judgment,
    shown_texts,
    with_controls,
)
from raq.store import ResponseCache, RunStore

if TYPE_CHECKING:
    pass


class Pipeline:
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
        # The questions being answered and judged, and the next one to start (taken in index
        # order): every question below the smallest in flight has all its records stored.
        self._in_flight: set[int] = set()
        self._next_index = 0

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

    def finished_below(self) -> int:
        """A question index below which every question of the run has all its answers and
        judgments stored (its outputs can be read while the later ones are in flight)."""
        return min(self._in_flight, default=self._next_index)

    async def _question(self, index: int, item: QAItem) -> None:
        self._in_flight.add(index)
        self._next_index = max(self._next_index, index + 1)
        try:
            await self._answer_and_judge(index, item)
        finally:
            self._in_flight.discard(index)

    async def _answer_and_judge(self, index: int, item: QAItem) -> None:
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
