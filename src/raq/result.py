"""The run's outputs, rendered from its store: files of the output contract and ``RunResult``.

pandas and the statistics enter here, at the boundary, never in the pipeline.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raq.columns import ColumnTable, Kind
from raq.config import RunConfig
from raq.records import Answer, Judgment
from raq.store import RunStore

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from raq.stats import StatsResult

RANK_KINDS: dict[str, Kind] = {
    "question_id": "text", "repeat": "int", "judge": "text", "candidate": "text",
    "rank": "float", "position": "int",
}  # fmt: skip
RANK_COLUMNS = list(RANK_KINDS)
# The per-answer numbers read back for the statistics, plots and summary (no texts).
ANSWER_METRIC_KINDS = RunStore.ANSWER_METRIC_KINDS
# The keys of answers.jsonl, in order; each is a field of raq.records.Answer.
ANSWER_FIELDS = [
    "question_id", "candidate", "answer", "latency_s", "ttft_s", "words", "words_per_second",
    "completion_tokens", "prompt_tokens", "tokens_estimated", "cached", "error",
]  # fmt: skip


@dataclass
class RunResult:
    """What a run produced; in a notebook it displays as the summary table.

    ``answer_metrics`` has one row per answer with every measurement but the text;
    ``answers`` (the texts too) is read from answers.jsonl when first used.
    """

    run_dir: Path
    config: RunConfig
    summary: pd.DataFrame
    pvalues: pd.DataFrame
    ranks: pd.DataFrame
    answer_metrics: pd.DataFrame
    stats: StatsResult | None
    summary_json: dict[str, Any]
    problems: list[str] = field(default_factory=list)
    plots: dict[str, Path] = field(default_factory=dict)

    @cached_property
    def answers(self) -> pd.DataFrame:
        """Every answer of the run with its text, as in answers.jsonl."""
        import pandas as pd

        with (self.run_dir / "answers.jsonl").open(encoding="utf-8") as lines:
            return pd.DataFrame([json.loads(line) for line in lines], columns=ANSWER_FIELDS)

    def _repr_html_(self) -> str:
        return self.summary.to_html(float_format=lambda v: f"{v:.3g}")

    def __repr__(self) -> str:
        table = self.summary.to_string(float_format=lambda v: f"{v:.3g}")
        return f"RunResult({self.run_dir})\n{table}"


@dataclass(frozen=True)
class RunRecords:
    """What the outputs need of the current config's records, read back from the store:
    numbers and tallies, never the texts (those stream straight to the output files)."""

    config: RunConfig
    n_questions: int
    answer_metrics: pd.DataFrame  # one row per answer, the store's ANSWER_METRIC_FIELDS
    ranks: pd.DataFrame
    judge_tallies: dict[str, dict[str, Any]]  # per judge: counts, modes, errors
    meta: dict[str, Any]


def read_records(
    store: RunStore,
    judgments_jsonl: Path | None = None,
    answers_jsonl: Path | None = None,
) -> RunRecords:
    """Read the current config's records. Judgments stream through once (to
    ``judgments_jsonl`` when given) into the ranks table and per-judge tallies; answers
    stream to ``answers_jsonl`` and are kept only as their numbers."""
    from raq.run import repeats_for

    config = RunConfig.model_validate(store.get_meta("config"))
    candidates = [c.name for c in config.candidates]
    repeats = {j.name: repeats_for(j, config.repeats) for j in config.judges}
    if answers_jsonl is not None:
        _write_jsonl(answers_jsonl, (_answer_row(a) for a in store.answers(candidates)))
    judgments = (j for j in store.judgments() if j.judge in repeats and j.repeat < repeats[j.judge])
    tallies = {name: _new_tally() for name in repeats}
    names = _Interned()
    ranks = ColumnTable(RANK_KINDS)
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(_JsonlWriter(judgments_jsonl)) if judgments_jsonl else None
        for judgment in judgments:
            _tally(tallies[judgment.judge], judgment)
            ranks.extend(_rank_rows(judgment, names))
            if out is not None:
                out.write(_judgment_row(judgment))
    meta = {
        key: store.get_meta(key)
        for key in ("name", "created_at", "updated_at", "status", "requests", "disabled_endpoints")
    }
    return RunRecords(
        config,
        store.question_count(),
        answer_metrics_frame(store.answer_metrics(candidates), names),
        ranks.frame(),
        tallies,
        meta,
    )


class _Interned(dict[str, str]):
    """One string object per distinct name: tables of many rows then hold pointers to a few
    names instead of a copy per row."""

    def __missing__(self, key: str) -> str:
        self[key] = key
        return key


def _rank_rows(judgment: Judgment, names: _Interned) -> list[tuple]:
    if not judgment.ok:
        return []
    j = judgment
    judge = names[j.judge]
    return [
        (j.question_id, j.repeat, judge, names[name], rank, j.presented_order.index(name) + 1)
        for name, rank in j.ranks.items()
    ]


def _new_tally() -> dict[str, Any]:
    return {"judgments": 0, "failed_judgments": 0, "cached_judgments": 0, "modes": {}, "errors": {}}


def _tally(tally: dict[str, Any], judgment: Judgment) -> None:
    tally["judgments"] += 1
    tally["cached_judgments"] += judgment.cached
    if not judgment.ok:
        tally["failed_judgments"] += 1
    elif judgment.mode:
        tally["modes"][judgment.mode] = tally["modes"].get(judgment.mode, 0) + 1
    if judgment.error:
        kind = error_kind(judgment.error)
        tally["errors"][kind] = tally["errors"].get(kind, 0) + 1


def answer_metrics_frame(rows: Iterable[tuple], names: _Interned) -> pd.DataFrame:
    """The per-answer numbers (``RunStore.ANSWER_METRIC_FIELDS``) as a table, built a
    column at a time (an answer costs ~100 bytes here, however many the run has)."""
    table = ColumnTable(ANSWER_METRIC_KINDS)
    for row in rows:
        table.append((row[0], names[row[1]], *row[2:]))
    return table.frame()


def finalize(run_dir: Path, store: RunStore) -> RunResult:
    """Render every output file of the run directory from the store and build the result."""
    records = read_records(
        store,
        judgments_jsonl=run_dir / "judgments.jsonl",
        answers_jsonl=run_dir / "answers.jsonl",
    )
    config = records.config
    ranks = records.ranks
    ranks.to_csv(run_dir / "ranks.csv", index=False)
    _release_arrow_memory()

    stats, stats_error = _analyse(ranks, config)
    pvalues = stats.pvalues if stats is not None else _empty_frame()
    pvalues.to_csv(run_dir / "pvalues.csv")
    _release_arrow_memory()
    summary_json = build_summary(records, ranks, stats, stats_error)
    _release_arrow_memory()
    (run_dir / "summary.json").write_text(
        json.dumps(_json_safe(summary_json), indent=2, ensure_ascii=False), encoding="utf-8"
    )
    summary = summary_frame(summary_json)
    problems = check_limits(config, summary_json)
    result = RunResult(
        run_dir, config, summary, pvalues, ranks, records.answer_metrics, stats, summary_json,
        problems,
    )  # fmt: skip
    write_reports(result)
    return result


def _release_arrow_memory() -> None:
    """Hand memory that pandas' Arrow-backed strings freed back to the OS between stages.

    pandas 3 keeps text columns in Arrow, whose default pool (mimalloc) holds on to freed
    pages: over a large run's statistics that retention, not data raq keeps, was most of
    finalize's peak. A no-op where pyarrow is not loaded.
    """
    import sys

    pyarrow = sys.modules.get("pyarrow")
    if pyarrow is not None:
        pyarrow.default_memory_pool().release_unused()


def write_reports(result: RunResult) -> None:
    """report.md, the PNG plots beside it, and report.html with the plots embedded."""
    from raq.report.html import render_html
    from raq.report.markdown import render_markdown
    from raq.report.plots import write_plots

    run_dir = result.run_dir
    skipped: dict[str, str] = {}
    plots = write_plots(result, run_dir / "plots", skipped=skipped)
    result.plots = plots
    (run_dir / "report.md").write_text(render_markdown(result), encoding="utf-8")
    (run_dir / "report.html").write_text(
        render_html(result, plots, skipped=skipped), encoding="utf-8"
    )


def load_result(run_dir: Path) -> RunResult:
    """Re-render a stored run (``raq report``)."""
    store = RunStore.open_existing(run_dir)
    try:
        return finalize(run_dir, store)
    finally:
        store.close()


def _analyse(ranks: pd.DataFrame, config: RunConfig) -> tuple[StatsResult | None, str | None]:
    if ranks.empty or ranks["candidate"].nunique() < 2:
        return None, "no statistics: fewer than two candidates have ranks"
    try:
        return _test(ranks, config), None
    except ValueError as exc:
        return None, f"no statistics: {exc}"


def _test(ranks: pd.DataFrame, config: RunConfig) -> StatsResult:
    """The configured test on these ranks (ValueError when they cannot support it)."""
    from raq.stats import analyse

    return analyse(
        ranks,
        test=config.stats.test,
        p_adjust=config.p_adjust,
        alpha=config.alpha,
        posthoc=config.stats.posthoc,
        n_boot=config.stats.n_boot,
        seed=config.seed,
    )


def _empty_frame() -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame()


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if len(values) else None


def build_summary(
    records: RunRecords, ranks: pd.DataFrame, stats: StatsResult | None, stats_error: str | None
) -> dict[str, Any]:
    """summary.json: per-candidate standing and speed, the test used, the significant pairs."""
    config = records.config
    candidates: dict[str, Any] = {}
    order = list(stats.candidates) if stats else []
    order += [c.name for c in config.candidates if c.name not in order]
    metrics = records.answer_metrics
    for name in order:
        own = metrics[metrics["candidate"] == name]  # one candidate's rows at a time
        ok = own[own["ok"]]
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
        entry |= {
            "words_per_second": _mean(_values(ok, "words_per_second")),
            "answer_words": _mean(_values(ok, "words")),
            "ttft_s": _mean(_values(ok, "ttft_s")),
            "latency_s": _mean(_values(ok, "latency_s")),
            "failed_answers": len(own) - len(ok),
            "answers": len(own),
            "cached_answers": int(own["cached"].sum()),
            "empty_answers": int(ok["empty"].sum()),
            "errors": _error_counts(own["error"]),
            "distributions": speed_distributions(ok),
            "tokens": token_totals(ok),
        }
        price = next((c.price for c in config.candidates if c.name == name), None)
        if price is not None:
            entry["cost_usd"] = cost_estimate(ok, price.input_per_million, price.output_per_million)
        candidates[name] = entry
    judges: dict[str, Any] = {}
    for judge in config.judges:
        judges[judge.name] = {"kind": judge.kind, **records.judge_tallies[judge.name]}
    summary: dict[str, Any] = {
        "name": config.name,
        "candidates": candidates,
        "test": stats.test if stats else {"name": None, "error": stats_error},
        "significant_pairs": [list(p) for p in stats.significant_pairs] if stats else [],
        "n_questions": records.n_questions,
        "n_questions_ranked": int(ranks["question_id"].nunique()) if not ranks.empty else 0,
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
        summary["diagnostics"] = diagnostics(ranks, records.answer_metrics, config.alpha)
        summary["per_judge"] = per_judge_stats(ranks, config)
    return summary


def diagnostics(ranks: pd.DataFrame, answer_metrics: pd.DataFrame, alpha: float) -> dict[str, Any]:
    """Can the judges be trusted: position bias, self-consistency, agreement, length bias."""
    from raq import stats as st

    ok = answer_metrics[answer_metrics["ok"]]
    words = ok[["question_id", "candidate", "words"]]
    panel = st.panel_aggregate(ranks)
    win = st.win_rates(ranks)
    return {
        "position_bias": st.position_bias(ranks, alpha=alpha),
        "self_consistency": st.self_consistency(ranks),
        "judge_agreement": st.judge_agreement(ranks),
        "length_bias": st.length_bias(ranks, words) if not words.empty else None,
        "win_rates": {
            "description": "share of shared (question, repeat, judge) blocks where the row "
            "candidate ranked above the column one; ties count 1/2",
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


def per_judge_stats(ranks: pd.DataFrame, config: RunConfig) -> dict[str, Any]:
    """For a panel: the same test on each judge's ranks alone (empty for a single judge)."""
    if ranks["judge"].nunique() < 2:
        return {}
    out: dict[str, Any] = {}
    for judge, rows in ranks.groupby("judge", sort=False):
        try:
            result = _test(rows, config)
        except ValueError as exc:
            out[str(judge)] = {"error": str(exc)}
            continue
        out[str(judge)] = {
            "mean_rank": {n: c.mean_rank for n, c in result.candidates.items()},
            "n_ranks": {n: c.n_ranks for n, c in result.candidates.items()},
            "significant_pairs": [list(p) for p in result.significant_pairs],
            "test": result.test.get("description"),
        }
    return out


def _values(answers: pd.DataFrame, column: str) -> np.ndarray:
    """A column's present values as float64, in question order."""
    return answers[column].dropna().to_numpy(dtype=float)


def _distribution(values: np.ndarray) -> dict[str, float | int | None]:
    import numpy as np

    if not len(values):
        return {"n": 0, "mean": None, "p50": None, "p90": None, "p99": None}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"n": len(values), "mean": float(values.mean()), "p50": p50, "p90": p90, "p99": p99}


def speed_distributions(answers: pd.DataFrame) -> dict[str, Any]:
    """Mean and p50/p90/p99 of every speed and length metric, each over its own n.

    Inter-token latency (time per output token) and output tokens per second are measured
    after the first token: (latency - TTFT) over (completion tokens - 1).
    """
    timed = answers[
        answers["ttft_s"].notna()
        & (answers["latency_s"].fillna(0) != 0)
        & (answers["completion_tokens"].fillna(0) > 1)
    ]
    decode_s = timed["latency_s"] - timed["ttft_s"]
    after_first = timed["completion_tokens"] - 1
    decoding = decode_s > 0
    return {
        "latency_s": _distribution(_values(answers, "latency_s")),
        "ttft_s": _distribution(_values(answers, "ttft_s")),
        "time_per_output_token_s": _distribution(
            (decode_s[decoding] / after_first[decoding]).to_numpy(dtype=float)
        ),
        "output_tokens_per_second": _distribution(
            (after_first[decoding] / decode_s[decoding]).to_numpy(dtype=float)
        ),
        "words_per_second": _distribution(_values(answers, "words_per_second")),
        "answer_words": _distribution(_values(answers, "words")),
        "tokens_estimated": bool(answers["tokens_estimated"].any()),
    }


def token_totals(answers: pd.DataFrame) -> dict[str, Any]:
    return {
        "prompt": int(answers["prompt_tokens"].fillna(0).sum()),
        "completion": int(answers["completion_tokens"].fillna(0).sum()),
        "prompt_reported": int(answers["prompt_tokens"].notna().sum()),
        "completion_estimated": int(answers["tokens_estimated"].sum()),
        "n_answers": len(answers),
    }


def cost_estimate(
    answers: pd.DataFrame, input_per_million: float, output_per_million: float
) -> dict[str, Any]:
    """USD from the config's prices; ``estimated`` when any token count was words × 1.3."""
    from raq.metrics import cost_usd

    total = sum(
        cost_usd(int(prompt), int(completion), input_per_million, output_per_million)
        for prompt, completion in zip(
            answers["prompt_tokens"].fillna(0), answers["completion_tokens"].fillna(0), strict=True
        )
    )
    return {
        "total": total,
        "per_answer": total / len(answers) if len(answers) else None,
        "estimated": bool(answers["tokens_estimated"].any()),
        "n_answers": len(answers),
    }


def _error_counts(errors: Iterable[str | None]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for error in errors:
        if isinstance(error, str) and error:
            kind = error_kind(error)
            counts[kind] = counts.get(kind, 0) + 1
    return counts


def error_kind(error: str) -> str:
    """What errors are counted by in reports: the text before the first colon ("HTTP 503")."""
    return error.split(":")[0][:80]


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
                "latency_s": entry["latency_s"],
                "failed_answers": entry["failed_answers"],
            }
        )
    return pd.DataFrame(rows).set_index("candidate")


def check_limits(config: RunConfig, summary: dict[str, Any]) -> list[str]:
    """Configured limits the run broke, each a sentence (the CLI exits 1 on any)."""
    problems: list[str] = []
    if config.gate is not None:
        from raq.gate import gate

        verdicts = gate(
            summary, config.gate.baseline, config.gate.candidates, config.gate.require,
            config.gate.alpha,
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
    }


class _JsonlWriter:
    """Writes JSON lines to a temporary file that replaces ``path`` only when complete."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = path.with_suffix(path.suffix + ".tmp")

    def __enter__(self) -> _JsonlWriter:
        self._file = self.tmp.open("w", encoding="utf-8")
        return self

    def write(self, row: dict[str, Any]) -> None:
        self._file.write(json.dumps(_json_safe(row), ensure_ascii=False) + "\n")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self._file.close()
        if exc_type is None:
            self.tmp.replace(self.path)
        else:
            self.tmp.unlink(missing_ok=True)


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
