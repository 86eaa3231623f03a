"""The evidence behind each significant pair: the questions where the two differ most, with
the question, the reference, both answers and every judgment (collapsed, one per question)."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from raq.result import RunResult


def evidence_section(result: RunResult) -> str:
    """For each significant pair, the questions where the two differ most, with the texts."""
    if not result.evidence:
        return ""
    out = [
        "<h2>The evidence behind each significant pair</h2>",
        '<p class="desc">For every significant pair, the questions where the judges ranked the '
        "two furthest apart (mean rank over the verdict's judgments), with the question, the "
        "reference, both answers and every judgment: the presented order (ID = position; "
        "#reference and #wrong are the planted controls) and the judge's raw output.</p>",
    ]
    for pair in result.evidence:
        out.append(f"<h3>{escape(pair.better)} vs {escape(pair.worse)}</h3>")
        for example in pair.examples:
            item = example.item
            rows = []
            for name in (pair.better, pair.worse):
                answer = example.answers.get(name)
                text = (answer.answer if answer else None) or ""
                error = answer.error if answer and answer.error else ""
                rows.append(
                    f"<tr><th>{escape(name)}</th><td><pre>{escape(text)}</pre>"
                    + (f'<p class="caution">{escape(error)}</p>' if error else "")
                    + "</td></tr>"
                )
            judged = []
            for j in example.judgments:
                order = ", ".join(f"{i + 1}: {n}" for i, n in enumerate(j.presented_order))
                why = f"<p><em>Rationale:</em> {escape(j.rationale)}</p>" if j.rationale else ""
                judged.append(
                    f"<li>{escape(j.judge)}, repeat {j.repeat}: shown {escape(order)}; {why}"
                    f"<pre>{escape(j.raw_output or j.error or '')}</pre></li>"
                )
            out.append(
                f"<details><summary>{escape(item.id)}: {escape(item.question[:160])} "
                f"(mean rank {escape(pair.better)} − {escape(pair.worse)} = "
                f"{example.rank_difference:+.2f})</summary>"
                f"<p><strong>Reference:</strong> {escape('; '.join(item.answers))}</p>"
                f"<table>{''.join(rows)}</table><ul>{''.join(judged)}</ul></details>"
            )
    return "\n".join(out)
