"""The question lists of ``raq view``: which questions each filter selects, and in what order.

Each filter is one SELECT over the run store (attached as ``run``), run once into the viewer's
scratch database by ``RunReader`` and then read a page at a time.
"""

from __future__ import annotations

FILTERS = ("all", "disagree", "repeats", "judge_failed", "control", "failed", "search")
MIN_FTS_CHARS = 3  # the trigram index matches strings of at least three characters


def order_sql(
    kind: str,
    a: str | None,
    b: str | None,
    text: str | None,
    *,
    scope: str,
    scope_args: tuple,
    candidates: list[str],
    failed_answer_sql: str,
) -> tuple[str, tuple]:
    """A SELECT of (question_id, score) in the order the list shows a filter's questions.

    ``scope`` (with ``scope_args``) limits judgments ``j`` to the config's judges and repeats;
    ``failed_answer_sql`` says which answers ``a`` failed; ``kind`` is a filter, with search
    split into ``search_index`` (the FTS5 table ``fts.search``) and ``search_scan``."""
    if kind == "disagree":
        # rank(a) - rank(b) averaged over the judgments ranking both; ties (0) left out.
        return (
            "SELECT q.id, AVG(ra.value - rb.value) AS d FROM run.judgments j"
            " JOIN run.questions q ON q.id = j.question_id,"
            " json_each(j.ranks) ra, json_each(j.ranks) rb"
            f" WHERE j.error IS NULL AND {scope} AND ra.key = ? AND rb.key = ?"
            " GROUP BY q.id HAVING d != 0 ORDER BY ABS(d) DESC, MIN(q.idx)",
            (*scope_args, a, b),
        )
    if kind == "repeats":
        # Per question: the largest spread (max - min) of one candidate's rank over one
        # judge's repeats.
        return (
            "SELECT s.question_id, MAX(s.spread) AS m FROM ("
            "  SELECT j.question_id, MAX(r.value) - MIN(r.value) AS spread"
            "  FROM run.judgments j, json_each(j.ranks) r"
            f"  WHERE j.error IS NULL AND {scope}"
            "  GROUP BY j.question_id, j.judge, r.key HAVING COUNT(*) > 1) s"
            " JOIN run.questions q ON q.id = s.question_id"
            " GROUP BY s.question_id HAVING m > 0 ORDER BY m DESC, MIN(q.idx)",
            scope_args,
        )
    if kind == "judge_failed":
        return (
            "SELECT q.id, COUNT(*) FROM run.judgments j"
            " JOIN run.questions q ON q.id = j.question_id"
            f" WHERE j.error IS NOT NULL AND {scope} GROUP BY q.id ORDER BY MIN(q.idx)",
            scope_args,
        )
    if kind == "control":
        # What qualifies a judge (raq.stats.controls): the reference answer not ranked first,
        # or ranked below the wrong answer. The wrong answer not last does not count: a
        # candidate's own wrong answer may rightly share the bottom with it.
        return (
            "SELECT q.id, COUNT(*) FROM run.judgments j"
            " JOIN run.questions q ON q.id = j.question_id"
            f" WHERE j.error IS NULL AND j.controls IS NOT NULL AND {scope} AND ("
            "  json_extract(j.controls, '$.\"#reference\"') > 1 OR"
            "  json_extract(j.controls, '$.\"#reference\"')"
            "   > json_extract(j.controls, '$.\"#wrong\"'))"
            " GROUP BY q.id ORDER BY MIN(q.idx)",
            scope_args,
        )
    if kind == "failed":
        marks = ",".join("?" * len(candidates)) or "NULL"
        return (
            "SELECT q.id, COUNT(*) FROM run.answers a"
            " JOIN run.questions q ON q.id = a.question_id"
            f" WHERE a.candidate IN ({marks}) AND ({failed_answer_sql})"
            " GROUP BY q.id ORDER BY MIN(q.idx)",
            tuple(candidates),
        )
    if kind == "search_index":
        phrase = '"' + (text or "").replace('"', '""') + '"'
        return (
            "SELECT q.id, COUNT(*) FROM fts.search s"
            " JOIN run.questions q ON q.id = s.question_id"
            " WHERE s.search MATCH ? GROUP BY q.id ORDER BY MIN(q.idx)",
            (phrase,),
        )
    if kind == "search_scan":
        pattern = "%" + _escape_like(text or "") + "%"
        return (
            "SELECT q.id, (q.question LIKE ?1 ESCAPE '\\') + (SELECT COUNT(*) FROM"
            "  run.answers a WHERE a.question_id = q.id AND a.answer LIKE ?1 ESCAPE '\\')"
            " AS hits FROM run.questions q WHERE hits > 0 ORDER BY q.idx",
            (pattern,),
        )
    raise ValueError(f"unknown filter {kind!r}")


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
