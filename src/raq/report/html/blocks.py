"""The pieces every section is built from: escaped numbers and p-values, and tables.

A cell is HTML already when a table gets it, so every user string is escaped here or by
the section that writes it."""

from __future__ import annotations

from html import escape
from typing import Any

from raq.core.numbers import fmt, fmt_p


def number(value: Any, digits: int = 2) -> str:
    """A number as escaped text for a cell; None and NaN as an en dash."""
    return escape(fmt(value, digits))


def p_value(value: Any) -> str:
    """A p-value as escaped text for a cell: three significant digits, or '&lt; 0.001'."""
    return escape(fmt_p(value))


def p_is(value: Any) -> str:
    """'p = 0.031' or 'p &lt; 0.001', for prose."""
    text = p_value(value)
    return f"p {text}" if text.startswith("&lt;") else f"p = {text}"


def table(header: list[str], rows: list[list[str]], name_columns: int = 1) -> str:
    """Cells are HTML already (escaped by the caller); the first columns hold names."""
    head = "".join(
        f'<th class="name">{h}</th>' if i < name_columns else f"<th>{h}</th>"
        for i, h in enumerate(header)
    )
    lines = [f'<div class="scroll"><table>\n<tr>{head}</tr>']
    for row in rows:
        cells = "".join(
            cell if cell.startswith("<td") else
            f'<td class="name">{cell}</td>' if i < name_columns else f"<td>{cell}</td>"
            for i, cell in enumerate(row)
        )  # fmt: skip
        lines.append(f"<tr>{cells}</tr>")
    lines.append("</table></div>")
    return "\n".join(lines)
