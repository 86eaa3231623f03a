"""report.html: one self-contained page (inline CSS, plots as data: URIs, no scripts).

It opens offline, can be mailed or kept as a CI artifact, and loads nothing from anywhere.
Every user string (names, errors, config) is escaped: answers and names may hold markup.
"""

from __future__ import annotations

import base64
import math
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raq.config import config_to_yaml, repeats_for
from raq.core.numbers import fmt, fmt_p
from raq.report.cells import (
    CANDIDATE_COLUMNS,
    THINKING_COLUMNS,
    THINKING_DESCRIPTION,
    candidate_cells,
    fmt_percentiles,
    judge_thinking_lines,
    thinking_rows,
)
from raq.report.plots import plot_labels

if TYPE_CHECKING:
    import pandas as pd

    from raq.result import RunResult

PLOT_CAPTIONS = {
    "bars": (
        "Candidates compared",
        "The original article's figure: mean rank with its 95% bootstrap CI over questions "
        "(rank 1 = best; the dashed line is what a judge ranking at random would give), mean "
        "words per second and mean answer length, each over the n stated in its title.",
    ),
    "significance": (
        "Significance matrix",
        "Adjusted p-value of every pair from the test above; dark green cells differ "
        "significantly, pink cells do not.",
    ),
    "critical_difference": (
        "Critical difference diagram",
        "Mean ranks on one axis (best on the left); candidates joined by a horizontal bar "
        "cannot be told apart by the test.",
    ),
    "latency": (
        "Latency distributions",
        "Request latency (start to last byte) and time to first token per successful answer; "
        "boxes span the middle half, whiskers 1.5 × the interquartile range, dots are outliers.",
    ),
    "position_bias": (
        "Judge position bias",
        "Mean rank each judge gave to the answer shown at each position; a judge that reads "
        "content keeps close to the dashed line at every position.",
    ),
}

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", sans-serif;
  color: #1d232a; max-width: 1180px; margin: 1.5rem auto; padding: 0 1.2rem; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: .3rem; }
h2 { font-size: 1.25rem; border-bottom: 2px solid #d8dee4; padding-bottom: .2rem;
  margin-top: 2.2rem; }
h3 { font-size: 1.05rem; margin: 1.4rem 0 .4rem; }
p.note, figcaption, .desc { color: #4a5560; font-size: .9rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .88rem; }
th, td { border: 1px solid #d0d7de; padding: .28rem .55rem; text-align: right;
  vertical-align: top; }
td { white-space: nowrap; }
th { background: #f3f5f7; }
td.name, th.name { text-align: left; max-width: 22rem; overflow-wrap: break-word;
  white-space: normal; }
table.facts td { white-space: normal; }
table.facts td, table.facts th { text-align: left; }
td.sig { background: #b7e4b0; font-weight: 600; }
td.diag { background: #f3f5f7; color: #8a949e; }
td.flag { color: #b42318; font-weight: 600; }
.warning { border: 2px solid #d92d20; background: #fef3f2; padding: .7rem 1rem;
  border-radius: 6px; margin: 1rem 0; }
.caution { border: 1px solid #dc6803; background: #fffaeb; padding: .6rem 1rem;
  border-radius: 6px; margin: 1rem 0; }
figure { margin: 1.2rem 0 2rem; }
figure img { max-width: 100%; height: auto; border: 1px solid #e5e9ed; }
pre { background: #f6f8fa; border: 1px solid #d0d7de; padding: .8rem; overflow-x: auto;
  font-size: .82rem; white-space: pre-wrap; overflow-wrap: anywhere; }
.scroll { overflow-x: auto; }
"""


def render_html(
    result: RunResult, plots: dict[str, Path], *, skipped: dict[str, str] | None = None
) -> str:
    """The whole report as one HTML string; ``skipped`` (from write_plots) says what is missing."""
    summary = result.summary_json
    body = [
        f"<h1>RAQ report: {escape(str(summary['name']))}</h1>",
        _facts(result),
        _alerts(result),
        _verdict(result),
        _candidates(result, plots),
        _thinking(result),
        _differences(result),
        _evidence(result),
        _plots({k: v for k, v in plots.items() if k != "tradeoff"}, skipped or {}),
        _diagnostics(result),
        _failures(result),
        _config(result),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>RAQ report: {escape(str(summary['name']))}</title>\n"
        f"<style>{CSS}</style>\n</head>\n<body>\n"
        + "\n".join(part for part in body if part)
        + "\n</body>\n</html>\n"
    )


# ---------------------------------------------------------------------------------------------
# Formatting


def _fmt(value: Any, digits: int = 2) -> str:
    return escape(fmt(value, digits))


def _p(value: Any) -> str:
    return escape(fmt_p(value))


def _p_is(value: Any) -> str:
    """'p = 0.031' or 'p &lt; 0.001', for prose."""
    text = _p(value)
    return f"p {text}" if text.startswith("&lt;") else f"p = {text}"


def _table(header: list[str], rows: list[list[str]], name_columns: int = 1) -> str:
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


def _errors(errors: dict[str, int]) -> str:
    return "; ".join(f"{escape(k)} ×{v}" for k, v in errors.items()) or "–"


# ---------------------------------------------------------------------------------------------
# Sections


def _facts(result: RunResult) -> str:

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


def _alerts(result: RunResult) -> str:
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


def _candidates(result: RunResult, plots: dict[str, Path]) -> str:
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
        _table(header, rows, name_columns=2 if relabelled else 1),
    ]
    out.append(_speed_distributions(summary))
    return "\n".join(out)


def _thinking(result: RunResult) -> str:
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
            _table(["candidate", *THINKING_COLUMNS], [[escape(c) for c in row] for row in rows])
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
            row.append(f"${_fmt(cost.get('total'), 4)} over {cost.get('n_answers')}{mark}")
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
        "words × 1.3.</p>" + _table(header, rows)
    )


def _ordered_pvalues(result: RunResult) -> pd.DataFrame:
    pvalues = result.pvalues
    order = [n for n in result.summary_json["candidates"] if n in pvalues.index]
    order += [n for n in pvalues.index if n not in order]
    return pvalues.reindex(index=order, columns=order)


def _differences(result: RunResult) -> str:
    summary = result.summary_json
    test = summary["test"]
    out = ["<h2>Which candidates differ</h2>"]
    if test.get("name") is None or result.pvalues.empty:
        out.append(f"<p>No test was run: {escape(str(test.get('error')))}.</p>")
        return "\n".join(out)
    alpha = test["alpha"]
    out.append(
        f"<p><strong>Test:</strong> {escape(str(test.get('description', test['name'])))}</p>"
    )
    if test.get("statistic") is not None:
        out.append(
            f"<p>Friedman omnibus: χ² = {_fmt(test['statistic'])}, df = {test.get('df')}, "
            f"{_p_is(test.get('p_value'))}, over {test.get('n_complete_blocks')} complete "
            "questions.</p>"
        )
    pvalues = _ordered_pvalues(result)
    names = [str(c) for c in pvalues.columns]
    rows = []
    for row_name, row in pvalues.iterrows():
        cells = [escape(str(row_name))]
        for col_name, value in row.items():
            if row_name == col_name:
                cells.append('<td class="diag">–</td>')
            elif value < alpha:
                cells.append(f'<td class="sig">{_p(float(value))}</td>')
            else:
                cells.append(_p(float(value)))
        rows.append(cells)
    out.append(
        f'<h3>Adjusted p-values</h3><p class="desc">p_adjust = '
        f"{escape(str(test.get('p_adjust')))}, α = {alpha:g}, over "
        f"{test.get('n_questions')} questions ({test.get('n_ranks')} question-level ranks); "
        "highlighted "
        "cells are below α.</p>"
    )
    out.append(_table(["", *(escape(n) for n in names)], rows))
    means = {n: e.get("mean_rank") for n, e in summary["candidates"].items()}
    sig = sorted(  # the verdict's order: best-placed winner first
        (_better_first(p) for p in summary.get("pairs") or [] if p["significant"]),
        key=lambda p: (means[p["a"]], means[p["b"]], p["a"], p["b"]),
    )
    if sig:
        out.append(
            '<h3>Significant pairs</h3><p class="desc">With effect sizes, so a p-value never '
            "stands alone; A is the better of the two (lower mean rank). Mean rank A − B is "
            "negative: A is that many rank places ahead. Win rate: share of the n questions that "
            "ranked both where A ranked above B (question-level rankings), ties counting ½.</p>"
        )
        out.append(
            _table(
                [
                    "A (better)",
                    "B",
                    "adjusted p",
                    "mean rank A − B",
                    "win rate A over B",
                    "n questions",
                ],
                [
                    [
                        escape(str(p["a"])),
                        escape(str(p["b"])),
                        _p(p["p_adjusted"]),
                        _fmt(p["mean_rank_diff"]),
                        _fmt(p["win_rate_a"]),
                        str(p["n_pairs"]),
                    ]
                    for p in sig
                ],
                name_columns=2,
            )
        )
    else:
        out.append(f"<p>No pair differs significantly at α = {alpha:g}.</p>")
    if summary.get("power_hint"):
        out.append(f'<p class="caution">{escape(summary["power_hint"])}</p>')
    out.append(_dunn(summary))
    out.append(_per_judge(summary))
    return "\n".join(out)


def _dunn(summary: dict[str, Any]) -> str:
    dunn = summary.get("dunn")
    if not dunn or dunn["is_verdict"]:
        return ""
    rows = [
        [escape(str(p["a"])), escape(str(p["b"])), _p(p["p_adjusted"]),
         "yes" if p["significant"] else "no"]
        for p in dunn["pairs"]
    ]  # fmt: skip
    return (
        "<h3>Dunn–Holm (the original RAQ method)</h3>"
        f'<p class="desc">{escape(dunn["description"])} {escape(dunn["caveat"])} Shown for '
        "comparison with the article; the verdict uses the calibrated test.</p>"
        + _table(["A", "B", "adjusted p", "below α"], rows, name_columns=2)
    )


def _evidence(result: RunResult) -> str:
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


def _verdict(result: RunResult) -> str:
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
        first, last = c["reference_first_ci95"], c["wrong_last_ci95"]
        above = c["reference_above_wrong_ci95"]
        status = "qualified" if c["qualified"] else "<strong>unqualified</strong>"
        if not judge.get("in_verdict", True):
            status += ", left out of the verdict"
        rows.append([
            escape(str(name)), str(c["n"]),
            f"{c['reference_first_rate']:.0%} ({first[0]:.0%}–{first[1]:.0%})",
            f"{c['reference_above_wrong_rate']:.0%} ({above[0]:.0%}–{above[1]:.0%})",
            f"{c['wrong_last_rate']:.0%} ({last[0]:.0%}–{last[1]:.0%})",
            f"{c['chance']:.0%}", status,
        ])  # fmt: skip
    out.append(
        '<h3>The judges on planted controls</h3><p class="desc">Among the anonymised answers '
        "each LLM judge ranks sit the question's reference answer and a plainly wrong one "
        "(another question's reference), at counterbalanced positions. A judge qualifies when "
        "the 95% Wilson lower bounds of 'reference first' and 'reference above wrong' beat "
        "chance: what a judge ranking by position or at random scores (1 in the answers "
        "shown, and 50%).</p>"
    )
    out.append(
        _table(
            ["judge", "judgments", "reference first (95% CI)", "reference above wrong (95% CI)",
             "wrong last (95% CI)", "chance",
             "status"],
            rows,
        )
    )  # fmt: skip
    return "\n".join(out)


def _better_first(pair: dict[str, Any]) -> dict[str, Any]:
    """Orient a pair (stored a < b by name) so A is the one with the better mean rank."""
    diff = pair.get("mean_rank_diff")
    if diff is None or not diff > 0:
        return pair
    win = pair.get("win_rate_a")
    return pair | {
        "a": pair["b"],
        "b": pair["a"],
        "mean_rank_diff": -diff,
        "win_rate_a": None if win is None or not math.isfinite(win) else 1 - win,
    }


def _per_judge(summary: dict[str, Any]) -> str:
    """A panel's per-judge means, and where a judge alone disagrees with the pooled test."""
    per_judge = summary.get("per_judge") or {}
    if not per_judge:
        return ""
    names = list(summary["candidates"])
    pooled = {frozenset(pair[:2]) for pair in summary.get("significant_pairs") or []}
    n_pairs = len(summary.get("pairs") or [])
    rows = []
    for judge, entry in per_judge.items():
        if "error" in entry:
            rows.append(
                [escape(str(judge)), *("–" for _ in names), f"not tested: {escape(entry['error'])}"]
            )
            continue
        cells = [
            f"{_fmt(entry['mean_rank'].get(n))} (n = {entry['n_ranks'].get(n, 0)})" for n in names
        ]
        own = {frozenset(pair[:2]): pair for pair in entry["significant_pairs"]}
        notes = [f"{len(own)} of {n_pairs} pairs significant"]
        notes += [
            f"only this judge: {escape(str(a))} vs {escape(str(b))} ({_p_is(p)})"
            for key, (a, b, p) in own.items()
            if key not in pooled
        ]
        notes += [
            "not this judge: " + " vs ".join(escape(str(n)) for n in sorted(key))
            for key in pooled
            if key not in own
        ]
        rows.append([escape(str(judge)), *cells, f'<td class="name">{"<br>".join(notes)}</td>'])
    return (
        '<h3>The same test per judge</h3><p class="desc">Each judge\'s ranks alone, mean rank '
        "per candidate (n ranks): a difference only one judge sees is a judge preference, not "
        "a quality gap.</p>"
        + _table(["judge", *(escape(str(n)) for n in names), "significant pairs"], rows)
    )


def _plots(plots: dict[str, Path], skipped: dict[str, str]) -> str:
    if not plots and not skipped:
        return ""
    out = ["<h2>Plots</h2>"]
    order = [*PLOT_CAPTIONS, *(k for k in plots if k not in PLOT_CAPTIONS)]
    for key in order:
        title, caption = PLOT_CAPTIONS.get(key, (key, ""))
        if key in plots:
            data = base64.b64encode(Path(plots[key]).read_bytes()).decode("ascii")
            out.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{escape(title)}">'
                f"<figcaption><strong>{escape(title)}.</strong> {escape(caption)}</figcaption>"
                "</figure>"
            )
        elif key in skipped:
            out.append(
                f'<p class="note"><strong>{escape(title)}</strong> not drawn: '
                f"{escape(skipped[key])}.</p>"
            )
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# Judge diagnostics


def _diagnostics(result: RunResult) -> str:
    out = [
        "<h2>Can the judges be trusted</h2>",
        '<p class="desc">Checks on the judges themselves, computed from the ranks (as in '
        "summary.json); each says what it measures and over how many observations.</p>",
    ]
    diagnostics = result.summary_json.get("diagnostics")
    if not diagnostics:
        out.append("<p>No statistics were computed, so there is nothing to check.</p>")
        return "\n".join(out)
    for title, section in (
        ("Position bias", _position_bias),
        ("Self-consistency", _self_consistency),
        ("Agreement between judges", _agreement),
        ("Length bias", _length_bias),
    ):
        out.append(f"<h3>{title}</h3>")
        out.append(section(diagnostics))
    return "\n".join(out)


def _position_bias(diagnostics: dict[str, Any]) -> str:
    bias = diagnostics["position_bias"]
    positions = sorted({p for d in bias["judges"].values() for p in d["mean_rank_by_position"]})
    rows = []
    for judge, d in bias["judges"].items():
        flagged = '<td class="flag">yes: ranks depend on position</td>' if d["flagged"] else "no"
        rows.append(
            [
                escape(judge),
                str(d["n"]),
                *(
                    f"{_fmt(d['mean_rank_by_position'].get(p))} "
                    f"(n = {d['n_by_position'].get(p, 0)})"
                    for p in positions
                ),
                _fmt(d["statistic"]),
                _p(d["p_value"]),
                flagged,
            ]
        )
    header = [
        "judge", "n ranks", *(f"mean rank at position {p}" for p in positions),
        "Friedman χ² (questions as blocks)", "p", "flagged",
    ]  # fmt: skip
    return (
        f'<p class="desc">{escape(bias["description"])} Positions are counterbalanced, so a '
        "biased judge adds noise rather than favouring a candidate. Over "
        f"{bias['n']} ranks with a presented position.</p>" + _table(header, rows)
    )


def _self_consistency(diagnostics: dict[str, Any]) -> str:
    consistency = diagnostics["self_consistency"]
    rows = [
        [
            escape(judge),
            _fmt(d["mean_w"]) if d["n_questions"] else "– (needs ≥ 2 repeats)",
            str(d["n_questions"]),
        ]
        for judge, d in consistency["judges"].items()
    ]
    return f'<p class="desc">{escape(consistency["description"])}</p>' + _table(
        ["judge", "mean Kendall's W", "n questions"], rows
    )


def _agreement(diagnostics: dict[str, Any]) -> str:
    agreement = diagnostics.get("judge_agreement")
    if agreement is None:
        return "<p>A single judge: nothing to compare (a panel of judges reduces judge bias).</p>"
    out = [
        f'<p class="desc">{escape(agreement["description"])}</p>',
        f"<p>Mean Kendall tau {_fmt(agreement['mean_tau'])} over {agreement['n_tau']} judge "
        f"pairs × (question, repeat); mean Kendall's W {_fmt(agreement['kendall_w'])} over "
        f"{agreement['n_w']} (question, repeat) items every judge ranked fully.</p>",
        _table(
            ["judge A", "judge B", "mean Kendall tau", "n"],
            [
                [escape(p["a"]), escape(p["b"]), _fmt(p["mean_tau"]), str(p["n"])]
                for p in agreement["pairs"]
            ],
            name_columns=2,
        ),
    ]
    panel = (diagnostics.get("panel") or {}).get("table")
    if panel:
        columns = list(next(iter(panel.values())))
        out.append(
            "<p class=\"desc\">Panel aggregate (the article's proposal): each judge's mean rank "
            "of each candidate, with the median and std across judges; a large std means the "
            "judges disagree about that candidate.</p>"
        )
        out.append(
            _table(
                ["candidate", *(escape(c) for c in columns)],
                [
                    [escape(str(name)), *(_fmt(row[c]) for c in columns)]
                    for name, row in panel.items()
                ],
            )
        )
    return "\n".join(out)


def _length_bias(diagnostics: dict[str, Any]) -> str:
    bias = diagnostics.get("length_bias")
    if not bias:
        return "<p>No successful answer has a word count.</p>"
    rows = [["all judges", _fmt(bias["rho"]), _p(bias["p_value"]), str(bias["n"])]]
    rows += [
        [escape(judge), _fmt(d["rho"]), _p(d["p_value"]), str(d["n"])]
        for judge, d in bias["judges"].items()
    ]
    return (
        f'<p class="desc">{escape(bias["description"])} A strong correlation can also mean '
        "the longer answers really are better: read it next to the answers themselves.</p>"
        + _table(["judge", "Spearman rho", "p", "n (answer, rank) pairs"], rows)
    )


# ---------------------------------------------------------------------------------------------
# Failures and config


def _failures(result: RunResult) -> str:
    summary = result.summary_json
    rows = [
        [f"candidate {escape(str(n))}", f"{e['failed_answers']}/{e['answers']} answers",
         _errors(e["errors"]), str(e["cached_answers"])]
        for n, e in summary["candidates"].items()
    ] + [
        [f"judge {escape(str(n))}", f"{e['failed_judgments']}/{e['judgments']} judgments",
         _errors(e["errors"]), str(e["cached_judgments"])]
        for n, e in summary["judges"].items()
    ]  # fmt: skip
    out = [
        "<h2>Failures and requests</h2>",
        '<p class="desc">Failed out of attempted, per candidate and judge, with the kinds of '
        "error; a failed answer is left out of the ranking rather than counted as worst.</p>",
        _table(["who", "failed", "errors", "from store/cache"], rows),
    ]
    requests = summary.get("requests") or {}
    if requests:
        keys = sorted({k for counters in requests.values() for k in counters})
        out.append('<p class="desc">HTTP requests per endpoint, as the client counted them.</p>')
        out.append(
            _table(
                ["endpoint", *(escape(k) for k in keys)],
                [
                    [escape(str(name)), *(_fmt(counters.get(k)) for k in keys)]
                    for name, counters in requests.items()
                ],
            )
        )
    return "\n".join(out)


def _config(result: RunResult) -> str:

    yaml_text = escape(config_to_yaml(result.config))
    return (
        '<h2>Config</h2><p class="desc">The resolved run config; it never holds secrets, only '
        f"the names of environment variables.</p>\n<pre>{yaml_text}</pre>"
    )
