"""Can the judges be trusted: position bias, self-consistency, agreement between judges (and the
panel aggregate) and length bias, each with what it measures and over how many observations."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING, Any

from raq.report.html.blocks import number, p_value, table

if TYPE_CHECKING:
    from raq.result import RunResult


def diagnostics_section(result: RunResult) -> str:
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
                    f"{number(d['mean_rank_by_position'].get(p))} "
                    f"(n = {d['n_by_position'].get(p, 0)})"
                    for p in positions
                ),
                number(d["statistic"]),
                p_value(d["p_value"]),
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
        f"{bias['n']} ranks with a presented position.</p>" + table(header, rows)
    )


def _self_consistency(diagnostics: dict[str, Any]) -> str:
    consistency = diagnostics["self_consistency"]
    rows = [
        [
            escape(judge),
            number(d["mean_w"]) if d["n_questions"] else "– (needs ≥ 2 repeats)",
            str(d["n_questions"]),
        ]
        for judge, d in consistency["judges"].items()
    ]
    return f'<p class="desc">{escape(consistency["description"])}</p>' + table(
        ["judge", "mean Kendall's W", "n questions"], rows
    )


def _agreement(diagnostics: dict[str, Any]) -> str:
    agreement = diagnostics.get("judge_agreement")
    if agreement is None:
        return "<p>A single judge: nothing to compare (a panel of judges reduces judge bias).</p>"
    out = [
        f'<p class="desc">{escape(agreement["description"])}</p>',
        f"<p>Mean Kendall tau {number(agreement['mean_tau'])} over {agreement['n_tau']} judge "
        f"pairs × (question, repeat); mean Kendall's W {number(agreement['kendall_w'])} over "
        f"{agreement['n_w']} (question, repeat) items every judge ranked fully.</p>",
        table(
            ["judge A", "judge B", "mean Kendall tau", "n"],
            [
                [escape(p["a"]), escape(p["b"]), number(p["mean_tau"]), str(p["n"])]
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
            table(
                ["candidate", *(escape(c) for c in columns)],
                [
                    [escape(str(name)), *(number(row[c]) for c in columns)]
                    for name, row in panel.items()
                ],
            )
        )
    return "\n".join(out)


def _length_bias(diagnostics: dict[str, Any]) -> str:
    bias = diagnostics.get("length_bias")
    if not bias:
        return "<p>No successful answer has a word count.</p>"
    rows = [["all judges", number(bias["rho"]), p_value(bias["p_value"]), str(bias["n"])]]
    rows += [
        [escape(judge), number(d["rho"]), p_value(d["p_value"]), str(d["n"])]
        for judge, d in bias["judges"].items()
    ]
    return (
        f'<p class="desc">{escape(bias["description"])} A strong correlation can also mean '
        "the longer answers really are better: read it next to the answers themselves.</p>"
        + table(["judge", "Spearman rho", "p", "n (answer, rank) pairs"], rows)
    )
