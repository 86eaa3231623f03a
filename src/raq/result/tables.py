"""The run's ranks and answer measurements as pandas tables, built a column at a time from
the store (``RunResult.ranks``, ``RunResult.answer_metrics``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from raq.config import RunConfig, repeats_for
from raq.core.columns import ColumnTable, Kind
from raq.core.records import Judgment
from raq.store import RunStore

if TYPE_CHECKING:
    import pandas as pd


RANK_KINDS: dict[str, Kind] = {
    "question_id": "text", "repeat": "int", "judge": "text", "candidate": "text",
    "rank": "float", "position": "int",
}  # fmt: skip


RANK_COLUMNS = list(RANK_KINDS)


# The per-answer numbers of RunResult.answer_metrics (no texts).
# The keys of answers.jsonl, in order; each is a field of raq.core.records.Answer.
ANSWER_FIELDS = [
    "question_id", "candidate", "answer", "latency_s", "ttft_s", "words", "words_per_second",
    "completion_tokens", "prompt_tokens", "tokens_estimated", "cached", "error",
    "answer_ttft_s", "thinking_words", "thinking_tokens", "thinking_tokens_estimated", "thinking",
    "truncated",
]  # fmt: skip
ANSWER_METRIC_KINDS = RunStore.ANSWER_METRIC_KINDS


def current_judgments(config: RunConfig) -> Callable[[str, int], bool]:
    """Whether a stored (judge, repeat) belongs to this config (a judge since removed, or a
    repeat beyond the configured ones, does not)."""

    repeats = {j.name: repeats_for(j, config.repeats) for j in config.judges}
    return lambda judge, repeat: judge in repeats and repeat < repeats[judge]


def ranks_table(store: RunStore) -> pd.DataFrame:
    """The current config's ranks as a table (``RunResult.ranks``), one row per rank."""
    current = current_judgments(RunConfig.model_validate(store.get_meta("config")))
    names = Interned()
    table = ColumnTable(RANK_KINDS)
    for judgment in store.judgments():
        if judgment.ok and current(judgment.judge, judgment.repeat):
            table.extend(rank_rows(judgment, names))
    return table.frame()


class Interned(dict[str, str]):
    """One string object per distinct name: tables of many rows then hold pointers to a few
    names instead of a copy per row."""

    def __missing__(self, key: str) -> str:
        self[key] = key
        return key


def rank_rows(judgment: Judgment, names: Interned) -> list[tuple]:
    """A successful judgment's rows of RANK_COLUMNS; the position is 1-based in the presented
    order."""
    j = judgment
    position = presented_positions(j)
    return [
        (j.question_id, j.repeat, names[j.judge], names[name], float(rank), position.get(name))
        for name, rank in j.ranks.items()
    ]


def presented_positions(judgment: Judgment) -> dict[str, int]:
    """Each candidate's 1-based place in the order the judge was shown the answers."""
    return {name: i + 1 for i, name in enumerate(judgment.presented_order)}


def answer_metrics_frame(rows: Iterable[tuple]) -> pd.DataFrame:
    """The per-answer numbers (``RunStore.ANSWER_METRIC_FIELDS``) as a table, built a
    column at a time (an answer costs ~100 bytes here, however many the run has)."""
    names = Interned()
    table = ColumnTable(ANSWER_METRIC_KINDS)
    for row in rows:
        table.append((row[0], names[row[1]], *row[2:]))
    return table.frame()
