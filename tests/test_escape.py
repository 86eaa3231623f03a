"""One escaping rule per output format: terminal, markdown, CSV."""

from __future__ import annotations

import io

import pandas as pd
import pytest
from rich.table import Table
from rich.text import Text

from raq.core.escape import Md, csv_cell, csv_uncell, md, one_line, safe_console, visible


def test_terminal_control_is_shown_not_obeyed() -> None:
    hostile = "a\x1b[2Jb\x1b]0;title\x07c\x1b]8;;http://x\x07link\x9b31m\u202eevil\rd"
    shown = visible(hostile)
    assert not any(ch in shown for ch in "\x1b\x07\x9b\u202e\r")
    assert "\\x1b[2J" in shown and "\\x07" in shown and "\\u202e" in shown
    assert one_line("two\nlines\ttab") == "two\\nlines tab"


def test_the_safe_console_reads_no_markup_and_shows_controls_everywhere() -> None:
    out = io.StringIO()
    console = safe_console(file=out, width=120, force_terminal=False)
    table = Table(title="t[/x]\x1b]0;x\x07")
    table.add_column("good[/oops]")
    table.add_row("cell [bold]x[/bold] \x1b[31mred")
    console.print(table)
    console.print(Text("label:", style="red"), "err [/x] \x07")
    text = out.getvalue()
    assert "good[/oops]" in text and "[bold]x[/bold]" in text and "err [/x] \\x07" in text
    assert "\x1b" not in text and "\x07" not in text


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("a|b", "a\\|b"),
        ("<script>x</script>", "&lt;script&gt;x&lt;/script&gt;"),
        ("two\nlines", "two<br>lines"),
        ("[link](javascript:x)", "\\[link\\](javascript:x)"),
        ("**bold** _it_ `code`", "\\*\\*bold\\*\\* \\_it\\_ \\`code\\`"),
    ],
)
def test_markdown_cells_are_literal_text(raw: str, escaped: str) -> None:
    assert md(raw) == escaped


def test_what_raq_marks_as_markdown_passes_unchanged() -> None:
    assert md(Md("0.01 **sig**")) == "0.01 **sig**"


@pytest.mark.parametrize("value", ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"])
def test_a_csv_cell_that_a_spreadsheet_would_run_gets_a_quote_and_reads_back(value: str) -> None:
    assert csv_cell(value) == "'" + value
    assert csv_uncell(csv_cell(value)) == value


def test_numbers_and_plain_text_stay_as_they_are_in_csv() -> None:
    assert (
        csv_cell(-1.5) == -1.5 and csv_cell("plain") == "plain" and csv_uncell("'plain") == "'plain"
    )


def test_pvalues_names_are_protected_the_way_result_writes_them() -> None:
    frame = pd.DataFrame([[1.0, 0.01], [0.01, 1.0]], index=["=a", "b"], columns=["=a", "b"])
    text = frame.rename(index=csv_cell, columns=csv_cell).to_csv()
    assert text.splitlines()[0] == ",'=a,b" and text.splitlines()[1].startswith("'=a,")
