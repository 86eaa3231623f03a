"""The run store: one run's config, questions, answers and judgments in SQLite (WAL mode).

Every answer and judgment is committed the moment it returns, so a killed run loses nothing
it paid for; the output files (answers.jsonl, ranks.csv, …) are rendered from this store.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from raq.core.columns import Kind
from raq.core.errors import StoreError
from raq.core.records import Answer, Judgment, QAItem
from raq.store.sqlite import connect

RUN_FORMAT = "raq-run/1"
STORE_NAME = "raq.sqlite"

_RUN_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS questions (
    idx INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, question TEXT NOT NULL,
    context TEXT, answers TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS answers (
    question_id TEXT NOT NULL, candidate TEXT NOT NULL, fingerprint TEXT NOT NULL,
    answer TEXT, latency_s REAL, ttft_s REAL, words INTEGER, words_per_second REAL,
    prompt_tokens INTEGER, completion_tokens INTEGER, tokens_estimated INTEGER NOT NULL,
    error TEXT, cached INTEGER NOT NULL, created_at REAL NOT NULL,
    thinking TEXT, thinking_words INTEGER, thinking_tokens INTEGER,
    thinking_tokens_estimated INTEGER, answer_ttft_s REAL, truncated INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (question_id, candidate));
CREATE TABLE IF NOT EXISTS judgments (
    question_id TEXT NOT NULL, repeat INTEGER NOT NULL, judge TEXT NOT NULL,
    fingerprint TEXT NOT NULL, presented_order TEXT NOT NULL, raw_output TEXT,
    ranks TEXT NOT NULL, mode TEXT, attempts INTEGER NOT NULL, error TEXT,
    cached INTEGER NOT NULL, created_at REAL NOT NULL, controls TEXT NOT NULL DEFAULT '{}',
    rationale TEXT, prompt_tokens INTEGER, completion_tokens INTEGER, thinking_words INTEGER,
    thinking_tokens INTEGER, tokens_estimated INTEGER,
    PRIMARY KEY (question_id, repeat, judge));
"""
# Columns added since a table was first created: a store written by an older raq gains them
# (with their defaults; NULL where none) when it is opened.
_ADDED_COLUMNS = {
    "answers": {
        "thinking": "TEXT", "thinking_words": "INTEGER", "thinking_tokens": "INTEGER",
        "thinking_tokens_estimated": "INTEGER", "answer_ttft_s": "REAL",
        "truncated": "INTEGER NOT NULL DEFAULT 0",  # finish_reason "length"
    },
    "judgments": {
        "controls": "TEXT NOT NULL DEFAULT '{}'", "rationale": "TEXT",
        "prompt_tokens": "INTEGER", "completion_tokens": "INTEGER",
        "thinking_words": "INTEGER", "thinking_tokens": "INTEGER", "tokens_estimated": "INTEGER",
    },
}  # fmt: skip


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


class RunStore:
    """One run's durable record: its config, questions, answers and judgments."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.path = run_dir / STORE_NAME
        run_dir.mkdir(parents=True, exist_ok=True)
        self._conn = connect(self.path, _RUN_SCHEMA, RUN_FORMAT, "raq run store", _ADDED_COLUMNS)

    @classmethod
    def open_existing(cls, run_dir: Path) -> RunStore:
        """Open a run directory for reading; a clear error if it is not one."""
        if not (run_dir / STORE_NAME).is_file():
            raise StoreError(f"{run_dir}: not a raq run directory (no {STORE_NAME})")
        return cls(run_dir)

    def close(self) -> None:
        self._conn.close()

    # -- meta -------------------------------------------------------------------------------
    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self._conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_meta(self, key: str, value: Any) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO meta VALUES (?, ?)",
            (key, json.dumps(value, ensure_ascii=False)),
        )

    # -- questions ----------------------------------------------------------------------------
    def save_questions(self, indexed: Iterable[tuple[int, QAItem]]) -> int:
        """Replace the run's questions, each with its index in the whole (unsharded) question
        list; consumes ``indexed`` one item at a time, so no list of questions is held."""
        rows = ((i, q.id, q.question, q.context, _json(list(q.answers))) for i, q in indexed)
        with self._transaction():
            self._conn.execute("DELETE FROM questions")
            self._conn.executemany("INSERT INTO questions VALUES (?, ?, ?, ?, ?)", rows)
        return self.question_count()

    def question_count(self) -> int:
        return self._conn.execute("SELECT COUNT(*) FROM questions").fetchone()[0]

    def question_index_end(self) -> int:
        """One more than the largest question index (0 without questions)."""
        return self._conn.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM questions").fetchone()[0]

    def iter_questions(self, page_size: int = 512) -> Iterator[tuple[int, QAItem]]:
        """The questions in index order, read a page at a time (memory flat in their number)."""
        last = -1
        while True:
            rows = self._conn.execute(
                "SELECT idx, id, question, context, answers FROM questions WHERE idx > ?"
                " ORDER BY idx LIMIT ?",
                (last, page_size),
            ).fetchall()
            for r in rows:
                yield r[0], QAItem(r[1], r[2], tuple(json.loads(r[4])), r[3])
            if len(rows) < page_size:
                return
            last = rows[-1][0]

    def references_near(self, idx: int, limit: int = 8) -> list[tuple[str, ...]]:
        """The acceptable answers of the questions after ``idx`` (wrapping round to the first):
        where a planted wrong answer comes from (a real answer, to a different question)."""
        rows = self._conn.execute(
            "SELECT answers FROM questions WHERE idx > ? ORDER BY idx LIMIT ?", (idx, limit)
        ).fetchall()
        if len(rows) < limit:
            rows += self._conn.execute(
                "SELECT answers FROM questions WHERE idx < ? ORDER BY idx LIMIT ?",
                (idx, limit - len(rows)),
            ).fetchall()
        return [tuple(json.loads(r[0])) for r in rows]

    # -- answers -------------------------------------------------------------------------------
    def put_answer(self, answer: Answer, fingerprint: str) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO answers (question_id, candidate, fingerprint, answer,"
            " latency_s, ttft_s, words, words_per_second, prompt_tokens, completion_tokens,"
            " tokens_estimated, error, cached, created_at, thinking, thinking_words,"
            " thinking_tokens, thinking_tokens_estimated, answer_ttft_s, truncated)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                answer.question_id, answer.candidate, fingerprint, answer.answer,
                answer.latency_s, answer.ttft_s, answer.words, answer.words_per_second,
                answer.prompt_tokens, answer.completion_tokens, int(answer.tokens_estimated),
                answer.error, int(answer.cached), time.time(),
                answer.thinking, answer.thinking_words, answer.thinking_tokens,
                int(answer.thinking_tokens_estimated), answer.answer_ttft_s,
                int(answer.truncated),
            ),
        )  # fmt: skip

    def stored_answers(self, question_id: str) -> dict[str, tuple[str, Answer]]:
        """candidate → (fingerprint, answer) for one question: what a resumed run can reuse."""
        rows = self._conn.execute(
            f"SELECT fingerprint, {self._ANSWER_COLUMNS} FROM answers WHERE question_id=?",
            (question_id,),
        )
        return {r[2]: (r[0], _answer(r[1:])) for r in rows}

    _ANSWER_COLUMNS = (
        "question_id, candidate, answer, latency_s, ttft_s, words, words_per_second,"
        " prompt_tokens, completion_tokens, tokens_estimated, error, cached,"
        " thinking, thinking_words, thinking_tokens, thinking_tokens_estimated, answer_ttft_s,"
        " truncated"
    )
    _ANSWER_METRIC_COLUMNS = (
        "question_id, candidate, answer IS NOT NULL AND error IS NULL,"
        " answer IS NOT NULL AND error IS NULL AND answer = '', latency_s, ttft_s, words,"
        " words_per_second, prompt_tokens, completion_tokens, tokens_estimated, cached, error,"
        " answer_ttft_s, thinking_words, thinking_tokens, thinking_tokens_estimated, truncated"
    )
    # What answer_metrics yields per answer, in order, with each value's kind for a table.
    ANSWER_METRIC_KINDS: ClassVar[dict[str, Kind]] = {
        "question_id": "text", "candidate": "text", "ok": "bool", "empty": "bool",
        "latency_s": "float", "ttft_s": "float", "words": "int", "words_per_second": "float",
        "prompt_tokens": "int", "completion_tokens": "int", "tokens_estimated": "bool",
        "cached": "bool", "error": "text", "answer_ttft_s": "float", "thinking_words": "int",
        "thinking_tokens": "int", "thinking_tokens_estimated": "bool", "truncated": "bool",
    }  # fmt: skip
    ANSWER_METRIC_FIELDS = tuple(ANSWER_METRIC_KINDS)

    def answers(
        self, candidates: Collection[str] | None = None, idx_range: tuple[int, int] | None = None
    ) -> Iterator[Answer]:
        """The answers to the run's questions (optionally of these candidates only, and of
        the questions whose index is in ``[start, stop)``), in question order, streamed."""
        for row in self._current_answers(self._ANSWER_COLUMNS, candidates, idx_range):
            yield _answer(row)

    def answer_metrics(self, candidates: Collection[str] | None = None) -> Iterator[tuple]:
        """Like ``answers`` without the texts: one ``ANSWER_METRIC_FIELDS`` tuple per answer,
        for statistics over many questions without holding every answer."""
        return self._current_answers(self._ANSWER_METRIC_COLUMNS, candidates)

    def _current_answers(
        self,
        columns: str,
        candidates: Collection[str] | None,
        idx_range: tuple[int, int] | None = None,
    ) -> Iterator:
        conditions, args = _idx_within(idx_range)
        if candidates is not None:
            names = sorted(candidates)
            conditions.append(f"a.candidate IN ({','.join('?' * len(names))})")
            args += tuple(names)
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        return self._conn.execute(
            f"SELECT {columns} FROM answers a"
            f" JOIN questions q ON q.id = a.question_id{where} ORDER BY q.idx, a.candidate",
            args,
        )

    # -- judgments -------------------------------------------------------------------------------
    def put_judgment(self, judgment: Judgment, fingerprint: str) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO judgments (question_id, repeat, judge, fingerprint,"
            " presented_order, raw_output, ranks, mode, attempts, error, cached, created_at,"
            " controls, rationale, prompt_tokens, completion_tokens, thinking_words,"
            " thinking_tokens, tokens_estimated) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                judgment.question_id, judgment.repeat, judgment.judge, fingerprint,
                json.dumps(list(judgment.presented_order), ensure_ascii=False),
                judgment.raw_output, json.dumps(judgment.ranks, ensure_ascii=False),
                judgment.mode, judgment.attempts, judgment.error, int(judgment.cached), time.time(),
                json.dumps(judgment.controls), judgment.rationale,
                judgment.prompt_tokens, judgment.completion_tokens, judgment.thinking_words,
                judgment.thinking_tokens, int(judgment.tokens_estimated),
            ),
        )  # fmt: skip

    def judgment_marks(self, question_id: str) -> dict[tuple[int, str], tuple[str, bool]]:
        """(repeat, judge) → (fingerprint, ok) of one question's stored judgments."""
        rows = self._conn.execute(
            "SELECT repeat, judge, fingerprint, error FROM judgments WHERE question_id=?",
            (question_id,),
        )
        return {(r[0], r[1]): (r[2], r[3] is None) for r in rows}

    def judgments(self, idx_range: tuple[int, int] | None = None) -> Iterator[Judgment]:
        """The judgments of the run's questions (of those whose index is in ``[start, stop)``
        when given), in question order, streamed."""
        conditions, args = _idx_within(idx_range)
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        rows = self._conn.execute(
            "SELECT j.question_id, repeat, judge, presented_order, raw_output, ranks, mode,"
            " attempts, error, cached, controls, rationale, j.prompt_tokens, j.completion_tokens,"
            " j.thinking_words, j.thinking_tokens, j.tokens_estimated FROM judgments j"
            f" JOIN questions q ON q.id = j.question_id{where}"
            " ORDER BY q.idx, repeat, judge",
            args,
        )
        for r in rows:
            yield _judgment(r)

    def question(self, question_id: str) -> QAItem | None:
        row = self._conn.execute(
            "SELECT id, question, context, answers FROM questions WHERE id=?", (question_id,)
        ).fetchone()
        return QAItem(row[0], row[1], tuple(json.loads(row[3])), row[2]) if row else None

    def question_judgments(self, question_id: str) -> list[Judgment]:
        """One question's judgments, by repeat and judge."""
        rows = self._conn.execute(
            "SELECT question_id, repeat, judge, presented_order, raw_output, ranks, mode,"
            " attempts, error, cached, controls, rationale, prompt_tokens, completion_tokens,"
            " thinking_words, thinking_tokens, tokens_estimated FROM judgments"
            " WHERE question_id=?"
            " ORDER BY repeat, judge",
            (question_id,),
        )
        return [_judgment(r) for r in rows]

    def disagreements(
        self, a: str, b: str, judges: Collection[str], limit: int
    ) -> list[tuple[str, float]]:
        """(question_id, mean rank of a − mean rank of b) over the questions both were ranked
        in by these judges, the largest differences first: where the pair differs most."""
        names = sorted(judges)
        return self._conn.execute(
            "SELECT j.question_id,"
            " AVG(CASE WHEN r.key = ? THEN r.value END)"
            " - AVG(CASE WHEN r.key = ? THEN r.value END) AS d"
            " FROM judgments j JOIN questions q ON q.id = j.question_id, json_each(j.ranks) r"
            f" WHERE j.error IS NULL AND j.judge IN ({','.join('?' * len(names))})"
            " AND r.key IN (?, ?) GROUP BY j.question_id HAVING COUNT(DISTINCT r.key) = 2"
            " ORDER BY ABS(d) DESC, q.idx LIMIT ?",
            (a, b, *names, a, b, limit),
        ).fetchall()

    def ranked_candidates(self) -> Iterator[tuple[str, int, str]]:
        """Distinct (judge, repeat, candidate) over the run's successful judgments' ranks:
        which candidates each judge ranked, known before the ranks stream through."""
        return self._conn.execute(
            "SELECT DISTINCT j.judge, j.repeat, r.key FROM judgments j"
            " JOIN questions q ON q.id = j.question_id, json_each(j.ranks) r"
            " WHERE j.error IS NULL"
        )

    def copy_from(self, other: Path) -> None:
        """Add another run store's questions, answers and judgments (``raq merge``) inside
        SQLite, so no record passes through Python; a question already here is an error."""
        self._conn.execute("ATTACH DATABASE ? AS other", (str(other),))
        try:
            shared = self._conn.execute(
                "SELECT id FROM other.questions WHERE id IN (SELECT id FROM main.questions)"
                " OR idx IN (SELECT idx FROM main.questions) LIMIT 1"
            ).fetchone()
            if shared:
                raise StoreError(f"{other.parent}: question {shared[0]} is also in another run")
            with self._transaction():
                self._conn.execute("INSERT INTO main.questions SELECT * FROM other.questions")
                for table in ("answers", "judgments"):  # only records of its current questions
                    # By name: a store written by an older raq lacks the newer columns.
                    names = [r[1] for r in self._conn.execute(f"PRAGMA other.table_info({table})")]
                    columns = ", ".join(names)
                    picked = ", ".join(f"r.{name}" for name in names)
                    self._conn.execute(
                        f"INSERT INTO main.{table} ({columns}) SELECT {picked} FROM other.{table} r"
                        " JOIN other.questions q ON q.id = r.question_id"
                    )
        finally:
            self._conn.execute("DETACH DATABASE other")

    def _transaction(self) -> _Transaction:
        return _Transaction(self._conn)

    def snapshot(self) -> _Transaction:
        """One read transaction: every read inside sees the store as it was at the first, even
        while another process (a running run) writes to it."""
        return _Transaction(self._conn)


def _idx_within(idx_range: tuple[int, int] | None) -> tuple[list[str], tuple]:
    """SQL conditions (and their arguments) for question indexes in ``[start, stop)``."""
    if idx_range is None:
        return [], ()
    return ["q.idx >= ?", "q.idx < ?"], tuple(idx_range)


def read_only_uri(path: Path) -> str:
    """A SQLite URI that reads a run store without changing anything. A store with no
    write-ahead log beside it (a finished run) is opened immutable, so SQLite creates no -wal
    or -shm file next to it; one with a log (a run writing, or killed) is opened read-only
    through its log, so readers see what is committed."""
    path = path.resolve()
    live = path.with_name(path.name + "-wal").exists()
    return f"{path.as_uri()}?{'mode=ro' if live else 'immutable=1'}"


def _judgment(r: tuple) -> Judgment:
    return Judgment(
        question_id=r[0], repeat=r[1], judge=r[2], presented_order=tuple(json.loads(r[3])),
        raw_output=r[4], ranks=json.loads(r[5]), mode=r[6], attempts=r[7], error=r[8],
        cached=bool(r[9]), controls=json.loads(r[10]), rationale=r[11], prompt_tokens=r[12],
        completion_tokens=r[13], thinking_words=r[14], thinking_tokens=r[15],
        tokens_estimated=bool(r[16]),
    )  # fmt: skip


def _answer(r: tuple) -> Answer:
    return Answer(
        question_id=r[0], candidate=r[1], answer=r[2], latency_s=r[3], ttft_s=r[4],
        words=r[5], words_per_second=r[6], prompt_tokens=r[7], completion_tokens=r[8],
        tokens_estimated=bool(r[9]), error=r[10], cached=bool(r[11]), thinking=r[12],
        thinking_words=r[13], thinking_tokens=r[14], thinking_tokens_estimated=bool(r[15]),
        answer_ttft_s=r[16], truncated=bool(r[17]),
    )  # fmt: skip


class _Transaction:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self._conn.execute("ROLLBACK" if exc_type else "COMMIT")
