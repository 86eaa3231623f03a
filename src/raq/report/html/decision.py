"""The top of the page, what a reader decides from: the run's facts, the alerts (self-judging,
broken limits, disabled endpoints, answers addressing the judge, truncated answers), and the
verdict with its trade-offs, the trade-off figure and the judges on planted controls."""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from raq.config import repeats_for
from raq.report.cells import control_cells
from raq.report.html.blocks import table

if TYPE_CHECKING:
    from raq.result import RunResult


def facts_section(result: RunResult) -> str:

    summary = result.summary_json
    config = result.config
    judges = ", ".join(
        f"{escape(j.name)} ({escape(j.kind)}, {repeats_for(j, config.repeats)} repeat(s))"
        for j in config.judges
    )
    test = summary["test"]
    test_name = escape(str(test["name"])) if test.get("name") else "none"
    rows = [
        (
            "Questions",
            f"{summary['n_questions']} in the dataset, {summary['n_questions_ranked']} ranked",
        ),
        (
            "Candidates",
            f"{len(summary['candidates'])}: "
            + ", ".join(escape(str(n)) for n in summary["candidates"]),
        ),
        ("Judges", judges),
        ("Repeats", f"{summary['repeats']} per LLM judge (a reference judge runs once)"),
        ("Test", f"{test_name} at α = {config.alpha:g}"),
        ("Status", escape(str(summary.get("status")))),
        ("Run directory", escape(str(result.run_dir))),
    ]
    cells = "\n".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="facts">\n{cells}\n</table>'


def alerts_section(result: RunResult) -> str:
    summary = result.summary_json
    out = []
    if summary.get("self_judging"):
        names = ", ".join(escape(str(n)) for n in summary["self_judging"])
        out.append(
            f'<div class="warning"><strong>Self-judging:</strong> judge(s) {names} are also '
            "candidates (allow_self_judge: true). Expect their rankings to favour themselves; "
            "the RAQ method requires an independent judge.</div>"
        )
    for problem in result.problems:
        out.append(f'<div class="warning"><strong>Limit broken:</strong> {escape(problem)}</div>')
    for name, reason in (summary.get("disabled_endpoints") or {}).items():
        out.append(
            f'<div class="caution"><strong>Endpoint disabled:</strong> {escape(str(name))}: '
            f"{escape(str(reason))}</div>"
        )
    for name, entry in summary["candidates"].items():
        if entry.get("answers_addressing_judge"):
            out.append(
                f'<div class="caution"><strong>Answers addressing the judge:</strong> '
                f"{escape(str(name))}: {entry['answers_addressing_judge']} of {entry['answers']} "
                "answers speak to the judge (prompt injection); they are ranked as they are "
                "and may have moved a weak judge.</div>"
            )
        if entry.get("truncated_answers"):
            out.append(
                f'<div class="caution"><strong>Truncated answers:</strong> {escape(str(name))}: '
                f"{entry['truncated_answers']} of {entry['answers']} answers were cut by "
                "max_tokens (finish_reason length); kept and ranked as they are.</div>"
            )
    return "\n".join(out)


def verdict_section(result: RunResult) -> str:
    """The decision first: unqualified judges, one line per significant pair, the controls."""
    summary = result.summary_json
    out = ["<h2>Verdict</h2>"]
    for note in summary.get("judge_notes") or []:
        out.append(f'<div class="warning"><strong>Unqualified judge:</strong> {escape(note)}</div>')
    lines = "".join(f"<li>{escape(line)}</li>" for line in summary.get("verdict") or [])
    out.append(f'<ul class="verdict">{lines}</ul>')
    others = "".join(f"<li>{escape(line)}</li>" for line in summary.get("tradeoffs") or [])
    if others:
        out.append(f'<ul class="tradeoffs">{others}</ul>')
    tradeoff = result.plots.get("tradeoff")
    if tradeoff is not None and Path(tradeoff).is_file():
        data = base64.b64encode(Path(tradeoff).read_bytes()).decode("ascii")
        out.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="quality against speed and '
            'cost"><figcaption><strong>Quality against speed and cost.</strong> Mean rank with '
            "its 95% bootstrap CI (up is better) against words per second and, where prices are "
            "configured, the estimated cost of 1,000 questions.</figcaption></figure>"
        )
    if not any(judge.get("controls") for judge in summary["judges"].values()):
        out.append(
            '<p class="desc">No judge ranked planted controls (a reference judge has none; '
            "<code>judges[].controls: false</code> turns them off for an LLM judge).</p>"
        )
        return "\n".join(out)
    rows = []
    for name, judge in summary["judges"].items():
        c = judge.get("controls")
        if c is None:
            rows.append([escape(str(name)), "–", "–", "–", "–", "–", "not checked (no controls)"])
            continue
        status = "qualified" if c["qualified"] else "<strong>unqualified</strong>"
        if not judge.get("in_verdict", True):
            status += ", left out of the verdict"
        rows.append([escape(str(name)), *control_cells(c), status])
    out.append(
        '<h3>The judges on planted controls</h3><p class="desc">Among the anonymised answers '
        "each LLM judge ranks sit the question's reference answer and a plainly wrong one "
        "(another question's reference), at counterbalanced positions. A judge qualifies when "
        "the 95% Wilson lower bounds of 'reference first' and 'reference above wrong' beat "
        "chance: what a judge ranking by position or at random scores (1 in the answers "
        "shown, and 50%).</p>"
    )
    out.append(
        table(
            ["judge", "judgments", "reference first (95% CI)", "reference above wrong (95% CI)",
             "wrong last (95% CI)", "chance",
             "status"],
            rows,
        )
    )  # fmt: skip
    return "\n".join(out)
