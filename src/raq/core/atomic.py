"""Files replaced whole: readers never see half a file, and two writers never share a name.

A run and a ``raq report`` on the same directory (or two reports) may render the same output
at once. Each writes its own temporary file (a unique name beside the target) and renames it
over the target: the rename is atomic, so the file is always one complete rendering.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def temporary_beside(path: Path) -> Path:
    """A fresh temporary name in ``path``'s directory, unique to this process and call."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def write_text_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a unique temporary file and an atomic rename."""
    tmp = temporary_beside(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
