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
from raq.result.files import JsonlWriter, RanksCsv, write_jsonl
from raq.result.tables import (
    ANSWER_FIELDS,
    Interned,
    current_judgments,
    presented_positions,
    rank_rows,
)
from raq.stats.answer_summary import error_kind, summarise_answers
from raq.stats.controls import ControlScore, ControlTally
from raq.stats.tally import RankStream, WordsRanks, words_rank_counts
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
    ``answers_jsonl``, then one candidate at a time into its summary. Memory does not grow
    with the number of questions beyond two numbers per question and candidate (the question
    bootstrap's)."""
    with store.snapshot():
        return _read_records(store, judgments_jsonl, answers_jsonl, ranks_csv)


def _read_records(
    store: RunStore,
    judgments_jsonl: Path | None,
    answers_jsonl: Path | None,
    ranks_csv: Path | None,
) -> RunRecords:
    config = RunConfig.model_validate(store.get_meta("config"))
    candidates = [c.name for c in config.candidates]
    current = current_judgments(config)
    addressing: dict[str, int] = dict.fromkeys(candidates, 0)  # answers speaking to the judge
    if answers_jsonl is not None:
        write_jsonl(answers_jsonl, (_flagged_row(a, addressing) for a in store.answers(candidates)))
    else:
        for answer in store.answers(candidates):
            _flagged_row(answer, addressing)
    names_by_judge: dict[str, set[str]] = {}
    for judge, repeat, name in store.ranked_candidates():
        if current(judge, repeat):
            names_by_judge.setdefault(judge, set()).add(name)
    # One pass over the judgments, with every judge in the verdict: the planted controls are
    # scored in the same pass, and only when a judge fails them are the ranks read again.
    stream = RankStream(names_by_judge)
    tallies = {judge.name: _new_tally() for judge in config.judges}
    control_tallies = {j.name: ControlTally(j.name) for j in config.judges}
    plants_controls = any(j.plants_controls for j in config.judges)
    names = Interned()
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(JsonlWriter(judgments_jsonl)) if judgments_jsonl else None
        ranks_out = stack.enter_context(RanksCsv(ranks_csv)) if ranks_csv else None
        for judgment in store.judgments():
            if not current(judgment.judge, judgment.repeat):
                continue
            _tally(tallies[judgment.judge], judgment)
            if plants_controls:
                control_tallies[judgment.judge].add(judgment)
            if judgment.ok:
                rows = rank_rows(judgment, names)
                _add_ranks(stream, judgment, {row[3]: row[5] for row in rows})
                if ranks_out is not None:
                    ranks_out.write(rows)
            if out is not None:
                out.write(_judgment_row(judgment))
    stream.close()
    controls = {name: tally.score() for name, tally in control_tallies.items()}
    verdict_judges = [
        judge.name
        for judge in config.judges
        if not config.stats.exclude_unqualified_judges
        or controls.get(judge.name) is None
        or controls[judge.name].qualified
    ]
    if not set(stream.judges) <= set(verdict_judges):
        stream = _rank_stream(store, names_by_judge, verdict_judges, current)
    answers, boxes = {}, {}
    for candidate in config.candidates:
        price = candidate.price
        prices = (price.input_per_million, price.output_per_million) if price else None
        answers[candidate.name], boxes[candidate.name] = summarise_answers(
            store.answer_metrics([candidate.name]), prices
        )
        answers[candidate.name]["answers_addressing_judge"] = addressing[candidate.name]
    words_ranks = words_rank_counts(
        (judge, candidate, question, words, rank)
        for judge, candidate, question, repeat, words, rank in store.words_and_ranks(candidates)
        if current(judge, repeat)
    )
    meta = {
        key: store.get_meta(key)
        for key in ("name", "created_at", "updated_at", "status", "requests", "disabled_endpoints")
    }
    return RunRecords(
        config, store.question_count(), stream, answers, boxes, words_ranks, tallies, meta,
        controls,
    )  # fmt: skip


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
