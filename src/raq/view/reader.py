"""Read-only, paged access to one run's store, for ``raq view``.

The store is attached read-only (``store.read_only_uri``: immutable for a finished run, so
SQLite puts no file beside it; ``mode=ro`` through the log while a run writes): the viewer can
never change it. Whatever needs a whole pass over the run (the ordering of a
filter, the search index) is computed once into a scratch database in a temporary directory
and then read a page at a time, so a 100,000-question run stays responsive.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raq.core.errors import StoreError
from raq.store import RUN_FORMAT, STORE_NAME, read_only_uri
from raq.view.filters import FILTERS, MIN_FTS_CHARS, order_sql

# Answer and judgment columns the page shows in their own place, not among the extra fields.
_ANSWER_SHOWN = {"question_id", "candidate", "answer", "fingerprint", "created_at"}
_JUDGMENT_SHOWN = {"question_id", "repeat", "judge", "fingerprint", "presented_order",
                   "raw_output", "ranks", "created_at", "controls"}  # fmt: skip
# Integer columns that hold flags (SQLite has no boolean type), shown as yes/no.
_FLAGS = {"tokens_estimated", "cached", "truncated", "thinking_tokens_estimated"}
SEARCH_CHUNK = 2_000  # rows per insert while the search index is built
BUSY_TIMEOUT_MS = 300_000  # filters are built one at a time; a second one waits its turn


@dataclass(frozen=True)
class Page:
    """One page of a question list: the total it was cut from and its rows."""

    total: int
    rows: list[dict[str, Any]]
    note: str | None = None


class RunReader:
    """One run directory, read-only: its summary, question pages and single questions."""

    def __init__(self, run_dir: Path, scratch: Path) -> None:
        """``scratch``: an empty directory of the viewer's own for this run's derived data."""
        self.run_dir = run_dir
        path = run_dir / STORE_NAME
        if not path.is_file():
            raise StoreError(f"{run_dir}: not a raq run directory (no {STORE_NAME})")
        self._store_file = path.resolve()
        self._scratch_path = scratch / "orders.sqlite"
        self._search_path = scratch / "search.sqlite"
        self._lock = threading.Lock()
        self._orders: dict[str, tuple[str, int]] = {}
        self._order_locks: dict[str, threading.Lock] = {}
        self._conn = self._open_reader()
        self.config = self._config()
        self.summary = _read_json(run_dir / "summary.json")
        self.candidates = [c["name"] for c in self.config.get("candidates", [])]
        self.judge_repeats = self._judge_repeats()
        self.answer_columns = self._columns("answers")
        self.judgment_columns = self._columns("judgments")
        self.n_questions = self._one("SELECT COUNT(*) FROM run.questions")
        # A store without the column, or with only empty ones ('{}'), had controls off.
        self.has_controls = "controls" in self.judgment_columns and bool(
            self._one(
                "SELECT EXISTS (SELECT 1 FROM run.judgments"
                " WHERE controls IS NOT NULL AND controls NOT IN ('', '{}'))"
            )
        )
        self.search_ready = threading.Event()
        self.search_error: str | None = None
        self._stopping = threading.Event()

    # -- connections ------------------------------------------------------------------------
    @property
    def _store_uri(self) -> str:
        return read_only_uri(self._store_file)

    def _live(self) -> bool:
        return self._store_file.with_name(self._store_file.name + "-wal").exists()

    def _open_reader(self) -> sqlite3.Connection:
        """A connection whose ``run`` schema is the store (read-only) and whose main database
        is this reader's scratch file (the viewer's own, in a temporary directory)."""
        self._opened_live = self._live()
        conn = sqlite3.connect(self._scratch_path.as_uri(), check_same_thread=False, uri=True)
        conn.execute("PRAGMA journal_mode=WAL")  # page reads go on while a filter is built
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        try:
            conn.execute("ATTACH DATABASE ? AS run", (self._store_uri,))
            found = conn.execute("SELECT value FROM run.meta WHERE key='format'").fetchone()
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(f"{self.run_dir}: not a readable raq run store ({exc})") from None
        if found is None or found[0] != RUN_FORMAT:
            conn.close()
            raise StoreError(f"{self.run_dir}: {STORE_NAME} is not a raq run store")
        return conn

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._connection().execute(sql, args).fetchall()

    def _connection(self) -> sqlite3.Connection:
        """The reading connection; reopened through the log if a run began writing to a
        store that was opened immutable (call with the lock held)."""
        if not self._opened_live and self._live():
            self._conn.close()
            self._conn = self._open_reader()
        return self._conn

    def _one(self, sql: str, args: tuple = ()) -> Any:
        rows = self._query(sql, args)
        return rows[0][0] if rows else None

    def _columns(self, table: str) -> list[str]:
        return [r[1] for r in self._query(f"PRAGMA run.table_info({table})")]

    def _config(self) -> dict[str, Any]:
        raw = self._one("SELECT value FROM run.meta WHERE key='config'")
        return json.loads(raw) if raw else {}

    def _judge_repeats(self) -> dict[str, int]:
        """Each configured judge with its number of repeats (a reference judge ranks once)."""
        repeats = int(self.config.get("repeats") or 1)
        return {
            j["name"]: 1 if j.get("kind") == "reference" else repeats
            for j in self.config.get("judges", [])
        }

    def _judgment_scope(self) -> tuple[str, tuple]:
        """SQL limiting judgments to the config's judges and repeats (as the report does)."""
        if not self.judge_repeats:
            return "0", ()
        parts = " OR ".join("(j.judge = ? AND j.repeat < ?)" for _ in self.judge_repeats)
        args = tuple(v for item in self.judge_repeats.items() for v in item)
        return f"({parts})", args

    # -- what the page header shows -----------------------------------------------------------
    def overview(self) -> dict[str, Any]:
        meta = {k: v for k, v in self._query("SELECT key, value FROM run.meta")}
        return {
            "run_dir": str(self.run_dir),
            "name": self.config.get("name") or self.run_dir.name,
            "status": _loads(meta.get("status")),
            "n_questions": self.n_questions,
            "candidates": self.candidates,
            "judges": self.judge_repeats,
            "summary": self.summary,
            "has_controls": self.has_controls,
            "answer_columns": self.answer_columns,
            "judgment_columns": self.judgment_columns,
            "search": "index" if self.search_ready.is_set() and not self.search_error else "scan",
        }

    # -- question lists -----------------------------------------------------------------------
    def page(
        self,
        kind: str = "all",
        offset: int = 0,
        limit: int = 50,
        a: str | None = None,
        b: str | None = None,
        text: str | None = None,
    ) -> Page:
        """One page of the questions a filter selects, in the filter's order."""
        if kind == "all":
            total = self.n_questions
            rows = self._query(
                "SELECT id, NULL FROM run.questions ORDER BY idx LIMIT ? OFFSET ?",
                (limit, offset),
            )
            return Page(total, self._rows(rows))
        if kind == "control" and not self.has_controls:
            return Page(0, [], "this run has no planted controls (they were off for its judges)")
        if kind == "disagree" and (a not in self.candidates or b not in self.candidates or a == b):
            return Page(0, [], "choose two different candidates of this run")
        if kind == "search":
            text = (text or "").strip()
            if not text:
                return Page(0, [], "type something to search for")
        if kind not in FILTERS:
            raise ValueError(f"unknown filter {kind!r}")
        table, total = self._ordered(kind, a, b, text)
        rows = self._query(
            f"SELECT question_id, score FROM {table} WHERE pos > ? ORDER BY pos LIMIT ?",
            (offset, limit),
        )
        return Page(total, self._rows(rows))

    def _rows(self, ids_scores: list[tuple]) -> list[dict[str, Any]]:
        """The list rows of these questions: text, each candidate's mean rank over the
        current judgments, and the filter's score."""
        if not ids_scores:
            return []
        ids = [r[0] for r in ids_scores]
        marks = ",".join("?" * len(ids))
        texts = dict(self._query(f"SELECT id, question FROM run.questions WHERE id IN ({marks})",
                                 tuple(ids)))  # fmt: skip
        scope, scope_args = self._judgment_scope()
        ranks: dict[str, dict[str, float]] = {}
        for qid, name, mean in self._query(
            "SELECT j.question_id, r.key, AVG(r.value) FROM run.judgments j, json_each(j.ranks) r"
            f" WHERE j.question_id IN ({marks}) AND j.error IS NULL AND {scope}"
            " GROUP BY j.question_id, r.key",
            (*ids, *scope_args),
        ):
            ranks.setdefault(qid, {})[name] = mean
        failed: dict[str, list[str]] = {}
        for qid, name in self._query(
            f"SELECT question_id, candidate FROM run.answers WHERE question_id IN ({marks})"
            f" AND ({self._failed_answer_sql()}) ORDER BY candidate",
            tuple(ids),
        ):
            failed.setdefault(qid, []).append(name)
        failed_judgments = dict(self._query(
            f"SELECT j.question_id, COUNT(*) FROM run.judgments j WHERE j.question_id IN ({marks})"
            f" AND j.error IS NOT NULL AND {scope} GROUP BY j.question_id",
            (*ids, *scope_args),
        ))  # fmt: skip
        return [
            {
                "question_id": qid,
                "question": _clip(texts.get(qid) or ""),
                "mean_ranks": ranks.get(qid, {}),
                "failed": failed.get(qid, []),
                "failed_judgments": failed_judgments.get(qid, 0),
                "score": score,
            }
            for qid, score in ids_scores
        ]

    def _failed_answer_sql(self, alias: str = "") -> str:
        p = f"{alias}." if alias else ""
        sql = f"{p}error IS NOT NULL OR {p}answer IS NULL"
        if "truncated" in self.answer_columns:
            sql += f" OR {p}truncated"
        return sql

    def _ordered(
        self, kind: str, a: str | None, b: str | None, text: str | None
    ) -> tuple[str, int]:
        """The scratch table holding a filter's questions in order (built on first use)."""
        if kind == "search":
            use_index = self.search_ready.is_set() and not self.search_error
            use_index = use_index and len(text or "") >= MIN_FTS_CHARS
            kind = "search_index" if use_index else "search_scan"
        key = hashlib.sha1(json.dumps([kind, a, b, text]).encode()).hexdigest()[:16]
        with self._lock:
            if key in self._orders:
                return self._orders[key]
            build_lock = self._order_locks.setdefault(key, threading.Lock())
        with build_lock:
            if key not in self._orders:
                scope, scope_args = self._judgment_scope()
                select, args = order_sql(
                    kind, a, b, text, scope=scope, scope_args=scope_args,
                    candidates=self.candidates, failed_answer_sql=self._failed_answer_sql("a"),
                )  # fmt: skip
                self._orders[key] = self._materialise(f"order_{key}", select, args)
        return self._orders[key]

    def _materialise(self, table: str, select: str, args: tuple) -> tuple[str, int]:
        """Run ``select`` once on a connection of its own (page reads go on meanwhile) and
        keep its rows, numbered, in the scratch database."""
        conn = self._writer()
        try:
            conn.execute(f"DROP TABLE IF EXISTS {table}")
            conn.execute(
                f"CREATE TABLE {table} (pos INTEGER PRIMARY KEY, question_id TEXT, score REAL)"
            )
            conn.execute(f"INSERT INTO {table} (question_id, score) {select}", args)
            conn.commit()
            total = conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        finally:
            conn.close()
        return table, total

    def _writer(self, main: Path | None = None) -> sqlite3.Connection:
        """A connection of its own to write derived data into ``main`` (the orders database
        unless told) with the store attached read-only as ``run``; the search index is
        attached as ``fts`` once it is complete (never while it is being written)."""
        conn = sqlite3.connect((main or self._scratch_path).as_uri(), uri=True)
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute("ATTACH DATABASE ? AS run", (self._store_uri,))
        if main is None and self.search_ready.is_set() and not self.search_error:
            conn.execute("ATTACH DATABASE ? AS fts", (self._search_path.as_uri(),))
        return conn

    # -- full-text search -------------------------------------------------------------------
    def build_search_index(self, progress: Callable[[int], None] | None = None) -> None:
        """Index every question and answer text (FTS5, trigram: substring matches as LIKE
        gives, but from an index). Until it is ready, or when FTS5 is missing, search scans."""
        try:
            conn = self._writer(main=self._search_path)
            try:
                conn.execute(
                    "CREATE VIRTUAL TABLE search USING fts5("
                    "question_id UNINDEXED, text, tokenize='trigram')"
                )
                done = 0
                for select in (
                    "SELECT id, question FROM run.questions",
                    "SELECT question_id, answer FROM run.answers WHERE answer IS NOT NULL",
                ):
                    cursor = conn.execute(select)
                    while chunk := cursor.fetchmany(SEARCH_CHUNK):
                        if self._stopping.is_set():
                            self.search_error = "stopped"
                            return
                        conn.executemany("INSERT INTO search VALUES (?, ?)", chunk)
                        done += len(chunk)
                        if progress:
                            progress(done)
                conn.commit()
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            self.search_error = f"no search index ({exc}); search scans the texts instead"
        finally:
            self.search_ready.set()

    def stop_indexing(self) -> None:
        self._stopping.set()

    # -- one question -------------------------------------------------------------------------
    def has_question(self, question_id: str) -> bool:
        return bool(self._one("SELECT EXISTS (SELECT 1 FROM run.questions WHERE id = ?)",
                              (question_id,)))  # fmt: skip

    def question(self, question_id: str) -> dict[str, Any] | None:
        """Everything stored about one question: its text, context and references, every
        answer with its measurements, every judgment with what the judge said."""
        found = self._query(
            "SELECT idx, id, question, context, answers FROM run.questions WHERE id = ?",
            (question_id,),
        )
        if not found:
            return None
        idx, qid, text, context, references = found[0]
        answers = self._records("answers", qid, "candidate")
        order = {name: i for i, name in enumerate(self.candidates)}
        answers.sort(key=lambda r: (order.get(r["candidate"], len(order)), r["candidate"]))
        judgments = self._records("judgments", qid, "repeat, judge")
        in_scope = self.judge_repeats
        return {
            "question_id": qid,
            "index": idx,
            "question": text,
            "context": context,
            "references": json.loads(references),
            "answers": [
                {
                    "candidate": r["candidate"],
                    "answer": r["answer"],
                    "ok": r["error"] is None and r["answer"] is not None,
                    "fields": {k: v for k, v in r.items() if k not in _ANSWER_SHOWN},
                }
                for r in answers
            ],
            "judgments": [
                {
                    "judge": r["judge"],
                    "repeat": r["repeat"],
                    "current": r["judge"] in in_scope and r["repeat"] < in_scope[r["judge"]],
                    "presented_order": json.loads(r["presented_order"]),
                    "raw_output": r["raw_output"],
                    "ranks": json.loads(r["ranks"]),
                    "controls": _loads(r.get("controls")),
                    "fields": {k: v for k, v in r.items() if k not in _JUDGMENT_SHOWN},
                }
                for r in judgments
            ],
            "neighbours": self._neighbours(idx),
        }

    def _records(self, table: str, question_id: str, order: str) -> list[dict[str, Any]]:
        with self._lock:
            cursor = self._connection().execute(
                f"SELECT * FROM run.{table} WHERE question_id = ? ORDER BY {order}",
                (question_id,),
            )
            names = [d[0] for d in cursor.description]
            rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        for row in rows:
            for name in _FLAGS.intersection(row):
                if row[name] is not None:
                    row[name] = bool(row[name])
        return rows

    def _neighbours(self, idx: int) -> dict[str, str | None]:
        before = self._one("SELECT id FROM run.questions WHERE idx < ? ORDER BY idx DESC LIMIT 1",
                           (idx,))  # fmt: skip
        after = self._one("SELECT id FROM run.questions WHERE idx > ? ORDER BY idx LIMIT 1", (idx,))
        return {"previous": before, "next": after}

    # -- two runs -----------------------------------------------------------------------------
    def matching(self, other: RunReader, sample: int = 20) -> dict[str, Any]:
        """How the two runs' questions match by question_id: counts, and a few of those
        only in one run."""
        conn = self._writer()
        try:
            conn.execute("ATTACH DATABASE ? AS other", (other._store_uri,))
            both = conn.execute(
                "SELECT COUNT(*) FROM run.questions q JOIN other.questions o ON o.id = q.id"
            ).fetchone()[0]
            only = {}
            for label, x, y in (("only_in_a", "run", "other"), ("only_in_b", "other", "run")):
                rows = conn.execute(
                    f"SELECT id FROM {x}.questions WHERE id NOT IN (SELECT id FROM {y}.questions)"
                    " ORDER BY idx LIMIT ?",
                    (sample,),
                ).fetchall()
                count = conn.execute(
                    f"SELECT COUNT(*) FROM {x}.questions"
                    f" WHERE id NOT IN (SELECT id FROM {y}.questions)"
                ).fetchone()[0]
                only[label] = {"count": count, "sample": [r[0] for r in rows]}
        finally:
            conn.close()
        return {"both": both, **only}


def _read_json(path: Path) -> dict[str, Any] | None:
    """summary.json if the run has one (a run still going has none yet)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _loads(value: str | None) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return value


def _clip(text: str, limit: int = 240) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
