"""A CSV dataset is read by raq itself, every cell as written: pandas' type inference (the
datasets library's CSV loader) turned reference answers 3.10 and 1000 into 3.1 and 1000.0, an
id 007 into 7 and an answer "None" into a missing one. Checked against pandas reading the same
file as text, an independent CSV reader."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest

import raq.dataset
from raq.config import DatasetConfig
from raq.core.errors import DatasetError
from raq.dataset import load_items

FIELDS = {"answer": "answer"}


def write_csv(path: Path, header: list[str], rows: list[list[str]], bom: bool = False) -> Path:
    with path.open("w", encoding="utf-8-sig" if bom else "utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(rows)
    return path


TRICKY = [
    ["007", "Pi to two places?", "3.10", "Numbers keep their digits."],
    ["008", "Half, as a decimal?", "0.50", ""],
    ["009", "How many metres in a km?", "1000", "Whole numbers stay whole."],
    ["010", "When did the mill open?", "1998-03-04", "A date is text."],
    ["011", "Which of 4, 6, 8 is prime?", "None", "An answer, not a missing value."],
    ["012", "Sodium's symbol, or NA?", "NA", "Also an answer."],
    ["013", "A quoted, comma'd answer?", 'yes, "quoted"', "Line one.\nLine two, same cell."],
    ["014", "Ünïcode ✓ 文脈?", "文脈 ✓", "  spaces kept inside  "],
    ["1e3", "An id that looks like a number?", "1e3", "null"],
]


def test_cells_load_as_written(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "qa.csv", ["id", "question", "answer", "context"], TRICKY, bom=True)
    items = load_items(DatasetConfig(path=str(path), shuffle=False, fields=FIELDS))
    # The independent reading: pandas with every cell as text and no missing-value markers
    # but the empty cell.
    expected = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    assert [i.id for i in items] == list(expected["id"])
    assert [i.answers for i in items] == [(a.strip(),) for a in expected["answer"]]
    assert [i.question for i in items] == [q.strip() for q in expected["question"]]
    assert [i.context for i in items] == [c.strip() or None for c in expected["context"]]
    assert items[0].answers == ("3.10",) and items[0].id == "007"
    assert items[4].answers == ("None",)


def test_through_datasets_the_same_file_changed_its_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Why raq reads CSV itself: what pandas' inference made of a numeric answer column."""
    rows = [[r[0], r[1], r[2]] for r in TRICKY[:3]]
    path = write_csv(tmp_path / "qa.csv", ["id", "question", "answer"], rows)
    config = DatasetConfig(path=str(path), shuffle=False, fields=FIELDS)
    monkeypatch.setattr(raq.dataset, "_csv_as_written", lambda path: None)
    through_datasets = load_items(config)
    assert [i.answers[0] for i in through_datasets] == ["3.1", "0.5", "1000.0"]
    assert [i.id for i in through_datasets] == ["7", "8", "9"]
    monkeypatch.undo()
    assert [i.answers[0] for i in load_items(config)] == ["3.10", "0.50", "1000"]


def test_an_empty_cell_is_null(tmp_path: Path) -> None:
    rows = [
        ["", "No id: numbered by its row?", "a", "ctx"],
        ["q1", "No answer: skipped?", "", "ctx"],
        ["q2", "No context?", "b", ""],
        ["q3", "A short row?", "c"],  # fewer cells than columns: the rest are empty
    ]
    path = write_csv(tmp_path / "qa.csv", ["id", "question", "answer", "context"], rows)
    items = load_items(DatasetConfig(path=str(path), shuffle=False, fields=FIELDS))
    assert [(i.id, i.answers, i.context) for i in items] == [
        ("row-0", ("a",), "ctx"),
        ("q2", ("b",), None),
        ("q3", ("c",), None),
    ]


def test_a_cell_longer_than_the_csv_modules_limit_loads(tmp_path: Path) -> None:
    context = "A long document. " * 20_000  # 340 KB, beyond csv's 128 KiB default
    path = write_csv(tmp_path / "qa.csv", ["question", "answer", "context"], [["Q?", "a", context]])
    limit = csv.field_size_limit()
    (item,) = load_items(DatasetConfig(path=str(path), fields=FIELDS))
    assert item.context == context.strip()
    assert csv.field_size_limit() == limit, "the process's limit is left as it was"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"question,answer\nQ1?,a\nQ2?,b,extra\n", ":3: 3 cells, but the first row names 2"),
        (b"question,answer\nQ1?,a\nQ2?,\xff\xfe\n", ":3: not UTF-8 text"),
        (b"question,answer,question\nQ?,a,Q?\n", ":1: column 'question' is named twice"),
        # A quoted cell over two lines: the next row's line is counted in the file's lines.
        (b'question,answer\n"Q1\nstill Q1?",a\nQ2?,b,extra\n', ":4: 3 cells"),
        # A quote left open: the rest of the file is not quietly one cell.
        (b'question,answer\nQ1?,"a\nQ2?,b\n', ":3: not valid CSV (unexpected end of data)"),
        (b'question,answer\nQ1?,"a" b\n', ":2: not valid CSV"),
    ],
    ids=[
        "extra-cell",
        "not-utf8",
        "column-twice",
        "multi-line-cell",
        "unclosed-quote",
        "text-after-quote",
    ],
)
def test_a_broken_file_is_one_line_naming_the_file_and_line(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    path = tmp_path / "qa.csv"
    path.write_bytes(content)
    with pytest.raises(DatasetError) as error:
        load_items(DatasetConfig(path=str(path), fields=FIELDS))
    message = str(error.value)
    assert message.startswith(str(path)) and problem in message and "\n" not in message


def test_a_mapping_to_a_missing_column_names_the_columns(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "qa.csv", ["q", "a"], [["Q?", "x"]])
    with pytest.raises(DatasetError, match=r"no field 'question' \(fields: q, a\)"):
        load_items(DatasetConfig(path=str(path), fields=FIELDS))


def test_an_empty_file_has_no_questions(tmp_path: Path) -> None:
    path = tmp_path / "qa.csv"
    path.write_text("")
    with pytest.raises(DatasetError, match="no usable questions"):
        load_items(DatasetConfig(path=str(path), fields=FIELDS))
