"""Numbers as report text, shared by the terminal, markdown and HTML renderings."""

from __future__ import annotations

from typing import Any

from raq.core.numbers import fmt

CANDIDATE_COLUMNS = [
    "mean rank", "95% CI", "median", "std", "n questions", "words/s", "answer words",
    "TTFT s (mean)", "latency s (mean)", "failed answers",
]  # fmt: skip


def fmt_percentiles(dist: dict[str, Any], digits: int, scale: float = 1.0) -> str:
    """A summary.json distribution as 'p50 / p90 / p99 (n = N)', each value times ``scale``
    (1000: seconds shown as ms)."""
    p50, p90, p99 = (
        fmt(dist[k] * scale if dist.get(k) is not None else None, digits)
        for k in ("p50", "p90", "p99")
    )
    return f"{p50} / {p90} / {p99} (n = {dist.get('n', 0)})"


def candidate_cells(entry: dict[str, Any]) -> list[str]:
    """One candidate's summary.json entry as the cells of CANDIDATE_COLUMNS."""
    ci = entry.get("mean_rank_ci95")
    return [
        fmt(entry["mean_rank"]),
        f"{fmt(ci[0])}–{fmt(ci[1])}" if ci else "–",
        fmt(entry["median_rank"], 1),
        fmt(entry["std_rank"]),
        str(entry["n_ranks"]),
        fmt(entry["words_per_second"], 1),
        fmt(entry["answer_words"], 1),
        fmt(entry["ttft_s"], 3),
        fmt(entry["latency_s"], 3),
        f"{entry['failed_answers']}/{entry['answers']}",
    ]


THINKING_COLUMNS = [
    "answers that thought", "thinking words p50 / p90 / p99", "thinking tokens",
    "TTFT s (mean)", "first answer token s (mean)", "share of latency thinking (mean)",
    "ended while thinking",
]  # fmt: skip
THINKING_DESCRIPTION = (
    "Reasoning models think before they answer; raq keeps the thinking apart from the answer "
    "(the judge reads only the answer, and answer words, words/s and length are the answer's). "
    "TTFT is the first token of any kind, thinking included; the first answer token comes "
    "after the thinking (streamed answers only). Share of latency thinking = (first answer "
    "token − TTFT) ÷ latency. Thinking tokens are the server's reasoning_tokens, or thinking "
    "words × 1.3 where it sent none (*estimated*). *Ended while thinking* counts answers that "
    "failed as thinking_unfinished (max_tokens ran out while thinking, or no answer came)."
)


def thinking_rows(summary: dict[str, Any]) -> list[list[str]]:
    """One row of THINKING_COLUMNS (after the candidate's name) per candidate, or none at all
    when no candidate thought: the section is shown only for runs with a reasoning model."""
    entries = summary["candidates"]
    if not any(
        (e.get("thinking") or {}).get("answers_with_thinking")
        or e.get("errors", {}).get("thinking_unfinished")
        for e in entries.values()
    ):
        return []
    rows = []
    for name, e in entries.items():
        thinking = e.get("thinking") or {}
        words = thinking.get("thinking_words") or {}
        share = (thinking.get("thinking_share_of_latency") or {}).get("mean")
        estimated = " (estimated)" if thinking.get("tokens_estimated") else ""
        rows.append(
            [
                str(name),
                f"{thinking.get('answers_with_thinking', 0)}/{thinking.get('n_answers', 0)}",
                fmt_percentiles(words, 0) if words.get("n") else "–",
                f"{thinking.get('tokens_total', 0)}{estimated}",
                fmt(e.get("ttft_s"), 3),
                fmt(e.get("answer_ttft_s"), 3),
                f"{share:.0%}" if share is not None else "–",
                str(e.get("errors", {}).get("thinking_unfinished", 0)),
            ]
        )
    return rows


def judge_thinking_lines(summary: dict[str, Any]) -> list[str]:
    """A sentence per LLM judge that thought: its thinking words and tokens, and its cost."""
    lines = []
    for name, judge in summary["judges"].items():
        tokens = judge.get("tokens") or {}
        if not tokens.get("thinking"):
            continue
        cost = judge.get("cost_usd")
        line = (
            f"Judge {name} thought {judge.get('thinking_words', 0)} words "
            f"({tokens['thinking']} of its {tokens.get('completion', 0)} completion tokens"
            f"{', estimated' if tokens.get('estimated') else ''}); its ranking is read from "
            "the answer after the thinking"
        )
        if cost:
            line += f"; cost USD {cost['total']:.4f}, thinking included"
        lines.append(line + ".")
    return lines
