"""Finalize: turn a run's store into its output files and its ``RunResult``.

The statistics are computed from the records read once (raq.result), then the renderings
(raq.report) write report.md, the plots and report.html. ``raq report`` re-renders a stored run
the same way.
"""

from __future__ import annotations

import json
from pathlib import Path

from raq.core.atomic import write_text_atomically
from raq.core.escape import csv_cell
from raq.report.html import render_html
from raq.report.markdown import render_markdown
from raq.report.plot_helper import PlotHelper
from raq.report.plots import hand_over, write_plots
from raq.result.evidence import pair_evidence
from raq.result.files import Replacing, json_safe
from raq.result.reading import RecordPass
from raq.result.record import RunResult, open_run_store
from raq.result.summary import build_summary, check_limits, empty_frame, summary_frame, verdict_test
from raq.store import RunStore


def finalize(
    run_dir: Path,
    store: RunStore,
    plot_helper: PlotHelper | None = None,
    record_pass: RecordPass | None = None,
) -> RunResult:
    """Render every output file of the run directory from the store and build the result
    (with ``plot_helper``, a second process draws some of the plots; with ``record_pass``,
    the records were partly read during the requests, into the same files)."""
    with store.snapshot():  # one consistent read, even of a store a running run writes
        records = (record_pass or RecordPass.into_run_dir(store, run_dir)).finish()
    config = records.config
    ranks = records.ranks
    stats, stats_error = verdict_test(
        ranks.overall, config, ranks.verdict_judges if ranks.has_ranks else None
    )
    summary_json = build_summary(records, stats, stats_error)
    # The helper's plots read only these: it starts on them while the rest is written.
    hand_over(plot_helper, summary_json, records.speed_boxes, run_dir / "plots")
    pvalues = stats.pvalues if stats is not None else empty_frame()
    with Replacing(run_dir / "pvalues.csv") as out:
        pvalues.rename(index=csv_cell, columns=csv_cell).to_csv(out.file)
    write_text_atomically(
        run_dir / "summary.json", json.dumps(json_safe(summary_json), indent=2, ensure_ascii=False)
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
    run_dir = result.run_dir
    skipped: dict[str, str] = {}
    plots = write_plots(result, run_dir / "plots", skipped=skipped, helper=plot_helper)
    result.plots = plots
    write_text_atomically(run_dir / "report.md", render_markdown(result))
    write_text_atomically(run_dir / "report.html", render_html(result, plots, skipped=skipped))


def load_result(run_dir: Path) -> RunResult:
    """Re-render a stored run (``raq report``)."""
    with open_run_store(run_dir) as store:
        return finalize(run_dir, store)
