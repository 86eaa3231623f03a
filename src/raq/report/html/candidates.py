"""The candidates' tables: mean ranks with speed, the speed distributions and cost, and the
thinking of reasoning models."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raq.report.cells import (
    CANDIDATE_COLUMNS,
    THINKING_COLUMNS,
    THINKING_DESCRIPTION,
    candidate_cells,
    fmt_percentiles,
    judge_thinking_lines,
    thinking_rows,
)
from raq.report.html.blocks import number, table
from raq.report.plots import plot_labels

if TYPE_CHECKING:
    from raq.result import RunResult


def candidates_section(result: RunResult, plots: dict[str, Path]) -> str:
    summary = result.summary_json
    labels: dict[str, str] = {}
    if plots:
        labels = plot_labels(list(summary["candidates"]))
    relabelled = any(labels.get(n, n).replace(r"\$", "$") != n for n in labels)
    rows = []
    for name, e in summary["candidates"].items():
        row = [escape(str(name)), *(escape(c) for c in candidate_cells(e))]
        if relabelled:
            label = labels[name].replace(r"\$", "$")
            row.insert(1, escape(label) if label != name else "(same)")
        rows.append(row)
    header = ["candidate", *CANDIDATE_COLUMNS]
    if relabelled:
        header.insert(1, "label in plots")
    out = [
        "<h2>Candidates</h2>",
        '<p class="desc">Best mean rank first; rank 1 is best. The question is the unit: each '
        "question's judgments (repeats, and the judges in the verdict) are folded into one "
        "ranking, so n is the number of questions the candidate was ranked in, and mean, "
        "median and std are over those question-level ranks; the 95% CI of the mean rank is a "
        "bootstrap over questions. Speed, over the "
        "candidate's successful answers: words/s = answer words ÷ request latency (the "
        "article's definition; a CJK character counts as one word); TTFT = time to the first "
        "token of the streamed reply, thinking included (see Thinking for reasoning models); "
        "latency = request start to last byte.</p>",
        table(header, rows, name_columns=2 if relabelled else 1),
    ]
    out.append(_speed_distributions(summary))
    return "\n".join(out)


def thinking_section(result: RunResult) -> str:
    """Shown only when a candidate or judge thought (a reasoning model)."""
    summary = result.summary_json
    rows = thinking_rows(summary)
    judges = judge_thinking_lines(summary)
    if not rows and not judges:
        return ""
    description = escape(THINKING_DESCRIPTION).replace("*estimated*", "<em>estimated</em>")
    description = description.replace("*Ended while thinking*", "<em>Ended while thinking</em>")
    out = ["<h2>Thinking</h2>", f'<p class="desc">{description}</p>']
    if rows:
        out.append(
            table(["candidate", *THINKING_COLUMNS], [[escape(c) for c in row] for row in rows])
        )
    out += [f"<p>{escape(line)}</p>" for line in judges]
    return "\n".join(out)


def _speed_distributions(summary: dict[str, Any]) -> str:
    """p50/p90/p99 and cost, when the summary carries them."""
    metrics = [  # (summary key, label, shown ×: seconds per token read better as ms, digits)
        ("latency_s", "latency s", 1.0, 3),
        ("ttft_s", "TTFT s", 1.0, 3),
        ("time_per_output_token_s", "time per output token ms", 1000.0, 1),
        ("output_tokens_per_second", "output tokens/s", 1.0, 1),
    ]
    rows = []
    for name, e in summary["candidates"].items():
        dist = e.get("distributions")
        if not dist:
            continue
        row = [escape(str(name))]
        for key, _, scale, digits in metrics:
            row.append(escape(fmt_percentiles(dist.get(key) or {}, digits, scale)))
        cost = e.get("cost_usd")
        if cost:
            mark = " (estimated)" if cost.get("estimated") else ""
            paid = cost.get("n_failed_answers_paid")
            mark += f", incl. {paid} failed answer(s) paid for" if paid else ""
            row.append(f"${number(cost.get('total'), 4)} over {cost.get('n_answers')}{mark}")
        else:
            row.append("–")
        rows.append(row)
    if not rows:
        return ""
    header = ["candidate", *(f"{label} p50 / p90 / p99" for _, label, _, _ in metrics), "cost USD"]
    return (
        "<h3>Speed distributions</h3>"
        '<p class="desc">Percentiles over each candidate\'s successful answers with that '
        "measurement (n in brackets). Time per output token and output tokens/s are measured "
        "after the first token: (latency − TTFT) ÷ (completion tokens − 1), and its inverse. "
        "Cost uses the config's prices; <em>estimated</em> means some token counts were "
        "words × 1.3.</p>" + table(header, rows)
    )
