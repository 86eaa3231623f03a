"""The run's outputs, rendered from its store: files of the output contract and ``RunResult``.

pandas and the statistics enter here, at the boundary, never in the pipeline.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raq.answer_stats import error_kind, summarise_answers
from raq.atomic import temporary_beside, write_text_atomically
from raq.columns import ColumnTable, Kind
from raq.config import RunConfig
from raq.controls import ControlScore, ControlTally
from raq.escape import csv_cell
from raq.evidence import PairEvidence, pair_evidence
from raq.metrics import cost_usd
from raq.records import Answer, Judgment
from raq.stats.tally import RankStream, RankTally, WordsRanks, words_rank_counts
from raq.store import RunStore
from raq.verdict import tradeoff_lines, verdict_lines

if TYPE_CHECKING:
    import pandas as pd

    from raq.report.plot_helper import PlotHelper
    from raq.stats import StatsResult

RANK_KINDS: dict[str, Kind] = {
    "question_id": "text", "repeat": "int", "judge": "text", "candidate": "text",
    "rank": "float", "position": "int",
}  # fmt: skip
RANK_COLUMNS = list(RANK_KINDS)
# The per-answer numbers of RunResult.answer_metrics (no texts).
ANSWER_METRIC_KINDS = RunStore.ANSWER_METRIC_KINDS
# The keys of answers.jsonl, in order; each is a field of raq.records.Answer.
ANSWER_FIELDS = [
    "question_id", "candidate", "answer", "latency_s", "ttft_s", "words", "words_per_second",
    "completion_tokens", "prompt_tokens", "tokens_estimated", "cached", "error",
    "answer_ttft_s", "thinking_words", "thinking_tokens", "thinking_tokens_estimated", "thinking",
    "truncated",
]  # fmt: skip


@dataclass
class RunResult:
    """What a run produced; in a notebook it displays as the summary table.

    ``ranks`` (one row per rank) and ``answer_metrics`` (one row per answer, every
    measurement but the text) are read from the run's store when first used, and ``answers``
    (the texts too) from answers.jsonl: a run's statistics never need them whole.
    """

    run_dir: Path
    config: RunConfig
    summary: pd.DataFrame
    pvalues: pd.DataFrame
    stats: StatsResult | None
    summary_json: dict[str, Any]
    problems: list[str] = field(default_factory=list)
    plots: dict[str, Path] = field(default_factory=dict)
    # Per candidate, matplotlib box-plot statistics of latency_s and ttft_s (latency.png).
    speed_boxes: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    # Per significant pair, the questions where the two differ most (report.html shows them).
    evidence: list[PairEvidence] = field(default_factory=list)

    @cached_property
    def ranks(self) -> pd.DataFrame:
        """Every rank of the run: question_id, repeat, judge, candidate, rank, position."""
        with _open_store(self.run_dir) as store:
            return ranks_table(store)

    @cached_property
    def answer_metrics(self) -> pd.DataFrame:
        """Every answer of the run with its measurements (``RunStore.ANSWER_METRIC_FIELDS``)."""
        with _open_store(self.run_dir) as store:
            candidates = [c.name for c in self.config.candidates]
            return answer_metrics_frame(store.answer_metrics(candidates))

    @cached_property
    def answers(self) -> pd.DataFrame:
        """Every answer of the run with its text, as in answers.jsonl."""
        import pandas as pd

        with (self.run_dir / "answers.jsonl").open(encoding="utf-8") as lines:
            return pd.DataFrame([json.loads(line) for line in lines], columns=ANSWER_FIELDS)

    def _repr_html_(self) -> str:
        from raq.report.notebook import run_result_html

        return run_result_html(self)

    def __repr__(self) -> str:
        from raq.report.notebook import run_result_text

        return run_result_text(self)


@contextlib.contextmanager
def _open_store(run_dir: Path) -> Any:
    from raq.errors import StoreError

    store = RunStore.open_existing(run_dir)
    try:
        if store.get_meta("config") is None:
            raise StoreError(f"{store.path}: holds no config: no raq run was started in it")
        yield store
    finally:
        store.close()


@dataclass(frozen=True)
class RunRecords:
    """What the outputs need of the current config's records, read back from the store as
    tallies: counts, sums and per-candidate summaries, never a table of ranks or answers (the
    texts stream straight to the output files)."""

    config: RunConfig
    n_questions: int
    ranks: RankStream  # closed; every rank of the current judges and repeats went in
    answers: dict[str, dict[str, Any]]  # per candidate: its summary.json entry's answer part
    speed_boxes: dict[str, dict[str, dict[str, Any]]]  # per candidate: box-plot statistics
    words_ranks: WordsRanks  # per judge and candidate: (words, question's rank) → count
    judge_tallies: dict[str, dict[str, Any]]  # per judge: counts, modes, errors
    meta: dict[str, Any]
    controls: dict[str, ControlScore | None]  # per judge: its planted-control record


def read_records(
    store: RunStore,
    judgments_jsonl: Path | None = None,
    answers_jsonl: Path | None = None,
    ranks_csv: Path | None = None,
) -> RunRecords:
    """Read the current config's records. Judgments stream through once (to
    ``judgments_jsonl`` and ``ranks_csv`` when given) into the rank tallies and per-judge
    tallies; answers stream to ``answers_jsonl``, then one candidate at a time into its
    summary. Memory does not grow with the number of questions beyond two numbers per
    question and candidate (the question bootstrap's)."""
    with store.snapshot():
        return _read_records(store, judgments_jsonl, answers_jsonl, ranks_csv)


def _current_judgments(config: RunConfig) -> Callable[[str, int], bool]:
    """Whether a stored (judge, repeat) belongs to this config (a judge since removed, or a
    repeat beyond the configured ones, does not)."""
    from raq.run import repeats_for

    repeats = {j.name: repeats_for(j, config.repeats) for j in config.judges}
    return lambda judge, repeat: judge in repeats and repeat < repeats[judge]


def _read_records(
    store: RunStore,
    judgments_jsonl: Path | None,
    answers_jsonl: Path | None,
    ranks_csv: Path | None,
) -> RunRecords:
    config = RunConfig.model_validate(store.get_meta("config"))
    candidates = [c.name for c in config.candidates]
    current = _current_judgments(config)
    addressing: dict[str, int] = dict.fromkeys(candidates, 0)  # answers speaking to the judge
    if answers_jsonl is not None:
        _write_jsonl(
            answers_jsonl, (_flagged_row(a, addressing) for a in store.answers(candidates))
        )
    else:
        for answer in store.answers(candidates):
            _flagged_row(answer, addressing)
    names_by_judge: dict[str, set[str]] = {}
    for judge, repeat, name in store.ranked_candidates():
        if current(judge, repeat):
            names_by_judge.setdefault(judge, set()).add(name)
    # One pass over the judgments, with every judge in the verdict: the planted controls are
    # scored in the same pass, and only when a judge fails them are the ranks read again.
    stream = RankStream(names_by_judge)
    tallies = {judge.name: _new_tally() for judge in config.judges}
    control_tallies = {j.name: ControlTally(j.name) for j in config.judges}
    plants_controls = any(j.plants_controls for j in config.judges)
    names = _Interned()
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(_JsonlWriter(judgments_jsonl)) if judgments_jsonl else None
        rank_rows = stack.enter_context(_RanksCsv(ranks_csv)) if ranks_csv else None
        for judgment in store.judgments():
            if not current(judgment.judge, judgment.repeat):
                continue
            _tally(tallies[judgment.judge], judgment)
            if plants_controls:
                control_tallies[judgment.judge].add(judgment)
            if judgment.ok:
                rows = _rank_rows(judgment, names)
                stream.add(
                    judgment.question_id, judgment.repeat, judgment.judge, judgment.ranks,
                    {row[3]: row[5] for row in rows}, judgment.position_ranks(),
                )  # fmt: skip
                if rank_rows is not None:
                    rank_rows.write(rows)
            if out is not None:
                out.write(_judgment_row(judgment))
    stream.close()
    controls = {name: tally.score() for name, tally in control_tallies.items()}
    verdict_judges = [
        judge.name
        for judge in config.judges
        if not config.stats.exclude_unqualified_judges
        or controls.get(judge.name) is None
        or controls[judge.name].qualified
    ]
    if not set(stream.judges) <= set(verdict_judges):
        stream = _rank_stream(store, names_by_judge, verdict_judges, current)
    answers, boxes = {}, {}
    for candidate in config.candidates:
        price = candidate.price
        prices = (price.input_per_million, price.output_per_million) if price else None
        answers[candidate.name], boxes[candidate.name] = summarise_answers(
            store.answer_metrics([candidate.name]), prices
        )
        answers[candidate.name]["answers_addressing_judge"] = addressing[candidate.name]
    words_ranks = words_rank_counts(
        (judge, candidate, question, words, rank)
        for judge, candidate, question, repeat, words, rank in store.words_and_ranks(candidates)
        if current(judge, repeat)
    )
    meta = {
        key: store.get_meta(key)
        for key in ("name", "created_at", "updated_at", "status", "requests", "disabled_endpoints")
    }
    return RunRecords(
        config, store.question_count(), stream, answers, boxes, words_ranks, tallies, meta,
        controls,
    )  # fmt: skip


def _rank_stream(
    store: RunStore,
    names_by_judge: dict[str, set[str]],
    verdict_judges: list[str],
    current: Callable[[str, int], bool],
) -> RankStream:
    """The ranks again, with the judges that failed their planted controls left out of the
    verdict (a second pass over the judgments, only for a run where one failed)."""
    stream = RankStream(names_by_judge, verdict_judges)
    for judgment in store.judgments():
        if judgment.ok and current(judgment.judge, judgment.repeat):
            positions = {name: i + 1 for i, name in enumerate(judgment.presented_order)}
            stream.add(
                judgment.question_id, judgment.repeat, judgment.judge, judgment.ranks,
                {name: positions.get(name) for name in judgment.ranks},
                judgment.position_ranks(),
            )  # fmt: skip
    return stream.close()


def ranks_table(store: RunStore) -> pd.DataFrame:
    """The current config's ranks as a table (``RunResult.ranks``), one row per rank."""
    current = _current_judgments(RunConfig.model_validate(store.get_meta("config")))
    names = _Interned()
    table = ColumnTable(RANK_KINDS)
    for judgment in store.judgments():
        if judgment.ok and current(judgment.judge, judgment.repeat):
            table.extend(_rank_rows(judgment, names))
    return table.frame()


class _Interned(dict[str, str]):
    """One string object per distinct name: tables of many rows then hold pointers to a few
    names instead of a copy per row."""

    def __missing__(self, key: str) -> str:
        self[key] = key
        return key


def _rank_rows(judgment: Judgment, names: _Interned) -> list[tuple]:
    """A successful judgment's rows of RANK_COLUMNS; the position is 1-based in the presented
    order."""
    j = judgment
    position = {name: i + 1 for i, name in enumerate(j.presented_order)}
    return [
        (j.question_id, j.repeat, names[j.judge], names[name], float(rank), position.get(name))
        for name, rank in j.ranks.items()
    ]


def _new_tally() -> dict[str, Any]:
    return {
        "judgments": 0, "failed_judgments": 0, "cached_judgments": 0, "modes": {}, "errors": {},
        "tokens": {"prompt": 0, "completion": 0, "thinking": 0, "estimated": 0},
        "thinking_words": 0,
    }  # fmt: skip


def _tally(tally: dict[str, Any], judgment: Judgment) -> None:
    tally["judgments"] += 1
    tally["cached_judgments"] += judgment.cached
    tokens = tally["tokens"]  # every ask was paid for, a failed judgment's too
    tokens["prompt"] += judgment.prompt_tokens or 0
    tokens["completion"] += judgment.completion_tokens or 0
    tokens["thinking"] += judgment.thinking_tokens or 0
    tokens["estimated"] += judgment.tokens_estimated
    tally["thinking_words"] += judgment.thinking_words or 0
    if not judgment.ok:
        tally["failed_judgments"] += 1
    elif judgment.mode:
        tally["modes"][judgment.mode] = tally["modes"].get(judgment.mode, 0) + 1
    if judgment.error:
        kind = error_kind(judgment.error)
        tally["errors"][kind] = tally["errors"].get(kind, 0) + 1


def answer_metrics_frame(rows: Iterable[tuple]) -> pd.DataFrame:
    """The per-answer numbers (``RunStore.ANSWER_METRIC_FIELDS``) as a table, built a
    column at a time (an answer costs ~100 bytes here, however many the run has)."""
    names = _Interned()
    table = ColumnTable(ANSWER_METRIC_KINDS)
    for row in rows:
        table.append((row[0], names[row[1]], *row[2:]))
    return table.frame()


def finalize(run_dir: Path, store: RunStore, plot_helper: PlotHelper | None = None) -> RunResult:
    """Render every output file of the run directory from the store and build the result
    (with ``plot_helper``, a second process draws some of the plots)."""
    records = read_records(
        store,
        judgments_jsonl=run_dir / "judgments.jsonl",
        answers_jsonl=run_dir / "answers.jsonl",
        ranks_csv=run_dir / "ranks.csv",
    )
    config = records.config
    ranks = records.ranks
    stats, stats_error = _analyse(
        ranks.overall, config, ranks.verdict_judges if ranks.has_ranks else None
    )
    pvalues = stats.pvalues if stats is not None else _empty_frame()
    with _Replacing(run_dir / "pvalues.csv") as out:
        pvalues.rename(index=csv_cell, columns=csv_cell).to_csv(out.file)
    summary_json = build_summary(records, stats, stats_error)
    write_text_atomically(
        run_dir / "summary.json", json.dumps(_json_safe(summary_json), indent=2, ensure_ascii=False)
    )
    summary = summary_frame(summary_json)
    problems = check_limits(config, summary_json)
    result = RunResult(
        run_dir, config, summary, pvalues, stats, summary_json, problems,
        speed_boxes=records.speed_boxes,
    )  # fmt: skip
    with store.snapshot():
        result.evidence = pair_evidence(store, summary_json)
    write_reports(result, plot_helper)
    return result


def write_reports(result: RunResult, plot_helper: PlotHelper | None = None) -> None:
    """report.md, the PNG plots beside it, and report.html with the plots embedded."""
    from raq.report.html import render_html
    from raq.report.markdown import render_markdown
    from raq.report.plots import write_plots

    run_dir = result.run_dir
    skipped: dict[str, str] = {}
    plots = write_plots(result, run_dir / "plots", skipped=skipped, helper=plot_helper)
    result.plots = plots
    write_text_atomically(run_dir / "report.md", render_markdown(result))
    write_text_atomically(run_dir / "report.html", render_html(result, plots, skipped=skipped))


def load_result(run_dir: Path) -> RunResult:
    """Re-render a stored run (``raq report``)."""
    with _open_store(run_dir) as store:
        return finalize(run_dir, store)


def _analyse(
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


def _test(tally: RankTally, config: RunConfig, test: str | None = None) -> StatsResult:
    """The configured test (or ``test``) on these ranks (ValueError when they cannot support
    it)."""
    from raq.stats import analyse

    return analyse(
        tally,
        test=test or config.stats.test,
        p_adjust=config.p_adjust,
        alpha=config.alpha,
        posthoc=config.stats.posthoc,
        n_boot=config.stats.n_boot,
        seed=config.seed,
    )


def dunn_summary(tally: RankTally, config: RunConfig, stats: StatsResult) -> dict[str, Any]:
    """Dunn–Holm, the original RAQ method, on the same question-level ranks as the verdict:
    shown on every run with what it assumes (the verdict's own entry when it is the test)."""
    from raq.stats import DUNN_CAVEAT

    result = stats if stats.test["name"] == "dunn" else _test(tally, config, "dunn")
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


def _empty_frame() -> pd.DataFrame:
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
    from raq import stats as st

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
        from raq.gate import evidence_problems, gate

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
        for name, entry in summary["candidates"].items():
            if (
                entry["answers"]
                and entry["failed_answers"] / entry["answers"] > config.max_failure_rate
            ):
                problems.append(
                    f"candidate '{name}': {entry['failed_answers']} of {entry['answers']} answers "
                    f"failed, above max_failure_rate={config.max_failure_rate:g}"
                )
        for name, entry in summary["judges"].items():
            if (
                entry["judgments"]
                and entry["failed_judgments"] / entry["judgments"] > config.max_failure_rate
            ):
                problems.append(
                    f"judge '{name}': {entry['failed_judgments']} of {entry['judgments']} "
                    "judgments "
                    f"failed, above max_failure_rate={config.max_failure_rate:g}"
                )
    return problems


def _answer_row(answer: Answer) -> dict[str, Any]:
    return {name: getattr(answer, name) for name in ANSWER_FIELDS}


def _flagged_row(answer: Answer, addressing: dict[str, int]) -> dict[str, Any]:
    """An answers.jsonl row with ``addresses_judge`` (prompt injection), counted per candidate."""
    from raq.injection import addresses_judge

    flagged = answer.ok and addresses_judge(answer.answer)
    addressing[answer.candidate] = addressing.get(answer.candidate, 0) + flagged
    return _answer_row(answer) | {"addresses_judge": flagged}


def _judgment_row(judgment: Judgment) -> dict[str, Any]:
    ranking = sorted(
        judgment.ranks, key=lambda n: (judgment.ranks[n], judgment.presented_order.index(n))
    )
    return {
        "question_id": judgment.question_id,
        "repeat": judgment.repeat,
        "judge": judgment.judge,
        "presented_order": list(judgment.presented_order),
        "raw_output": judgment.raw_output,
        "ranking": ranking if judgment.ok else None,
        "ranks": judgment.ranks if judgment.ok else None,
        "mode": judgment.mode,
        "attempts": judgment.attempts,
        "cached": judgment.cached,
        "error": judgment.error,
        "controls": judgment.controls or None,
        "rationale": judgment.rationale,
        "prompt_tokens": judgment.prompt_tokens,
        "completion_tokens": judgment.completion_tokens,
        "thinking_words": judgment.thinking_words,
        "thinking_tokens": judgment.thinking_tokens,
        "tokens_estimated": judgment.tokens_estimated,
    }


class _Replacing:
    """A file written beside ``path`` that replaces it only when complete (a failed render
    leaves the last good file in place)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = temporary_beside(path)  # a run and a raq report never share it

    def __enter__(self) -> _Replacing:
        self.file = self.tmp.open("w", encoding="utf-8", newline="")
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.file.close()
        if exc_type is None:
            self.tmp.replace(self.path)
        else:
            self.tmp.unlink(missing_ok=True)


class _JsonlWriter(_Replacing):
    def write(self, row: dict[str, Any]) -> None:
        """One row, keyed by text (every row raq writes): most rows hold no NaN, infinity or
        numpy number, and ``json.dumps`` writes those as ``_json_safe`` would have made them;
        the others raise and go through it (a second of a large run's finalize, otherwise)."""
        try:
            line = json.dumps(row, ensure_ascii=False, allow_nan=False)
        except (ValueError, TypeError):
            line = json.dumps(_json_safe(row), ensure_ascii=False)
        self.file.write(line + "\n")


class _RanksCsv(_Replacing):
    """ranks.csv, RANK_COLUMNS, a judgment's rows at a time."""

    def __enter__(self) -> _RanksCsv:
        super().__enter__()
        self._writer = csv.writer(self.file, lineterminator="\n")
        self._writer.writerow(RANK_COLUMNS)
        return self

    def write(self, rows: list[tuple]) -> None:
        self._writer.writerows([tuple(map(csv_cell, row)) for row in rows])


def _write_jsonl(path: Path, rows: Any) -> None:
    with _JsonlWriter(path) as out:
        for row in rows:
            out.write(row)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return _json_safe(value.item())
    return value
