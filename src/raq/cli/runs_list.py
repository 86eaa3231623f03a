"""``raq runs``: what runs a directory holds, read from their stores."""

from __future__ import annotations

from pathlib import Path

from raq.core.errors import InputError, StoreError
from raq.core.escape import safe_console
from raq.store import STORE_NAME, RunStore


def list_runs(directory: Path) -> list[dict[str, object]]:
    """One row per run directory under ``directory`` (newest first)."""
    if not directory.is_dir():
        raise InputError(f"{directory}: no such directory")
    rows = []
    for path in sorted(directory.iterdir(), reverse=True):
        if not (path / STORE_NAME).is_file():
            continue
        try:
            store = RunStore.open_existing(path)
        except StoreError as exc:
            rows.append({"path": str(path), "status": f"unreadable: {exc}"})
            continue
        try:
            config = store.get_meta("config") or {}
            rows.append(
                {
                    "path": str(path),
                    "name": store.get_meta("name"),
                    "created_at": store.get_meta("created_at"),
                    "candidates": ", ".join(c["name"] for c in config.get("candidates", [])),
                    "questions": store.question_count(),
                    "status": store.get_meta("status"),
                }
            )
        finally:
            store.close()
    return rows


def print_runs(directory: Path) -> None:
    from rich.table import Table

    rows = list_runs(directory)
    console = safe_console()
    if not rows:
        console.print(f"no runs under {directory}")
        return
    table = Table()
    for column in ("path", "name", "created_at", "candidates", "questions", "status"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            *(
                str(row.get(c, ""))
                for c in ("path", "name", "created_at", "candidates", "questions", "status")
            )
        )
    console.print(table)
