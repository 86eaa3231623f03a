"""Server text is data: one escaping rule per output format, used wherever that format is written.

Answers, error bodies, judge replies and candidate names come from outside (a server, a config,
a dataset). Written as they are, they would be markup (rich's ``[/x]`` crashes a run), terminal
control (clear screen, window titles, OSC 8 links), table structure in report.md (``|``, line
breaks, ``<script>``) or spreadsheet formulas in a CSV (a leading ``=``). Each format has its own
function here:

- terminal: ``safe_console`` (every string it prints passes ``visible``, no markup) and
  ``one_line`` for plain ``echo`` lines;
- markdown: ``md`` (what is already markdown is marked ``Md`` and passes unchanged);
- CSV: ``csv_cell`` (OWASP's rule for formula injection) and ``csv_uncell`` to read it back;
- HTML: the report's own ``html.escape`` (report.html).
"""

from __future__ import annotations

import functools
import html
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

# C0 controls but tab and newline, DEL, C1 controls, and the bidirectional overrides that can
# make text read differently from what it is.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _show(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """Terminal text with every control character shown as ``\\xNN`` (ESC, BEL, CR, C1 …):
    nothing a server wrote can move the cursor, retitle the window or hide a link."""
    return _CONTROL.sub(_show, text)


def one_line(text: str) -> str:
    """``visible``, with line breaks shown as ``\\n``: an error stays the one line it claims."""
    return visible(text).replace("\n", "\\n").replace("\t", " ")


def safe_console(**options: Any) -> Console:
    """A rich Console that never reads markup and shows control characters: table cells,
    titles and printed strings all pass ``visible``. Style what raq itself writes with
    ``rich.text.Text`` objects or ``style=``."""
    return _safe_console_class()(markup=False, highlight=False, emoji=False, **options)


@functools.cache
def _safe_console_class() -> type[Console]:
    from rich.console import Console

    class SafeConsole(Console):
        def render_str(self, text: str, **options: Any) -> Any:
            options["markup"] = False
            options["emoji"] = False
            return super().render_str(visible(text), **options)

    return SafeConsole


class Md(str):
    """Text that is already markdown (raq's own bold or links), passed through ``md`` as is."""

    __slots__ = ()


_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def md(value: Any) -> str:
    """Outside text as literal markdown, safe in a table cell: HTML and markdown syntax
    escaped, ``|`` escaped, line breaks as ``<br>``, control characters shown."""
    if isinstance(value, Md):
        return value
    text = html.escape(visible(str(value)), quote=False)
    text = _MD_SPECIAL.sub(r"\\\1", text)
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "<br>")


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A CSV cell no spreadsheet runs as a formula: text starting with ``= + - @``, tab or CR
    gets a leading ``'`` (OWASP). Numbers stay numbers."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def csv_uncell(value: Any) -> Any:
    """The text ``csv_cell`` protected, as it was (raq reads its own CSV files back)."""
    if isinstance(value, str) and value.startswith("'") and value[1:].startswith(_FORMULA_START):
        return value[1:]
    return value
