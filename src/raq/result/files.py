"""Output files written beside the run: each replaces the last good one only when complete."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raq.core.atomic import temporary_beside
from raq.core.escape import csv_cell
from raq.result.tables import RANK_COLUMNS

if TYPE_CHECKING:
    pass


class Replacing:
    """A file written beside ``path`` that replaces it only when complete (a failed render
    leaves the last good file in place)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = temporary_beside(path)  # a run and a raq report never share it

    def __enter__(self) -> Replacing:
        self.file = self.tmp.open("w", encoding="utf-8", newline="")
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.file.close()
        if exc_type is None:
            self.tmp.replace(self.path)
        else:
            self.tmp.unlink(missing_ok=True)


class JsonlWriter(Replacing):
    def write(self, row: dict[str, Any]) -> None:
        """One row, keyed by text (every row raq writes): most rows hold no NaN, infinity or
        numpy number, and ``json.dumps`` writes those as ``json_safe`` would have made them;
        the others raise and go through it (rebuilding every row cost a quarter of the time
        finalize spent reading the records)."""
        try:
            line = json.dumps(row, ensure_ascii=False, allow_nan=False)
        except (ValueError, TypeError):
            line = json.dumps(json_safe(row), ensure_ascii=False)
        self.file.write(line + "\n")


class RanksCsv(Replacing):
    """ranks.csv, RANK_COLUMNS, a judgment's rows at a time."""

    def __enter__(self) -> RanksCsv:
        super().__enter__()
        self._writer = csv.writer(self.file, lineterminator="\n")
        self._writer.writerow(RANK_COLUMNS)
        return self

    def write(self, rows: list[tuple]) -> None:
        self._writer.writerows([tuple(map(csv_cell, row)) for row in rows])


def json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return json_safe(value.item())
    return value
