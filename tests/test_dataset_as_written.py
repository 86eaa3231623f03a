"""A JSONL file whose rows share their fields is read by raq itself, as written: the same
questions as through the datasets library, except where datasets changed the file's values
(a column of dates became timestamps), and without importing datasets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import raq.dataset
from raq.config import DatasetConfig
from raq.core.errors import DatasetError
from raq.dataset import load_items


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


def both_ways(path: Path, monkeypatch: pytest.MonkeyPatch, **config: object) -> tuple:
    """The questions read as written, and through datasets."""
    dataset = DatasetConfig(path=str(path), **config)
    as_written = load_items(dataset, seed=7)
    with monkeypatch.context() as patch:
        patch.setattr(raq.dataset, "_json_lines_as_written", lambda path: None)
        through_datasets = load_items(dataset, seed=7)
    return as_written, through_datasets


def test_squad_shaped_rows_load_as_through_datasets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [
        {
            "id": f"q{n}" if n % 5 else n,  # text and numbers mixed, as scalars may be
            "title": "Ünïcode ✓ 文脈",
            "question": f"  Which town had mill {n}? " + "word " * (n % 9),
            "context": None if n % 7 == 0 else f"The basin had {n} mills.\nA second line.",
            "answers": {
                "text": [f"town {n % 4}", "the old town"][: 1 + n % 2],
                "answer_start": [n, n + 1][: 1 + n % 2],
            },
        }
        for n in range(300)
    ]
    rows[3]["answers"] = {"text": [], "answer_start": []}  # unanswerable: skipped both ways
    path = write_rows(tmp_path / "qa.jsonl", rows)
    for config in ({"shuffle": True}, {"shuffle": False, "limit": 40}):
        as_written, through_datasets = both_ways(path, monkeypatch, **config)
        assert as_written == through_datasets
        assert len(as_written) == (299 if "limit" not in config else 40)


def test_the_embedded_dataset_loads_as_through_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    dataset = DatasetConfig(path="builtin:demo", split="validation")  # builtin: always train
    as_written = load_items(dataset, seed=0)
    with monkeypatch.context() as patch:
        patch.setattr(raq.dataset, "_json_lines_as_written", lambda path: None)
        assert load_items(dataset, seed=0) == as_written
    assert len(as_written) > 10


def test_a_column_of_dates_stays_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [{"id": f"q{n}", "question": f"When did mill {n} open?", "answers": [f"19{n:02d}-03-04"]}
            for n in range(20)]  # fmt: skip
    path = write_rows(tmp_path / "dates.jsonl", rows)
    as_written, through_datasets = both_ways(path, monkeypatch, fields={"answer": "answers"})
    assert sorted(i.answers[0] for i in as_written) == sorted(r["answers"][0] for r in rows)
    # What datasets' loader made of them: timestamps, printed with a time of day.
    assert all(i.answers[0].endswith(" 00:00:00") for i in through_datasets)


def test_rows_with_different_fields_go_through_datasets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """datasets gives a field missing from a row as null; raq leaves such files to it."""
    rows = [{"id": f"q{n}", "question": f"Q{n}?", "answer": f"a{n}"} for n in range(30)]
    for row in rows[::3]:
        row["context"] = "a context only some rows have"
    path = write_rows(tmp_path / "uneven.jsonl", rows)
    assert raq.dataset._json_lines_as_written(path) is None
    items = load_items(DatasetConfig(path=str(path), shuffle=False, fields={"answer": "answer"}))
    assert [i.context for i in items[:3]] == ["a context only some rows have", None, None]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"a": {"b": "x"}}, {"a": {"c": "x"}}),  # nested fields differ
        ({"a": {"b": "x"}}, {"a": "x"}),  # an object in one row, text in the other
        ({"a": [{"b": "x"}]}, {"a": [{"b": "x", "c": "y"}]}),  # inside a list
        ({"a": {}}, {"a": {}}),  # an empty object
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}),  # the same fields in another order
    ],
)
def test_which_rows_differ(tmp_path: Path, first: dict, second: dict) -> None:
    path = write_rows(tmp_path / "x.jsonl", [first, second])
    assert raq.dataset._json_lines_as_written(path) is None


def test_nulls_and_empty_lists_agree_with_any_shape(tmp_path: Path) -> None:
    rows = [{"a": None, "l": []}, {"a": {"b": [1]}, "l": [{"c": None}]}, {"a": None, "l": []}]
    path = write_rows(tmp_path / "x.jsonl", rows)
    staged = raq.dataset._json_lines_as_written(path)
    assert staged is not None and [staged[i] for i in range(3)] == rows
    staged.close()


def test_bad_lines_are_named(tmp_path: Path) -> None:
    good = json.dumps({"question": "Q?", "answer": "a"})
    path = tmp_path / "bad.jsonl"
    path.write_bytes(f"{good}\n\n{good}\n{{broken\n".encode())
    with pytest.raises(DatasetError, match=r"bad.jsonl:4: not valid JSON"):
        raq.dataset._json_lines_as_written(path)
    path.write_bytes(f"{good}\n".encode() + b'{"question": "Q\xff?", "answer": "a"}\n')
    with pytest.raises(DatasetError, match=r"bad.jsonl:2: not UTF-8 text"):
        raq.dataset._json_lines_as_written(path)


def test_a_byte_order_mark_is_not_part_of_the_first_row(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"question": "Q?", "answer": "a"}).encode())
    items = load_items(DatasetConfig(path=str(path), fields={"answer": "answer"}))
    assert [(i.question, i.answers) for i in items] == [("Q?", ("a",))]


def test_loading_a_regular_file_does_not_import_datasets(tmp_path: Path) -> None:
    path = write_rows(
        tmp_path / "qa.jsonl", [{"question": f"Q{n}?", "answer": "a"} for n in range(5)]
    )
    code = (
        "import sys\nfrom raq.config import DatasetConfig\nfrom raq.dataset import load_items\n"
        f"items = load_items(DatasetConfig(path={str(path)!r}, fields={{'answer': 'answer'}}))\n"
        "print(len(items), 'datasets' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["5", "False"]
