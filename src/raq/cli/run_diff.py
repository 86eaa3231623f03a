"""What keeps two runs from comparing like for like: different candidates, judges or
questions. ``raq compare`` prints one warning line for each, so a change in mean rank is not
read as a change in a model when the judge or the questions changed instead."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path
from typing import Any

from raq.store import STORE_NAME, read_only_uri

ENDPOINT_KEYS = ("kind", "base_url", "model")  # what makes two same-named endpoints differ


def run_differences(
    run_a: Path, run_b: Path, summary_a: dict[str, Any], summary_b: dict[str, Any]
) -> list[str]:
    """One sentence per difference between run A and run B (none when they match)."""
    config_a, config_b = _config(run_a), _config(run_b)
    lines = []
    for role, key in (("candidates", "candidates"), ("judges", "judges")):
        names_a = _names(config_a, summary_a, key)
        names_b = _names(config_b, summary_b, key)
        only_a = [n for n in names_a if n not in names_b]
        only_b = [n for n in names_b if n not in names_a]
        if only_a or only_b:
            lines.append(
                f"the runs' {role} differ: only in A: {', '.join(only_a) or 'none'}; "
                f"only in B: {', '.join(only_b) or 'none'}"
            )
        for name, changes in _changed_endpoints(config_a, config_b, key):
            lines.append(f"{role[:-1]} '{name}' differs: {changes}")
    questions = _question_difference(run_a, run_b, summary_a, summary_b)
    if questions:
        lines.append(questions)
    return lines


def _config(run_dir: Path) -> dict[str, Any] | None:
    """The run's resolved config, from its store (read-only), or None."""
    store = run_dir / STORE_NAME
    if not store.is_file():
        return None
    try:
        with contextlib.closing(sqlite3.connect(read_only_uri(store), uri=True)) as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'config'").fetchone()
    except sqlite3.DatabaseError:
        return None
    return json.loads(row[0]) if row else None


def _names(config: dict[str, Any] | None, summary: dict[str, Any], key: str) -> list[str]:
    if config is not None:
        return [e["name"] for e in config.get(key, [])]
    return list(summary.get(key, {}))


def _changed_endpoints(
    a: dict[str, Any] | None, b: dict[str, Any] | None, key: str
) -> list[tuple[str, str]]:
    if a is None or b is None:
        return []
    by_name_b = {e["name"]: e for e in b.get(key, [])}
    changed = []
    for endpoint in a.get(key, []):
        other = by_name_b.get(endpoint["name"])
        if other is None:
            continue
        changes = [
            f"{field} {endpoint.get(field)} → {other.get(field)}"
            for field in ENDPOINT_KEYS
            if endpoint.get(field) != other.get(field)
        ]
        if changes:
            changed.append((endpoint["name"], ", ".join(changes)))
    return changed


def _question_difference(
    run_a: Path, run_b: Path, summary_a: dict[str, Any], summary_b: dict[str, Any]
) -> str | None:
    """Questions matched by question_id in the two stores; without both stores, the counts."""
    store_a, store_b = run_a / STORE_NAME, run_b / STORE_NAME
    if store_a.is_file() and store_b.is_file():
        try:
            with contextlib.closing(sqlite3.connect(read_only_uri(store_a), uri=True)) as db:
                db.execute("ATTACH DATABASE ? AS b", (read_only_uri(store_b),))
                both, only_a, only_b = db.execute(
                    "SELECT (SELECT COUNT(*) FROM main.questions q JOIN b.questions p"
                    "  ON p.id = q.id),"
                    " (SELECT COUNT(*) FROM main.questions WHERE id NOT IN"
                    "  (SELECT id FROM b.questions)),"
                    " (SELECT COUNT(*) FROM b.questions WHERE id NOT IN"
                    "  (SELECT id FROM main.questions))"
                ).fetchone()
        except sqlite3.DatabaseError:
            pass
        else:
            if only_a or only_b:
                return (
                    f"the runs' questions differ: {both} in both, {only_a} only in A, "
                    f"{only_b} only in B (matched by question_id)"
                )
            return None
    n_a, n_b = summary_a.get("n_questions"), summary_b.get("n_questions")
    if n_a != n_b:
        return f"the runs' questions differ: A has {n_a}, B has {n_b}"
    return None
