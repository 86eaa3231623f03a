"""``raq stats``: read any ranks.csv and print or emit the statistics."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raq.core.errors import InputError
from raq.core.escape import csv_uncell, safe_console

if TYPE_CHECKING:
    import pandas as pd

    from raq.stats import StatsResult

REQUIRED = ["question_id", "repeat", "judge", "candidate", "rank"]


def read_ranks_csv(path: Path) -> pd.DataFrame:
    """A ranks file with its columns checked; a bad one is one clear InputError line."""
    import pandas as pd

    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        frame = pd.read_csv(path, dtype={"question_id": str, "judge": str, "candidate": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(missing)}; expected "
            "question_id,repeat,judge,candidate,rank,position"
        )

    for column in ("question_id", "judge", "candidate"):  # as raq protected them (csv_cell)
        frame[column] = frame[column].map(csv_uncell)
    if "position" not in frame.columns:
        frame["position"] = pd.NA
    for column in ("question_id", "judge", "candidate"):
        empty = frame[column].isna()
        if empty.any():
            raise InputError(f"{path}:{int(empty.idxmax()) + 2}: {column} is empty")
    ranks = pd.to_numeric(frame["rank"], errors="coerce")
    # A rank is 1 or more (1 = best; ties share the average): inf, NaN, 0, negatives and text
    # would each bend every statistic without a word.
    bad = ranks.isna() | ~ranks.between(1, float(len(frame)) + 1)
    if bad.any():
        row = bad.idxmax()
        value = str(frame["rank"][row])
        # A number-like cell is shown; anything else is not echoed (a file may hold a secret).
        shown = repr(value) if re.fullmatch(r"[-+.\w]{0,12}", value) else "text"
        raise InputError(
            f"{path}:{int(row) + 2}: rank must be a number from 1 up (1 = best), not {shown}"
        )
    frame["rank"] = ranks.astype(float)
    frame["repeat"] = pd.to_numeric(frame["repeat"], errors="coerce").fillna(0).astype(int)
    return frame


def stats_json(result: StatsResult) -> dict[str, Any]:
    data = result.to_dict()
    return {
        "test": data["test"],
        "significant_pairs": data["significant_pairs"],
        "pvalues": {
            str(row): {str(col): float(v) for col, v in values.items()}
            for row, values in result.pvalues.to_dict(orient="index").items()
        },
        "candidates": data["candidates"],
    }


def print_stats(result: StatsResult) -> None:
    from rich.table import Table
    from rich.text import Text

    console = safe_console()
    table = Table(title="ranks per candidate (1 = best)", title_justify="left")
    for column in ("candidate", "mean rank", "95% CI", "median", "std", "n ranks"):
        table.add_column(column, justify="left" if column == "candidate" else "right")
    for name, c in result.candidates.items():
        table.add_row(
            name,
            f"{c.mean_rank:.2f}",
            f"{c.ci_low:.2f}–{c.ci_high:.2f}",
            f"{c.median_rank:.1f}",
            f"{c.std_rank:.2f}",
            str(c.n_ranks),
        )
    console.print(table)
    console.print(Text("Test:", style="bold"), result.test.get("description", result.test["name"]))
    matrix = Table(title="adjusted p-values (* below alpha)", title_justify="left")
    matrix.add_column("")
    for name in result.pvalues.columns:
        matrix.add_column(str(name), justify="right")
    alpha = result.test["alpha"]
    for row_name, row in result.pvalues.iterrows():
        matrix.add_row(
            str(row_name),
            *(
                "·" if row_name == col else f"{v:.3g}{'*' if v < alpha else ''}"
                for col, v in row.items()
            ),
        )
    console.print(matrix)
    if not result.significant_pairs:
        console.print(f"no pair differs significantly at alpha = {alpha:g}")
    if result.power_hint:
        console.print(result.power_hint, style="dim")
