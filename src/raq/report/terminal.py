"""Rich progress bars and the terminal tables of a run."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from raq.core.escape import safe_console, visible
from raq.core.numbers import fmt

if TYPE_CHECKING:
    from raq.result import RunResult


def print_result(result: RunResult, console: Console | None = None) -> None:
    """The candidate table, the significance matrix and what went wrong, for a terminal."""
    console = console or safe_console()
    summary = result.summary_json
    test = summary["test"]
    title = (
        f"{summary['name']}: {summary['n_questions']} questions, "
        f"{summary['repeats']} repeat(s), judge(s): {', '.join(summary['judges'])}"
    )
    cells = {}
    for name, entry in summary["candidates"].items():
        ci = entry.get("mean_rank_ci95")
        cells[name] = [
            f"{fmt(entry['mean_rank'])} ± {fmt(entry['std_rank'])}",
            f"{fmt(ci[0])}–{fmt(ci[1])}" if ci else "–",
            str(entry["n_ranks"]),
            fmt(entry["words_per_second"], 1),
            fmt(entry["answer_words"], 1),
            fmt(entry["ttft_s"], 3),
            f"{entry['failed_answers']}/{entry['answers']}",
        ]
    columns = ["rank ± std", "95% CI", "n", "words/s", "words", "TTFT s", "failed"]
    table = _candidate_table(title, columns, cells)
    if _fits(table, console):
        console.print(table)
    else:  # a narrow terminal: quality, then speed, each with the whole candidate name
        console.print(_candidate_table(title, columns[:3], {n: c[:3] for n, c in cells.items()}))
        console.print(_candidate_table("", columns[3:], {n: c[3:] for n, c in cells.items()}))
    console.print(
        "rank: mean of the n questions' rankings (a question's repeats and judges folded "
        "into one), 1 = best; CI: 95% bootstrap over questions; "
        "words/s and words: means over answers; TTFT: mean time to first token",
        style="dim",
    )
    _print_thinking(summary, console)
    cached = sum(e["cached_answers"] for e in summary["candidates"].values())
    if cached:
        total = sum(e["answers"] for e in summary["candidates"].values())
        console.print(
            f"{cached} of {total} answers came from the response cache; their speed "
            "metrics are those of the original calls (--refresh to call again)",
            style="dim",
        )
    for name, entry in summary["candidates"].items():
        if entry.get("truncated_answers"):
            console.print(
                f"candidate '{name}': {entry['truncated_answers']} of {entry['answers']} answers "
                "were cut by max_tokens (finish_reason length); kept and ranked as they are",
                style="yellow",
            )
        if entry.get("answers_addressing_judge"):
            console.print(
                f"candidate '{name}': {entry['answers_addressing_judge']} of {entry['answers']} "
                "answers speak to the judge (prompt injection); see report.md",
                style="yellow",
            )
    for note in summary.get("judge_notes") or []:
        console.print(Text("!", style="bold red"), note)
    for name, judge in summary["judges"].items():
        controls = judge.get("controls")
        if controls and controls["qualified"]:
            console.print(f"judge '{name}' qualified: {controls['reason']}", style="dim")
    if test.get("name") is None:
        console.print(str(test.get("error")), style="red")
    else:
        console.print(Text("Test:", style="bold"), test.get("description", test["name"]))
        _print_matrix(result, console)
    console.print(Text("Verdict:", style="bold"))
    for line in summary.get("verdict") or []:
        console.print(f"  {line}")
    for line in summary.get("tradeoffs") or []:
        console.print(f"  {line}", style="dim")
    if summary.get("power_hint"):
        console.print(f"  {summary['power_hint']}", style="dim")
    dunn = summary.get("dunn")
    if dunn and not dunn["is_verdict"]:
        found = ", ".join(f"{a} vs {b} (p = {p:.2g})" for a, b, p in dunn["significant_pairs"])
        console.print(
            "Dunn–Holm, the original RAQ method, on the same question-level ranks: "
            f"{found if found else 'no significant pair'}. It is not the verdict: "
            "it treats ranks within a question as independent, which inflates its error rate "
            "(README, calibration).",
            style="dim",
        )
    if summary["self_judging"]:
        console.print(
            Text("Self-judging:", style="bold red"),
            f"judge(s) {', '.join(summary['self_judging'])} share weights with a candidate; "
            "their rankings favour it (allow_self_judge: true).",
        )
    for name, reason in (summary.get("disabled_endpoints") or {}).items():
        console.print(Text(f"endpoint '{visible(name)}' disabled:", style="red"), reason)
    for name, entry in summary["judges"].items():
        if entry["failed_judgments"]:
            console.print(
                f"judge '{name}': {entry['failed_judgments']} of {entry['judgments']} "
                f"judgments failed {entry['errors']}",
                style="yellow",
            )
    for problem in result.problems:
        console.print(Text("limit broken:", style="bold red"), problem)
    console.print(f"run directory: {result.run_dir}", style="dim")


def _candidate_table(title: str, columns: list[str], cells: dict[str, list[str]]) -> Table:
    """Candidates by row; a name too long for the terminal folds onto a second line rather
    than losing its end (model names differ at the version)."""
    table = Table(title=title or None, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("candidate", overflow="fold")
    for column in columns:
        table.add_column(column, justify="right", no_wrap=True)
    for name, row in cells.items():
        table.add_row(name, *row)
    return table


def _fits(table: Table, console: Console) -> bool:
    """Whether the table prints at its natural width, nothing wrapped or cut."""
    unbounded = console.options.update_width(10_000)  # measure clamps to the width it is given
    return console.measure(table, options=unbounded).maximum <= console.width


def _print_matrix(result: RunResult, console: Console) -> None:
    pvalues = result.pvalues
    if pvalues.empty:
        return
    alpha = result.summary_json["test"]["alpha"]
    table = Table(
        title="adjusted p-values (* below alpha)", title_justify="left", box=box.SIMPLE_HEAD
    )
    table.add_column("")
    for name in pvalues.columns:
        table.add_column(str(name), justify="right")
    for row_name, row in pvalues.iterrows():
        cells = []
        for col_name, value in row.items():
            if row_name == col_name:
                cells.append("·")
            else:
                cells.append(_p_cell(value, alpha))
        table.add_row(str(row_name), *cells)
    if _fits(table, console):
        console.print(table)
        return
    pairs = Table(  # a narrow terminal: one pair a row, whole names
        title="adjusted p-values (* below alpha)", title_justify="left", box=box.SIMPLE_HEAD
    )
    pairs.add_column("candidate", overflow="fold")
    pairs.add_column("vs", overflow="fold")
    pairs.add_column("p", justify="right", no_wrap=True)
    names = list(pvalues.columns)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            value = pvalues.at[a, b]
            pairs.add_row(str(a), str(b), _p_cell(value, alpha))
    console.print(pairs)


def _p_cell(value: float, alpha: float) -> str:
    """A pair's adjusted p, starred below alpha; "–" for a pair the test gave none."""
    if not math.isfinite(value):
        return "–"
    return f"{value:.3g}{'*' if value < alpha else ''}"


def _narrow_comparison(diff: dict, title: Any) -> Table:
    """The comparison for a narrow terminal: a candidate's name on its own row, then one row
    per metric with A, B and the change."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("candidate / metric", overflow="fold")
    for column in ("A", "B", "Δ"):
        table.add_column(column, justify="right", no_wrap=True)
    labels = [("mean_rank", "mean rank", 2), ("words_per_second", "words/s", 1),
              ("answer_words", "words", 1), ("ttft_s", "TTFT s", 3),
              ("failed_answers", "failed", 0)]  # fmt: skip
    for row in diff["candidates"]:
        table.add_row(Text(row["candidate"], style="bold"), "", "", "")
        for metric, label, digits in labels:
            cell = row[metric]
            change = f"{cell['change']:+.{digits}f}" if cell["change"] is not None else "–"
            table.add_row(f"  {label}", fmt(cell["a"], digits), fmt(cell["b"], digits), change)
        table.rows[-1].end_section = True
    return table


def print_comparison(
    diff: dict, label_a: str, label_b: str, console: Console | None = None
) -> None:
    """Run A → run B, per candidate: mean rank, speed, length, failures."""
    console = console or safe_console()
    table = Table(title=f"{label_a} → {label_b}", title_justify="left")
    table.add_column("candidate", overflow="fold")
    metrics = [("mean_rank", 2), ("words_per_second", 1), ("answer_words", 1), ("ttft_s", 3)]
    for metric, _ in metrics:
        table.add_column(f"{metric} A → B (Δ)", justify="right", no_wrap=True)
    table.add_column("failed A → B", justify="right", no_wrap=True)
    for row in diff["candidates"]:
        cells = []
        for metric, digits in metrics:
            cell = row[metric]
            change = f" ({cell['change']:+.{digits}f})" if cell["change"] is not None else ""
            cells.append(f"{fmt(cell['a'], digits)} → {fmt(cell['b'], digits)}{change}")
        failed = row["failed_answers"]
        cells.append(f"{fmt(failed['a'])} → {fmt(failed['b'])}")
        table.add_row(row["candidate"], *cells)
    console.print(table if _fits(table, console) else _narrow_comparison(diff, table.title))
    for key, label in (("only_in_a", "only in A"), ("only_in_b", "only in B")):
        if diff[key]:
            console.print(f"{label}: {', '.join(diff[key])}")
    for key, label in (
        ("newly_significant", "newly significant"),
        ("no_longer_significant", "no longer significant"),
    ):
        for a, b in diff[key]:
            console.print(f"{label}: {a} vs {b}")
    console.print(
        f"A: {diff['a']['n_questions']} questions, test {diff['a']['test']}; "
        f"B: {diff['b']['n_questions']} questions, test {diff['b']['test']}",
        style="dim",
    )


def _print_thinking(summary: dict[str, Any], console: Console) -> None:
    """A line per candidate that thought (a reasoning model): how much, and how long."""
    from rich.markup import escape

    for name, entry in summary["candidates"].items():
        thinking = entry.get("thinking") or {}
        if not thinking.get("answers_with_thinking"):
            continue
        words = (thinking.get("thinking_words") or {}).get("mean")
        share = (thinking.get("thinking_share_of_latency") or {}).get("mean")
        line = (
            f"{escape(str(name))} thought in {thinking['answers_with_thinking']} of "
            f"{thinking['n_answers']} answers ({fmt(words, 0)} words on average, kept apart "
            "from the answer)"
        )
        if share is not None:
            line += (
                f"; first answer token after {fmt(entry.get('answer_ttft_s'), 3)} s, "
                f"{share:.0%} of the latency thinking"
            )
        console.print(f"[dim]{line}[/dim]")
