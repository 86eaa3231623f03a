"""summary.json: the verdict's test on the question-level ranks, Dunn beside it, the judges'
diagnostics and per-judge tests, and the limits a run can break."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import raq.stats as st
from raq.config import RunConfig
from raq.core.metrics import cost_usd
from raq.result.gate import evidence_problems, gate
from raq.result.reading import RunRecords
from raq.result.verdict import tradeoff_lines, verdict_lines
from raq.stats import DUNN_CAVEAT, analyse
from raq.stats.tally import RankStream, RankTally, WordsRanks

if TYPE_CHECKING:
    import pandas as pd

    from raq.stats import StatsResult


def verdict_test(
    tally: RankTally, config: RunConfig, verdict_judges: list[str] | None = None
) -> tuple[StatsResult | None, str | None]:
    if verdict_judges is not None and not verdict_judges:
        return None, "no verdict: no judge that ranked answers qualified on its planted controls"
    if len(tally.ranked_names()) < 2:
        return None, "no statistics: fewer than two candidates have ranks"
    try:
        return _test(tally, config), None
    except ValueError as exc:
        return None, f"no statistics: {exc}"


def _test(
    tally: RankTally,
    config: RunConfig,
    test: str | None = None,
    same_ranks: StatsResult | None = None,
) -> StatsResult:
    """The configured test (or ``test``) on these ranks (ValueError when they cannot support
    it); ``same_ranks``, another test's result on this tally, lends its candidate statistics."""

    return analyse(
        tally,
        test=test or config.stats.test,
        p_adjust=config.p_adjust,
        alpha=config.alpha,
        posthoc=config.stats.posthoc,
        n_boot=config.stats.n_boot,
        seed=config.seed,
        candidates=same_ranks.candidates if same_ranks is not None else None,
    )


def dunn_summary(tally: RankTally, config: RunConfig, stats: StatsResult) -> dict[str, Any]:
    """Dunn–Holm, the original RAQ method, on the same question-level ranks as the verdict:
    shown on every run with what it assumes (the verdict's own entry when it is the test)."""

    result = stats if stats.test["name"] == "dunn" else _test(tally, config, "dunn", stats)
    return {
        "description": result.test["description"],
        "caveat": DUNN_CAVEAT,
        "is_verdict": stats.test["name"] == "dunn",
        "pairs": [
            {"a": p.a, "b": p.b, "p_adjusted": p.p_adjusted, "significant": p.significant}
            for p in result.pairs
        ],
        "significant_pairs": [list(p) for p in result.significant_pairs],
    }


def empty_frame() -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame()


def build_summary(
    records: RunRecords, stats: StatsResult | None, stats_error: str | None
) -> dict[str, Any]:
    """summary.json: per-candidate standing and speed, the test used, the significant pairs."""
    config = records.config
    candidates: dict[str, Any] = {}
    order = list(stats.candidates) if stats else []
    order += [c.name for c in config.candidates if c.name not in order]
    for name in order:
        entry: dict[str, Any] = {}
        if stats and name in stats.candidates:
            cs = stats.candidates[name]
            entry |= {
                "mean_rank": cs.mean_rank,
                "median_rank": cs.median_rank,
                "std_rank": cs.std_rank,
                "n_ranks": cs.n_ranks,
                "mean_rank_ci95": [cs.ci_low, cs.ci_high],
            }
        else:
            entry |= {"mean_rank": None, "median_rank": None, "std_rank": None, "n_ranks": 0}
        candidates[name] = entry | records.answers[name]
    judges: dict[str, Any] = {}
    verdict_judges = set(records.ranks.verdict_judges)
    for judge in config.judges:
        score = records.controls.get(judge.name)
        judges[judge.name] = {
            "kind": judge.kind,
            **records.judge_tallies[judge.name],
            "controls": score.to_dict() if score is not None else None,
            "qualified": score.qualified if score is not None else None,
            "in_verdict": judge.name in verdict_judges,
        }
        if judge.price is not None and judge.kind == "llm":
            tokens = judges[judge.name]["tokens"]
            judges[judge.name]["cost_usd"] = {
                "total": cost_usd(
                    tokens["prompt"], tokens["completion"],
                    judge.price.input_per_million, judge.price.output_per_million,
                ),
                "estimated": tokens["estimated"] > 0,
                "includes_thinking_tokens": tokens["thinking"],
            }  # fmt: skip
    summary: dict[str, Any] = {
        "name": config.name,
        "candidates": candidates,
        "test": stats.test if stats else {"name": None, "error": stats_error},
        "significant_pairs": [list(p) for p in stats.significant_pairs] if stats else [],
        "n_questions": records.n_questions,
        "n_questions_ranked": records.ranks.overall.n_questions,
        "repeats": config.repeats,
        "judges": judges,
        "self_judging": config.self_judging,
        "status": records.meta.get("status"),
        "requests": records.meta.get("requests") or {},
        "disabled_endpoints": records.meta.get("disabled_endpoints") or {},
    }
    if stats is not None:
        summary["pairs"] = [asdict(p) for p in stats.pairs]
        summary["power_hint"] = stats.power_hint
        summary["power"] = stats.power
        summary["per_judge"] = per_judge_stats(records.ranks, config)
        summary["dunn"] = dunn_summary(records.ranks.overall, config, stats)
    summary["judge_notes"] = [
        score.line()
        for score in records.controls.values()
        if score is not None and not score.qualified
    ]
    summary["verdict"] = verdict_lines(summary)
    summary["tradeoffs"] = tradeoff_lines(summary)
    if records.ranks.has_ranks:
        # The judges can be checked even where the test could not run (one candidate ranked,
        # too few complete blocks for Friedman).
        answered = any(a["answers"] > a["failed_answers"] for a in records.answers.values())
        summary["diagnostics"] = diagnostics(
            records.ranks, records.words_ranks if answered else None, config.alpha
        )
    return summary


def diagnostics(ranks: RankStream, words_ranks: WordsRanks | None, alpha: float) -> dict[str, Any]:
    """Can the judges be trusted: position bias, self-consistency, agreement, length bias."""

    panel = st.panel_aggregate(ranks)
    win = st.win_rates(ranks.overall) if ranks.overall.n_ranks else None
    return {
        "position_bias": st.position_bias(ranks, alpha=alpha),
        "self_consistency": st.self_consistency(ranks),
        "judge_agreement": st.judge_agreement(ranks),
        "length_bias": st.length_bias_counts(words_ranks) if words_ranks is not None else None,
        "win_rates": None
        if win is None
        else {
            "description": "share of shared questions where the row candidate's question-level "
            "rank was better than the column one's; ties count 1/2",
            "matrix": {str(a): {str(b): win.at[a, b] for b in win.columns} for a in win.index},
        },
        "panel": None
        if panel is None
        else {
            "description": "per-judge mean rank of each candidate, with the median and std "
            "across the judges (the article's panel aggregate)",
            "table": {str(c): {str(k): v for k, v in row.items()} for c, row in panel.iterrows()},
        },
    }


def per_judge_stats(ranks: RankStream, config: RunConfig) -> dict[str, Any]:
    """For a panel: the same test on each judge's ranks alone (empty for a single judge)."""
    out: dict[str, Any] = {}
    for judge, tally in ranks.by_judge.items():
        try:
            result = _test(tally, config)
        except ValueError as exc:
            out[judge] = {"error": str(exc)}
            continue
        out[judge] = {
            "mean_rank": {n: c.mean_rank for n, c in result.candidates.items()},
            "n_ranks": {n: c.n_ranks for n, c in result.candidates.items()},
            "significant_pairs": [list(p) for p in result.significant_pairs],
            "test": result.test.get("description"),
        }
    return out


def summary_frame(summary: dict[str, Any]) -> pd.DataFrame:
    import pandas as pd

    rows = []
    for name, entry in summary["candidates"].items():
        ci = entry.get("mean_rank_ci95") or [None, None]
        rows.append(
            {
                "candidate": name,
                "mean_rank": entry["mean_rank"],
                "ci95_low": ci[0],
                "ci95_high": ci[1],
                "median_rank": entry["median_rank"],
                "std_rank": entry["std_rank"],
                "n_ranks": entry["n_ranks"],
                "words_per_second": entry["words_per_second"],
                "answer_words": entry["answer_words"],
                "ttft_s": entry["ttft_s"],
                "answer_ttft_s": entry.get("answer_ttft_s"),
                "latency_s": entry["latency_s"],
                "failed_answers": entry["failed_answers"],
            }
        )
    return pd.DataFrame(rows).set_index("candidate")


def check_limits(config: RunConfig, summary: dict[str, Any]) -> list[str]:
    """Configured limits the run broke, each a sentence (the CLI exits 1 on any)."""
    problems: list[str] = []
    if config.gate is not None:
        g = config.gate
        names = [g.baseline, *(g.candidates or [])] if g.candidates else list(summary["candidates"])
        refused = evidence_problems(
            summary, names, min_questions=g.min_questions, max_failed=g.max_failed
        )
        if refused:
            problems += [f"gate: refused: {problem}" for problem in refused]
        else:
            verdicts = gate(
                summary, g.baseline, g.candidates, g.require, g.alpha, margin=g.margin,
                margin_unit=g.margin_unit, min_questions=g.min_questions, max_failed=g.max_failed,
            )  # fmt: skip
            problems += [f"gate: {v.line()}" for v in verdicts if not v.passed]
    if config.max_failure_rate is not None:
        for role, unit in (("candidate", "answers"), ("judge", "judgments")):
            for name, entry in summary[f"{role}s"].items():
                total, failed = entry[unit], entry[f"failed_{unit}"]
                if total and failed / total > config.max_failure_rate:
                    problems.append(
                        f"{role} '{name}': {failed} of {total} {unit} failed, above "
                        f"max_failure_rate={config.max_failure_rate:g}"
                    )
    return problems
