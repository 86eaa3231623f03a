"""The generated dataset on disk: jsonl or parquet, checked before any request, written atomically.

The format is checked (and parquet's libraries looked for) before a single request is sent, so
a run never spends its budget and then fails to write; the file appears whole or not at all.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from raq.core.atomic import temporary_beside
from raq.core.errors import ConfigError


def write_output(out: Path, records: list[dict[str, Any]], fmt: str) -> None:
    """Write to a temporary file, then rename: readers never see a half-written dataset."""
    out.parent.mkdir(parents=True, exist_ok=True)

    tmp = temporary_beside(out)
    if fmt == "parquet":
        pandas = _parquet_support()
        pandas.DataFrame.from_records(records).to_parquet(tmp, index=False)
    else:
        with tmp.open("w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(tmp, out)


def _parquet_support() -> Any:
    # Imported here for start-up speed (pandas is heavy) and because pyarrow may be missing.
    try:
        import pandas
        import pyarrow  # noqa: F401
    except ImportError:
        raise ConfigError(
            "writing parquet needs pandas and pyarrow (pip install pandas pyarrow); or write jsonl"
        ) from None
    return pandas


def check_output(out: Path, fmt: str) -> None:
    if fmt not in ("jsonl", "parquet"):
        raise ConfigError(f"unknown output format '{fmt}' (jsonl or parquet)")
    if out.suffix.lower() != f".{fmt}":
        raise ConfigError(
            f"{out}: a {fmt} dataset must end in .{fmt} (raq's dataset loader picks the format "
            "by suffix)"
        )
    if fmt == "parquet":
        _parquet_support()
