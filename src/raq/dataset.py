"""Load a QA dataset (hub name, local file, or a built-in one) into QAItem records."""

from __future__ import annotations

import contextlib
import csv
import functools
import json
import re
import sqlite3
from array import array
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from raq.config import DatasetConfig, FieldMap
from raq.core.errors import DatasetError
from raq.core.records import QAItem

LOCAL_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
BUILTIN_PREFIX = "builtin:"
Row = tuple[int, dict[str, Any]]
_PATH_PART = re.compile(r"([^.\[\]]+)|\[(-?\d+)\]")


def builtin_path(name: str) -> Path:
    """A dataset shipped inside the package (``builtin:demo``)."""
    path = Path(str(resources.files("raq") / "data" / f"{name}.jsonl"))
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.jsonl"))
        raise DatasetError(f"no built-in dataset '{name}' (built-in: {', '.join(known)})")
    return path


def load_items(config: DatasetConfig, seed: int = 0) -> list[QAItem]:
    """The run's questions: loaded, shuffled with the seed, cut to the limit, mapped."""
    return list(iter_items(config, seed))


def iter_items(
    config: DatasetConfig, seed: int = 0, generators: list[dict[str, Any]] | None = None
) -> Iterator[QAItem]:
    """``load_items`` one question at a time, so a large dataset is never held as a list;
    every distinct generator (name, model, base_url) named in the rows' provenance is appended
    to ``generators``."""
    seen_generators: set[str] = set()
    for item, row in _map_rows(load_rows(config, seed), config):
        provenance = row.get("provenance") if isinstance(row, dict) else None
        generator = provenance.get("generator") if isinstance(provenance, dict) else None
        if generators is not None and isinstance(generator, dict):
            key = json.dumps(generator, sort_keys=True)
            if key not in seen_generators:
                seen_generators.add(key)
                generators.append(generator)
        yield item


def _map_rows(rows: Iterator[Row], config: DatasetConfig) -> Iterator[tuple[QAItem, dict]]:
    mapped, skipped = 0, 0
    seen: dict[str, int] = {}
    for row_index, row in rows:
        item = _to_item(row, row_index, config.fields, config.path)
        if item is None:
            skipped += 1
            continue
        if item.id in seen:  # results are keyed by id: two questions under one id would mix
            raise DatasetError(
                f"dataset '{config.path}' row {row_index}: question id '{item.id}' is also the "
                f"id of row {seen[item.id]}; ids must be unique (or set dataset.fields.id: null "
                "to number the rows)"
            )
        seen[item.id] = row_index
        yield item, row
        mapped += 1
        if config.limit and mapped >= config.limit:
            break
    if not mapped:
        reason = f" ({skipped} rows had no answer)" if skipped else ""
        raise DatasetError(f"dataset '{config.path}': no usable questions{reason}")


def load_rows(config: DatasetConfig, seed: int) -> Iterator[Row]:
    """Rows in run order, fetched one at a time (the dataset is read here, eagerly)."""
    path = config.path
    local = path.startswith(BUILTIN_PREFIX) or Path(path).suffix.lower() in LOCAL_BUILDERS
    if local and not path.startswith(BUILTIN_PREFIX) and not Path(path).is_file():
        raise DatasetError(f"dataset file not found: {path}")
    split = config.split
    if path.startswith(BUILTIN_PREFIX):
        path, split = str(builtin_path(path[len(BUILTIN_PREFIX) :])), "train"
    rows: Any = None
    if path.lower().endswith(".jsonl"):
        rows = _json_lines_as_written(Path(path))
    elif path.lower().endswith(".csv"):
        rows = _csv_as_written(Path(path))
    if rows is None:
        rows = _load_with_datasets(config, path, split)
    indices = array("q", range(len(rows)))
    if config.shuffle:
        import random

        random.Random(seed).shuffle(indices)
    # Map a little more than the limit, since rows without an answer are skipped.
    if config.limit:
        indices = indices[: max(config.limit * 2, config.limit + 100)]
    return _rows_at(rows, indices, in_order=not config.shuffle)


def _load_with_datasets(config: DatasetConfig, path: str, split: str) -> Any:
    """Rows through the ``datasets`` library: a hub dataset, Parquet, JSON, or JSONL whose
    rows differ in their fields."""
    import datasets

    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    datasets.disable_progress_bars()
    try:
        if Path(path).suffix.lower() in LOCAL_BUILDERS:
            builder = LOCAL_BUILDERS[Path(path).suffix.lower()]
            if Path(path).suffix.lower() == ".jsonl":
                _check_json_lines(Path(path))
            rows = _staged_file(builder, path, split)
        else:
            rows = datasets.load_dataset(path, config.name, split=split, revision=config.revision)
    except DatasetError:
        raise
    except Exception as exc:  # datasets raises many kinds; the user needs one line
        if Path(path).exists():  # a parser's message may quote the file: it may hold a secret
            raise DatasetError(
                f"dataset '{path}': not a readable {Path(path).suffix.lstrip('.')} dataset "
                f"({type(exc).__name__})"
            ) from None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatasetError(f"dataset '{path}' (split '{config.split}'): {first}") from None
    return rows


def _rows_at(rows: Any, indices: array[int], in_order: bool) -> Iterator[Row]:
    """The rows at ``indices``; ``in_order``: they are 0, 1, 2, … (not shuffled)."""
    try:
        if in_order and isinstance(rows, _StagedRows):
            yield from rows.first(len(indices))  # one query, not one per row
            return
        for i in indices:
            yield i, rows[i]
    finally:
        if isinstance(rows, _StagedRows):
            rows.close()


# datasets parses JSON in chunks of this many bytes (its default is 10 MB): the set-up's peak
# memory then stays flat in the file's size (scripts/BENCH.md, "Memory").
JSON_CHUNK_BYTES = 1 << 20


def _staged_file(builder: str, path: str, split: str) -> _StagedRows:
    """A local file's rows as datasets parses them, streamed (a chunk at a time, with no Arrow
    cache written and none memory-mapped: the mapped pages of a large file counted in the
    run's memory) into a staging file."""
    try:
        return _StagedRows(_json_texts(_stream_file(builder, path, split, JSON_CHUNK_BYTES)))
    except Exception:
        if builder != "json":
            raise
        # Each chunk infers its own column types, so rows that disagree across chunks (an id
        # that turns from a number into text) fail; one chunk of the default size loads
        # them as datasets always has.
        return _StagedRows(_json_texts(_stream_file(builder, path, split, None)))


def _stream_file(
    builder: str, path: str, split: str, chunk_bytes: int | None
) -> Iterator[dict[str, Any]]:
    import datasets

    options = {"chunksize": chunk_bytes} if builder == "json" and chunk_bytes else {}
    return iter(
        datasets.load_dataset(builder, data_files=path, split=split, streaming=True, **options)
    )


class _StagedRows:
    """Rows kept in a private temporary SQLite file (on disk, a small page cache in memory), so
    the run can read them in shuffled order without holding them: random access that a
    streamed file does not give."""

    def __init__(self, texts: Iterator[str]) -> None:
        """``texts``: the rows as JSON (a JSONL file's lines as read, or ``_json_texts``)."""
        # "": a private temporary on-disk database, deleted on close. Set-up may read it from
        # another thread than the one that wrote it, one reader at a time.
        self._conn = sqlite3.connect("", check_same_thread=False)
        try:
            self._conn.execute("CREATE TABLE rows (i INTEGER PRIMARY KEY, row TEXT NOT NULL)")
            with self._conn:
                self._conn.executemany("INSERT INTO rows VALUES (?, ?)", enumerate(texts))
        except BaseException:
            self._conn.close()
            raise
        self._count = self._conn.execute("SELECT COUNT(*) FROM rows").fetchone()[0]

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, i: int) -> dict[str, Any]:
        (row,) = self._conn.execute("SELECT row FROM rows WHERE i = ?", (i,)).fetchone()
        return json.loads(row)

    def first(self, n: int) -> Iterator[Row]:
        """Rows 0 to n - 1 in order, from one query (a cursor reads them a page at a time)."""
        for i, row in self._conn.execute("SELECT i, row FROM rows WHERE i < ? ORDER BY i", (n,)):
            yield i, json.loads(row)

    def close(self) -> None:
        self._conn.close()


class _Irregular(Exception):
    """Rows whose fields differ: datasets' loader unifies them (a missing field is null)."""


def _json_lines_as_written(path: Path) -> _StagedRows | None:
    """A JSONL file's rows exactly as written, staged like ``_staged_file``'s; None when its
    rows do not all have the same fields (nested ones too), which are left to datasets.

    Read by raq, not by datasets: no column types are inferred, so a column of dates stays
    text (datasets' loader turns ``"1998-03-04"`` into a timestamp, and a reference answer
    into ``"1998-03-04 00:00:00"``) and ``42`` stays ``42`` beside floats; and the set-up does
    not import datasets (about half a second)."""
    shape: list[object] = [None]

    def texts() -> Iterator[str]:
        for line, row in _json_lines_read(path):
            if not isinstance(row, dict):
                raise _Irregular
            shape[0] = _agree(shape[0], _shape(row))
            yield line

    try:
        return _staged_as_written(path, texts())
    except _Irregular:
        return None


def _json_texts(rows: Iterator[dict[str, Any]]) -> Iterator[str]:
    """Rows as the JSON texts ``_StagedRows`` keeps."""
    return (json.dumps(row, ensure_ascii=False, default=str) for row in rows)


def _staged_as_written(path: Path, texts: Iterator[str]) -> _StagedRows:
    """Rows raq read from ``path`` itself (as JSON texts), staged; a file that cannot be read
    is one line."""
    try:
        return _StagedRows(texts)
    except OSError as exc:
        raise DatasetError(f"dataset '{path}': cannot be read ({exc.strerror})") from None


def _csv_as_written(path: Path) -> _StagedRows:
    """A CSV file's rows with every cell as written, staged like ``_staged_file``'s.

    Read by raq, not by datasets (whose CSV loader is pandas' ``read_csv``): no column types are
    inferred, so reference answers ``3.10``, ``0.50`` and ``1000`` are not turned into
    ``3.1``, ``0.5`` and ``1000.0``, an id ``007`` is not ``7``, and ``NA``, ``None`` or
    ``null`` are answers, not missing values. Only an empty cell is null. The first row names
    the columns."""
    return _staged_as_written(path, _json_texts(_csv_rows(path)))


def _csv_rows(path: Path) -> Iterator[dict[str, Any]]:
    with path.open("rb") as file, _long_csv_fields():
        # strict: a quote left open fails at the end of the file, where the lenient reader
        # would quietly make the rest of the file one cell.
        reader = csv.reader(_decoded_lines(path, file), strict=True)
        try:
            header = next(reader, None)
            if header is None:
                return
            twice = sorted({name for name in header if header.count(name) > 1})
            if twice:
                raise DatasetError(f"{path}:1: column '{twice[0][:40]}' is named twice")
            for cells in reader:
                if not cells:  # a blank line
                    continue
                if len(cells) > len(header):
                    raise DatasetError(
                        f"{path}:{reader.line_num}: {len(cells)} cells, but the first row "
                        f"names {len(header)} columns"
                    )
                yield {name: cells[i] if i < len(cells) and cells[i] != "" else None
                       for i, name in enumerate(header)}  # fmt: skip
        except csv.Error as exc:
            raise DatasetError(f"{path}:{reader.line_num}: not valid CSV ({exc})") from None


def _decoded_lines(path: Path, file: Any) -> Iterator[str]:
    """A file's lines as text, each decoded alone, so a line that is not UTF-8 is named."""
    for number, raw in enumerate(file, start=1):
        try:  # a byte-order mark (an editor's on Windows) is no part of the first row
            yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError:
            raise DatasetError(f"{path}:{number}: not UTF-8 text") from None


@contextlib.contextmanager
def _long_csv_fields() -> Iterator[None]:
    """Cells of any length while the file is read (the csv module's limit, 128 KiB, is below
    a long context), then the limit as it was (it is the whole process's)."""
    before = csv.field_size_limit(2**31 - 1)  # the largest a C long holds everywhere
    try:
        yield
    finally:
        csv.field_size_limit(before)


_SCALARS = frozenset({str, int, float, bool})


def _shape(value: Any) -> object:
    """The fields of a value, nested: what two rows must share to be read alike."""
    if isinstance(value, dict):
        if not value:
            raise _Irregular  # datasets cannot type an empty object
        return tuple(
            (key, "scalar" if type(item) in _SCALARS else _shape(item))
            for key, item in value.items()
        )
    if isinstance(value, list):
        inner: object = None
        for item in value:
            inner = _agree(inner, _shape(item))
        return ["list", inner]
    return None if value is None else "scalar"


def _agree(a: object, b: object) -> object:
    """One shape for two that agree (null agrees with anything, an empty list with any
    list); ``_Irregular`` when they do not."""
    if a is None:
        return b
    if b is None or a == b:
        return a
    if isinstance(a, list) and isinstance(b, list):
        return ["list", _agree(a[1], b[1])]
    if isinstance(a, tuple) and isinstance(b, tuple) and [k for k, _ in a] == [k for k, _ in b]:
        return tuple((key, _agree(x, y)) for (key, x), (_, y) in zip(a, b, strict=True))
    raise _Irregular


def _json_lines_read(path: Path) -> Iterator[tuple[str, Any]]:
    """A JSONL file's non-blank lines, each with its value; a line that is not UTF-8 or not
    JSON is a DatasetError naming it (datasets only says that loading failed)."""
    with path.open("rb") as file:
        for number, line in enumerate(_decoded_lines(path, file), start=1):
            if not line.strip():
                continue
            try:
                yield line, json.loads(line)
            except ValueError as exc:
                raise DatasetError(f"{path}:{number}: not valid JSON ({exc.msg})") from None


def _check_json_lines(path: Path) -> None:
    """Name the first broken line of a JSONL file before datasets reads it."""
    for _ in _json_lines_read(path):
        pass


def _to_item(row: dict[str, Any], row_index: int, fields: FieldMap, path: str) -> QAItem | None:
    question = lookup_field(row, fields.question, row_index, path, required=True)
    answer = lookup_field(row, fields.answer, row_index, path, required=True)
    context = lookup_field(row, fields.context, row_index, path) if fields.context else None
    raw_id = lookup_field(row, fields.id, row_index, path) if fields.id else None
    # A null is no answer (never the text "None"); a row without any answer is skipped.
    listed = answer if isinstance(answer, list) else [answer]
    answers = tuple(str(a).strip() for a in listed if a is not None)
    answers = tuple(dict.fromkeys(a for a in answers if a))
    if not answers or question is None or not str(question).strip():
        return None
    return QAItem(
        id=str(raw_id) if raw_id not in (None, "") else f"row-{row_index}",
        question=str(question).strip(),
        answers=answers,
        context=str(context).strip() if context not in (None, "") else None,
    )


@functools.cache
def _path_steps(dotted: str) -> tuple[str | int, ...]:
    """``answers.text[0]`` → ("answers", "text", 0): parsed once per field, not once per row."""
    return tuple(
        int(index) if index is not None else key
        for key, index in (match.groups() for match in _PATH_PART.finditer(dotted))
    )


def lookup_field(
    row: dict[str, Any], dotted: str, row_index: int, path: str, required: bool = False
) -> Any:
    """Follow ``answers.text[0]``-style paths; a missing required field is a DatasetError."""
    value: Any = row
    for step in _path_steps(dotted):
        try:
            value = value[step]
        except (KeyError, IndexError, TypeError):
            if not required:
                return None
            # Field names only, a few and short: a file that is not a dataset (an env file,
            # a CSV of secrets) has its content where the names would be.
            names = [str(k)[:40] for k in list(row)[:12]] if isinstance(row, dict) else ["?"]
            more = ", …" if isinstance(row, dict) and len(row) > 12 else ""
            available = ", ".join(names) + more
            raise DatasetError(
                f"dataset '{path}' row {row_index}: no field '{dotted}' "
                f"(fields: {available}); set dataset.fields to map it"
            ) from None
    return value
