"""Opening raq's SQLite files (the run store, the response cache): WAL mode, a format mark
that refuses any other SQLite file, a damaged or empty one, and one line for each way opening
can fail."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from raq.core.errors import StoreError


def connect(
    path: Path,
    schema: str,
    fmt: str,
    what: str,
    added_columns: dict[str, dict[str, str]] | None = None,
) -> sqlite3.Connection:
    """Open (or create) a raq SQLite file, refusing anything raq did not write."""
    if path.is_file() and path.stat().st_size == 0:
        raise StoreError(
            f"{path}: an empty (0-byte) file, not a {what}; raq will not use it — delete it "
            "(nothing was stored in it) or choose another path"
        )
    existed = path.exists()
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        if existed:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            found = None
            if "meta" in tables:
                row = conn.execute("SELECT value FROM meta WHERE key='format'").fetchone()
                found = row[0] if row else None
            if found != fmt:
                conn.close()
                raise StoreError(
                    f"{path}: a SQLite file that is not a {what} (format {found!r}); "
                    "raq will not overwrite it — move it away or choose another path"
                )
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                conn.close()
                raise StoreError(f"{path}: the {what} is damaged ({check}); raq will not touch it")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=10000")
        conn.executescript(schema)
        _add_columns(conn, added_columns or {})
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('format', ?)", (fmt,))
    except sqlite3.DatabaseError as exc:
        raise _open_error(path, what, exc) from None
    return conn


def _open_error(path: Path, what: str, exc: sqlite3.DatabaseError) -> StoreError:
    """The cause of a failed open, in one line: a lock, a read-only place or a full disk are
    not a damaged file, and the remedy differs."""
    text = str(exc)
    if "locked" in text:
        return StoreError(
            f"{path}: the {what} is locked by another process ({text}); wait for it to finish "
            "or stop it"
        )
    if "readonly" in text or "read-only" in text or "unable to open" in text:
        import os

        if not os.access(path.parent, os.W_OK):
            return StoreError(f"{path}: cannot write the {what}: its directory is read-only")
        return StoreError(f"{path}: cannot open the {what} for writing ({text})")
    if "disk is full" in text:
        return StoreError(f"{path}: no space left on the device for the {what}")
    return StoreError(
        f"{path}: not a readable {what} ({text}); raq will not overwrite it — "
        "move it away or choose another path"
    )


def _add_columns(conn: sqlite3.Connection, added: dict[str, dict[str, str]]) -> None:
    """Columns added since a table was first created: an older raq's file gains them."""
    for table, columns in added.items():
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if not have:
            continue
        for name, declaration in columns.items():
            if name not in have:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {declaration}")
