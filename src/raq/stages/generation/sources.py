"""The passages of documents mode: text files or a dataset's contexts, cut into chunks.

Chunks are cut from the original text (spacing and line breaks survive) in a stable order, and a
source is labelled without its folder, so prompts and their cache keys do not change when the
project moves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from raq.config import DatasetConfig
from raq.core.errors import DatasetError
from raq.core.metrics import _CJK
from raq.dataset import BUILTIN_PREFIX, load_rows, lookup_field
from raq.stages.generation.config import DocumentsConfig

TEXT_SUFFIXES = (".txt", ".md")


@dataclass(frozen=True)
class Chunk:
    source: str
    index: int
    text: str


_TOKEN = re.compile(f"[{_CJK}]|[^\\s{_CJK}]+")


def chunk_text(text: str, chunk_words: int, overlap_words: int) -> list[str]:
    """Windows of ``chunk_words`` words overlapping by ``overlap_words``, cut from the original.

    Words follow raq's word rule (each CJK character is one word), and each chunk is a slice of
    the original text, so its spacing and line breaks survive.
    """
    spans = [m.span() for m in _TOKEN.finditer(text)]
    step = chunk_words - overlap_words
    chunks = []
    for start in range(0, len(spans), step):
        end = min(start + chunk_words, len(spans))
        chunks.append(text[spans[start][0] : spans[end - 1][1]])
        if end == len(spans):
            break
    return chunks


def load_chunks(config: DocumentsConfig, seed: int) -> list[Chunk]:
    """Every chunk of every document, in a stable order (sorted files, then row order)."""
    dataset = config.source_dataset()
    texts = _dataset_contexts(dataset, seed) if dataset else _text_files(Path(config.path or ""))
    chunks = [
        Chunk(source, i, piece)
        for source, text in texts
        for i, piece in enumerate(chunk_text(text, config.chunk_words, config.overlap_words))
    ]
    if not chunks:
        where = dataset.path if dataset else config.path
        raise DatasetError(f"documents '{where}': no text to write questions about")
    return chunks


def _text_files(path: Path) -> list[tuple[str, str]]:
    if path.is_file():
        return [(path.name, path.read_text(encoding="utf-8"))]
    if not path.is_dir():
        raise DatasetError(f"documents path not found: {path}")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
    if not files:
        raise DatasetError(f"documents folder {path} holds no .txt or .md files")
    return [(p.relative_to(path).as_posix(), p.read_text(encoding="utf-8")) for p in files]


def _dataset_contexts(config: DatasetConfig, seed: int) -> list[tuple[str, str]]:
    """Distinct passages of a dataset's context column (SQuAD repeats one per question)."""
    if not config.fields.context:
        raise DatasetError(f"dataset '{config.path}': fields.context must name the passage column")
    seen: set[str] = set()
    out = []
    for row_index, row in load_rows(config, seed):
        text = lookup_field(row, config.fields.context, row_index, config.path, required=True)
        text = str(text or "").strip()
        if text and text not in seen:
            seen.add(text)
            raw_id = (
                lookup_field(row, config.fields.id, row_index, config.path)
                if config.fields.id
                else None
            )
            name = raw_id if raw_id not in (None, "") else f"row-{row_index}"
            out.append((f"{_source_label(config.path)}#{name}", text))
    return out


def _source_label(path: str) -> str:
    """A dataset's name as prompts and provenance show it: a local file by its name only, so
    the prompt (and with it the cache key) does not change when the project moves."""
    local = not path.startswith(BUILTIN_PREFIX) and Path(path).exists()
    return Path(path).name if local else path
