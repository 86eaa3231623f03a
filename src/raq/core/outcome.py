"""What a finished run could not evaluate at all: a whole candidate or judge lost, or nothing
ranked. A run like that "completed", but its tables say nothing; the CLI exits 1 on it."""

from __future__ import annotations

from typing import Any


def lost_work(summary: dict[str, Any]) -> list[str]:
    """One sentence per thing lost, from summary.json; empty when every part produced data."""
    lost = []
    for name, entry in summary["candidates"].items():
        if entry["answers"] and entry["failed_answers"] == entry["answers"]:
            lost.append(
                f"candidate '{name}': all {entry['answers']} answers failed "
                f"({_errors(entry['errors'])})"
            )
    for name, entry in summary["judges"].items():
        if entry["judgments"] and entry["failed_judgments"] == entry["judgments"]:
            lost.append(
                f"judge '{name}': all {entry['judgments']} judgments failed "
                f"({_errors(entry['errors'])})"
            )
    if summary["n_questions"] and not summary["n_questions_ranked"]:
        lost.append(
            f"nothing was evaluated: none of the {summary['n_questions']} questions got a ranking"
        )
    return lost


def _errors(errors: dict[str, int]) -> str:
    if not errors:
        return "no error recorded"
    return ", ".join(f"{kind} ×{count}" for kind, count in errors.items())
