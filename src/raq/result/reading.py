"""One pass over the store for the current config's records: judgments stream to
judgments.jsonl and ranks.csv and into the rank tallies, answers to answers.jsonl and into
each candidate's summary; memory stays flat in the number of questions."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raq.config import RunConfig
from raq.core.injection import addresses_judge
from raq.core.records import Answer, Judgment
from raq.result.files import JsonlWriter, RanksCsv
from raq.result.tables import (
    ANSWER_FIELDS,
    Interned,
    current_judgments,
    presented_positions,
    rank_rows,
)
from raq.stats.answer_summary import error_kind, summarise_answers
from raq.stats.controls import ControlScore, ControlTally
from raq.stats.tally import RankStream, WordsRanks, WordsRankTally
from raq.store import RunStore

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class RunRecords:
    """What the outputs need of the current config's records, read back from the store as
    tallies: counts, sums and per-candidate summaries, never a table of ranks or answers (the
    texts stream straight to the output files)."""

    config: RunConfig
    n_questions: int
    ranks: RankStream  # closed; every rank of the current judges and repeats went in
    answers: dict[str, dict[str, Any]]  # per candidate: its summary.json entry's answer part
    speed_boxes: dict[str, dict[str, dict[str, Any]]]  # per candidate: box-plot statistics
    words_ranks: WordsRanks  # per judge and candidate: (words, question's rank) → count
    judge_tallies: dict[str, dict[str, Any]]  # per judge: counts, modes, errors
    meta: dict[str, Any]
    controls: dict[str, ControlScore | None]  # per judge: its planted-control record


def read_records(
    store: RunStore,
    judgments_jsonl: Path | None = None,
    answers_jsonl: Path | None = None,
    ranks_csv: Path | None = None,
) -> RunRecords:
    """Read the current config's records. Judgments stream through once (to
    ``judgments_jsonl`` and ``ranks_csv`` when given) into the rank tallies and per-judge
    tallies, and again only when a judge failed its planted controls; answers stream to
    ``answers_jsonl``, then one candidate at a time into its summary. Memory grows with the
    number of questions by two numbers per question and candidate (the question bootstrap's)
    and by one candidate's speed values at a time (the percentiles'); the other tallies count
    distinct values (ranks, lengths), not questions."""
    with store.snapshot():
        return RecordPass(store, judgments_jsonl, answers_jsonl, ranks_csv).finish()


# The largest question index SQLite stores: "every question from here on".
_LAST = 2**63 - 1
# The most questions read at once (their answers' lengths are held until their judgments are).
_RANGE = 1024


class RecordPass:
    """``read_records``' pass, fed the questions in index order a range at a time.

    A run feeds it the questions its requests have finished (``feed``) while the others are
    still in flight, so when the last answer lands only the last few questions are left to
    read (``finish``). The files and tallies are those of one pass over the whole store: the
    questions go through in the same order, whatever the ranges.

    Which candidates each judge ranked must be known before the first rank goes in. Read from
    the store, it is known only at the end of a run; fed during the run, the pass assumes
    every judge ranks every candidate (``expect_every_rank``), checks it in ``finish``, and
    when it was wrong (a candidate or a judge that never succeeded) reads everything again.
    """

    def __init__(
        self,
        store: RunStore,
        judgments_jsonl: Path | None = None,
        answers_jsonl: Path | None = None,
        ranks_csv: Path | None = None,
        *,
        expect_every_rank: bool = False,
    ) -> None:
        self.store = store
        self.paths = (judgments_jsonl, answers_jsonl, ranks_csv)
        config = RunConfig.model_validate(store.get_meta("config"))
        self.config = config
        self.candidates = [c.name for c in config.candidates]
        self.current = current_judgments(config)
        if expect_every_rank:
            self.names_by_judge = {j.name: set(self.candidates) for j in config.judges}
        else:
            self.names_by_judge = _names_by_judge(store, self.current)
        self.expected = expect_every_rank
        self.addressing: dict[str, int] = dict.fromkeys(self.candidates, 0)
        # One pass over the judgments, with every judge in the verdict: the planted controls
        # are scored in the same pass, and only when a judge fails them are the ranks read
        # again.
        self.stream = RankStream(self.names_by_judge)
        self.tallies = {judge.name: _new_tally() for judge in config.judges}
        self.control_tallies = {j.name: ControlTally(j.name) for j in config.judges}
        self.plants_controls = any(j.plants_controls for j in config.judges)
        self.names = Interned()
        self.words_ranks = WordsRankTally()
        self._files = contextlib.ExitStack()
        self._answers_out = self._open(JsonlWriter, answers_jsonl)
        self._judgments_out = self._open(JsonlWriter, judgments_jsonl)
        self._ranks_out = self._open(RanksCsv, ranks_csv)
        self.read_below = 0  # the questions below this index are read
        self._end: int | None = None  # one more than the largest question index

    @classmethod
    def into_run_dir(
        cls, store: RunStore, run_dir: Path, *, expect_every_rank: bool = False
    ) -> RecordPass:
        """A pass writing a run directory's record files (answers.jsonl, judgments.jsonl,
        ranks.csv)."""
        return cls(
            store,
            judgments_jsonl=run_dir / "judgments.jsonl",
            answers_jsonl=run_dir / "answers.jsonl",
            ranks_csv=run_dir / "ranks.csv",
            expect_every_rank=expect_every_rank,
        )

    def _open(self, kind: type[JsonlWriter] | type[RanksCsv], path: Path | None) -> Any:
        return self._files.enter_context(kind(path)) if path is not None else None

    def feed(self, below: int = _LAST) -> None:
        """Read the questions from the last one read up to (not including) index ``below``, or
        to the last question if that comes first: every one of them must have all its answers
        and judgments stored."""
        if below > self.read_below:
            if self._end is None:  # the questions are staged before a pass starts
                self._end = self.store.question_index_end()
            below = min(below, self._end)
        while self.read_below < below:  # a range at a time: its answers' lengths are held
            self._feed_range(self.read_below, min(below, self.read_below + _RANGE))

    def _feed_range(self, start: int, stop: int) -> None:
        words: dict[tuple[str, str], int] = {}  # (question, candidate) → answer length
        for answer in self.store.answers(self.candidates, (start, stop)):
            row = _flagged_row(answer, self.addressing)
            if self._answers_out is not None:
                self._answers_out.write(row)
            if answer.ok and answer.words is not None:
                words[answer.question_id, answer.candidate] = answer.words
        for judgment in self.store.judgments((start, stop)):
            if not self.current(judgment.judge, judgment.repeat):
                continue
            _tally(self.tallies[judgment.judge], judgment)
            if self.plants_controls:
                self.control_tallies[judgment.judge].add(judgment)
            if judgment.ok:
                rows = rank_rows(judgment, self.names)
                _add_ranks(self.stream, judgment, {row[3]: row[5] for row in rows})
                if self._ranks_out is not None:
                    self._ranks_out.write(rows)
                _add_lengths(self.words_ranks, judgment, words)
            if self._judgments_out is not None:
                self._judgments_out.write(_judgment_row(judgment))
        self.read_below = stop

    def discard(self) -> None:
        """Stop without writing: the files being written are removed, the old ones kept."""
        self._files.__exit__(RuntimeError, RuntimeError("discarded"), None)

    def finish(self) -> RunRecords:
        """Read the questions left, write the files, and return the records."""
        if self.expected and _names_by_judge(self.store, self.current) != self.names_by_judge:
            self.discard()
            return RecordPass(self.store, *self.paths).finish()
        try:
            self.feed()
        except BaseException:
            self.discard()
            raise
        self._files.close()
        return self._records()

    def _records(self) -> RunRecords:
        store, config, current, stream = self.store, self.config, self.current, self.stream
        stream.close()
        controls = {name: tally.score() for name, tally in self.control_tallies.items()}
        verdict_judges = [
            judge.name
            for judge in config.judges
            if not config.stats.exclude_unqualified_judges
            or controls.get(judge.name) is None
            or controls[judge.name].qualified
        ]
        if not set(stream.judges) <= set(verdict_judges):
            stream = _rank_stream(store, self.names_by_judge, verdict_judges, current)
        answers, boxes = {}, {}
        for candidate in config.candidates:
            price = candidate.price
            prices = (price.input_per_million, price.output_per_million) if price else None
            answers[candidate.name], boxes[candidate.name] = summarise_answers(
                store.answer_metrics([candidate.name]), prices
            )
            answers[candidate.name]["answers_addressing_judge"] = self.addressing[candidate.name]
        words_ranks = self.words_ranks.counts()
        meta = {
            key: store.get_meta(key)
            for key in ("name", "created_at", "updated_at", "status", "requests",
                        "disabled_endpoints")
        }  # fmt: skip
        return RunRecords(
            config, store.question_count(), stream, answers, boxes, words_ranks, self.tallies,
            meta, controls,
        )  # fmt: skip


def _names_by_judge(store: RunStore, current: Callable[[str, int], bool]) -> dict[str, set[str]]:
    """Which candidates each judge ranked at least once (in a current repeat)."""
    names_by_judge: dict[str, set[str]] = {}
    for judge, repeat, name in store.ranked_candidates():
        if current(judge, repeat):
            names_by_judge.setdefault(judge, set()).add(name)
    return names_by_judge


def _rank_stream(
    store: RunStore,
    names_by_judge: dict[str, set[str]],
    verdict_judges: list[str],
    current: Callable[[str, int], bool],
) -> RankStream:
    """The ranks again, with the judges that failed their planted controls left out of the
    verdict (a second pass over the judgments, only for a run where one failed)."""
    stream = RankStream(names_by_judge, verdict_judges)
    for judgment in store.judgments():
        if judgment.ok and current(judgment.judge, judgment.repeat):
            positions = presented_positions(judgment)
            _add_ranks(stream, judgment, {name: positions.get(name) for name in judgment.ranks})
    return stream.close()


def _add_ranks(stream: RankStream, judgment: Judgment, positions: dict[str, int | None]) -> None:
    """One successful judgment's ranks into the stream, with each candidate's 1-based place in
    the order the judge saw them."""
    stream.add(
        judgment.question_id, judgment.repeat, judgment.judge, judgment.ranks, positions,
        judgment.position_ranks(),
    )  # fmt: skip


def _add_lengths(
    tally: WordsRankTally, judgment: Judgment, words: dict[tuple[str, str], int]
) -> None:
    """A successful judgment's ranks with the lengths of the answers they rank (the length-bias
    test's pairs); a candidate whose answer failed has no length."""
    question = judgment.question_id
    for candidate, rank in judgment.ranks.items():
        length = words.get((question, candidate))
        if length is not None:
            tally.add(judgment.judge, candidate, question, length, rank)


def _new_tally() -> dict[str, Any]:
    return {
        "judgments": 0, "failed_judgments": 0, "cached_judgments": 0, "modes": {}, "errors": {},
        "tokens": {"prompt": 0, "completion": 0, "thinking": 0, "estimated": 0},
        "thinking_words": 0,
    }  # fmt: skip


def _tally(tally: dict[str, Any], judgment: Judgment) -> None:
    tally["judgments"] += 1
    tally["cached_judgments"] += judgment.cached
    tokens = tally["tokens"]  # every ask was paid for, a failed judgment's too
    tokens["prompt"] += judgment.prompt_tokens or 0
    tokens["completion"] += judgment.completion_tokens or 0
    tokens["thinking"] += judgment.thinking_tokens or 0
    tokens["estimated"] += judgment.tokens_estimated
    tally["thinking_words"] += judgment.thinking_words or 0
    if not judgment.ok:
        tally["failed_judgments"] += 1
    elif judgment.mode:
        tally["modes"][judgment.mode] = tally["modes"].get(judgment.mode, 0) + 1
    if judgment.error:
        kind = error_kind(judgment.error)
        tally["errors"][kind] = tally["errors"].get(kind, 0) + 1


def _answer_row(answer: Answer) -> dict[str, Any]:
    return {name: getattr(answer, name) for name in ANSWER_FIELDS}


def _flagged_row(answer: Answer, addressing: dict[str, int]) -> dict[str, Any]:
    """An answers.jsonl row with ``addresses_judge`` (prompt injection), counted per candidate."""

    flagged = answer.ok and addresses_judge(answer.answer)
    addressing[answer.candidate] = addressing.get(answer.candidate, 0) + flagged
    return _answer_row(answer) | {"addresses_judge": flagged}


def _judgment_row(judgment: Judgment) -> dict[str, Any]:
    ranking = sorted(
        judgment.ranks, key=lambda n: (judgment.ranks[n], judgment.presented_order.index(n))
    )
    return {
        "question_id": judgment.question_id,
        "repeat": judgment.repeat,
        "judge": judgment.judge,
        "presented_order": list(judgment.presented_order),
        "raw_output": judgment.raw_output,
        "ranking": ranking if judgment.ok else None,
        "ranks": judgment.ranks if judgment.ok else None,
        "mode": judgment.mode,
        "attempts": judgment.attempts,
        "cached": judgment.cached,
        "error": judgment.error,
        "controls": judgment.controls or None,
        "rationale": judgment.rationale,
        "prompt_tokens": judgment.prompt_tokens,
        "completion_tokens": judgment.completion_tokens,
        "thinking_words": judgment.thinking_words,
        "thinking_tokens": judgment.thinking_tokens,
        "tokens_estimated": judgment.tokens_estimated,
    }
