"""The run's outputs, rendered from its store: files of the output contract and ``RunResult``.

pandas and the statistics enter here, at the boundary, never in the pipeline.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raq.config import RunConfig
from raq.core.errors import StoreError
from raq.core.numbers import fmt, fmt_p
from raq.result.evidence import PairEvidence
from raq.result.tables import ANSWER_FIELDS, answer_metrics_frame, ranks_table
from raq.store import RunStore

if TYPE_CHECKING:
    import pandas as pd

    from raq.stats import StatsResult


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
        with open_run_store(self.run_dir) as store:
            return ranks_table(store)

    @cached_property
    def answer_metrics(self) -> pd.DataFrame:
        """Every answer of the run with its measurements (``RunStore.ANSWER_METRIC_FIELDS``)."""
        with open_run_store(self.run_dir) as store:
            candidates = [c.name for c in self.config.candidates]
            return answer_metrics_frame(store.answer_metrics(candidates))

    @cached_property
    def answers(self) -> pd.DataFrame:
        """Every answer of the run with its text, as in answers.jsonl."""
        import pandas as pd

        with (self.run_dir / "answers.jsonl").open(encoding="utf-8") as lines:
            return pd.DataFrame([json.loads(line) for line in lines], columns=ANSWER_FIELDS)

    def _repr_html_(self) -> str:
        return run_result_html(self)

    def __repr__(self) -> str:
        return run_result_text(self)


@contextlib.contextmanager
def open_run_store(run_dir: Path) -> Any:

    store = RunStore.open_existing(run_dir)
    try:
        if store.get_meta("config") is None:
            raise StoreError(f"{store.path}: holds no config: no raq run was started in it")
        yield store
    finally:
        store.close()


# How it displays: tables in a notebook and a REPL instead of the dataclass repr.


def _summary_frame(result: RunResult) -> pd.DataFrame:
    import pandas as pd

    rows = []
    for name, c in result.summary_json["candidates"].items():
        ci = c.get("mean_rank_ci95")
        rows.append(
            {
                "candidate": name,
                "mean rank": fmt(c.get("mean_rank")),
                "95% CI": f"{fmt(ci[0])}–{fmt(ci[1])}" if ci else "–",
                "n ranks": c.get("n_ranks"),
                "words/s": fmt(c.get("words_per_second"), 1),
                "words": fmt(c.get("answer_words"), 1),
                "TTFT s": fmt(c.get("ttft_s"), 3),
                "failed": f"{c.get('failed_answers')}/{c.get('answers')}",
            }
        )
    return pd.DataFrame(rows).set_index("candidate")


def _headline(result: RunResult) -> str:
    s = result.summary_json
    return (
        f"{s.get('name')}: {s.get('n_questions')} questions, {s.get('repeats')} repeat(s), "
        f"judge(s) {', '.join(s.get('judges', {}))}"
    )


def _significance_lines(result: RunResult) -> list[str]:
    """Which of each significant pair ranks better: the run's verdict lines, or (a summary
    written before raq had them) the better mean rank of each significant pair."""
    s = result.summary_json
    if s.get("verdict"):  # the run's own verdict lines, as the reports print them
        return [*s["verdict"], *s.get("tradeoffs", [])]
    if s["test"].get("name") is None:
        return [str(s["test"].get("error") or "no statistics")]
    candidates = s["candidates"]
    lines = []
    for a, b, p in s.get("significant_pairs", []):
        if (candidates[a].get("mean_rank") or 0) > (candidates[b].get("mean_rank") or 0):
            a, b = b, a
        lines.append(f"{a} ranks better than {b} (adjusted p {_p_text(p)})")
    return lines or [f"no pair differs significantly at alpha = {s['test'].get('alpha')}"]


def _p_text(p: float) -> str:
    text = fmt_p(p)
    return text if text.startswith("<") else f"= {text}"


_MORE = "result.stats, .pvalues, .ranks, .answer_metrics, .answers; raq view {run_dir}"


def run_result_text(result: RunResult) -> str:
    return "\n".join(
        [
            f"RunResult({str(result.run_dir)!r}) {_headline(result)}",
            _summary_frame(result).to_string(),
            *_significance_lines(result),
            *(f"limit broken: {p}" for p in result.problems),
        ]
    )


def run_result_html(result: RunResult) -> str:
    items = "".join(f"<li>{escape(line)}</li>" for line in _significance_lines(result))
    problems = "".join(
        f"<p><strong>limit broken:</strong> {escape(p)}</p>" for p in result.problems
    )
    more = escape(_MORE.format(run_dir=result.run_dir))
    return (
        f"<div><p><strong>{escape(_headline(result))}</strong></p>"
        f"{_summary_frame(result).to_html()}<ul>{items}</ul>{problems}"
        f"<p><small>{more}</small></p></div>"
    )
