"""The visual report: PNG plots and the self-contained HTML page, built from a stored run."""

from __future__ import annotations

import html
import random
import re
from pathlib import Path

import pytest

from raq.core.records import Answer, Judgment, QAItem
from raq.pipeline.finalize import finalize
from raq.report.html import render_html
from raq.report.plots import PLOT_KEYS, plot_labels, write_plots
from raq.result import RunResult
from raq.store import RunStore

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EVIL = "<script>alert(1)</script>"


def build_run(
    run_dir: Path,
    candidates: list[str],
    *,
    judges: tuple[str, ...] = ("judge-a",),
    n_questions: int = 12,
    repeats: int = 2,
    quality: dict[str, float] | None = None,
    answer_text: str = "The answer is {n}.",
    failed: tuple[str, ...] = (),
    seed: int = 0,
) -> RunResult:
    """Write a run store by hand (no server) and finalize it into a RunResult.

    A judge ranks by ``quality`` plus a little noise, so a clear quality gap shows as a
    significant difference; ``failed`` candidates answer nothing and are never ranked.
    """
    rng = random.Random(seed)
    quality = quality or {name: -i for i, name in enumerate(candidates)}
    config = {
        "name": "report-test",
        "seed": seed,
        "dataset": {"path": "qa.jsonl"},
        "candidates": [
            {"name": n, "base_url": f"http://127.0.0.1:9/v{i}", "model": f"m{i}"}
            for i, n in enumerate(candidates)
        ],
        "judges": [{"name": j, "base_url": "http://127.0.0.1:9/judge", "model": j} for j in judges],
        "repeats": repeats,
        "stats": {"n_boot": 200},
        "env_file": None,
    }
    store = RunStore(run_dir)
    try:
        store.set_meta("config", config)
        store.set_meta("name", "report-test")
        store.set_meta("status", "complete")
        items = [QAItem(f"q{n:02d}", f"Question {n}?", (f"truth {n}",)) for n in range(n_questions)]
        store.save_questions(list(enumerate(items)))
        for n, item in enumerate(items):
            for i, name in enumerate(candidates):
                if name in failed:
                    store.put_answer(
                        Answer(item.id, name, None, error="<b>boom</b> HTTPError: 500"), "fp"
                    )
                    continue
                words = 3 + i * 4 + rng.randint(0, 3)
                latency = 0.4 + 0.3 * i + rng.random() * 0.2
                answer = Answer(
                    item.id, name, answer_text.format(n=n), latency_s=latency,
                    ttft_s=0.05 + 0.02 * i + rng.random() * 0.02, words=words,
                    words_per_second=words / latency,
                )  # fmt: skip
                store.put_answer(answer, "fp")
            ranked = [c for c in candidates if c not in failed]
            for judge in judges:
                for repeat in range(repeats):
                    order = ranked[:]
                    rng.shuffle(order)
                    score = {c: quality[c] + rng.gauss(0, 0.6) for c in ranked}
                    ranking = sorted(ranked, key=lambda c: -score[c])
                    ranks = {c: float(ranking.index(c) + 1) for c in ranked}
                    judgment = Judgment(item.id, repeat, judge, tuple(order), "{}", ranks)
                    store.put_judgment(judgment, "fp")
        return finalize(run_dir, store)
    finally:
        store.close()


@pytest.fixture(scope="module")
def panel_run(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    names = ["strong", "medium", EVIL]
    return build_run(
        tmp_path_factory.mktemp("panel"), names, judges=("judge-a", "judge-b"),
        answer_text=EVIL + " {n}",
    )  # fmt: skip


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC), path
    assert len(data) > 5_000, f"{path} is suspiciously small ({len(data)} bytes)"


def test_every_plot_is_written_as_a_png_for_a_clear_three_way_difference(
    panel_run: RunResult, tmp_path: Path
) -> None:
    skipped: dict[str, str] = {}
    plots = write_plots(panel_run, tmp_path / "plots", skipped=skipped)
    assert skipped == {}
    assert set(plots) == set(PLOT_KEYS)
    for key, path in plots.items():
        assert path == tmp_path / "plots" / f"{key}.png"
        assert_png(path)
    assert panel_run.summary_json["significant_pairs"], "the fixture should show a difference"


def test_html_is_self_contained_and_embeds_every_plot(panel_run: RunResult, tmp_path: Path) -> None:
    plots = write_plots(panel_run, tmp_path)
    page = render_html(panel_run, plots)
    assert page.startswith("<!DOCTYPE html>")
    assert page.count('src="data:image/png;base64,') == len(plots)
    # the config's base_url may appear as text, never as a resource the browser fetches
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", page, re.I)
    assert "<link" not in page and "<script" not in page.lower()
    assert "http://127.0.0.1:9/judge" in page  # shown in the config <pre>


def test_html_escapes_names_answers_and_errors(tmp_path: Path) -> None:
    names = ["good", EVIL, "bad"]
    run = build_run(tmp_path / "run", names, answer_text=EVIL, failed=("bad",))
    page = render_html(run, write_plots(run, tmp_path / "plots"))
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>boom</b>" not in page and "&lt;b&gt;boom" in page


def test_html_reports_the_test_the_pairs_and_the_judge_diagnostics(panel_run: RunResult) -> None:
    page = render_html(panel_run, {})
    summary = panel_run.summary_json
    assert html.escape(summary["test"]["description"]) in page
    for title in ("Position bias", "Self-consistency", "Agreement between judges", "Length bias"):
        assert title in page
    assert 'class="sig"' in page  # significant p-value cells are highlighted
    assert "win rate" in page
    assert "Config" in page and "<pre" in page
    assert "Self-judging" not in page


def test_self_judging_shows_a_warning_box(tmp_path: Path) -> None:
    run = build_run(tmp_path / "run", ["a", "b"])
    run.summary_json["self_judging"] = ["judge-a"]
    page = render_html(run, {})
    assert 'class="warning"' in page and "Self-judging" in page


def test_two_candidates_with_identical_ranks_do_not_crash(tmp_path: Path) -> None:
    run = build_run(tmp_path / "run", ["twin-a", "twin-b"], quality={"twin-a": 0, "twin-b": 0})
    skipped: dict[str, str] = {}
    plots = write_plots(run, tmp_path / "plots", skipped=skipped)
    assert {"bars", "significance", "latency", "position_bias"} <= set(plots)
    assert set(plots) | set(skipped) == set(PLOT_KEYS)
    for path in plots.values():
        assert_png(path)
    page = render_html(run, plots, skipped=skipped)
    assert "No pair differs significantly" in page


def test_a_run_without_statistics_still_gets_plots_and_a_page(tmp_path: Path) -> None:
    run = build_run(tmp_path / "run", ["only", "broken"], failed=("broken",))
    assert run.stats is None
    skipped: dict[str, str] = {}
    plots = write_plots(run, tmp_path / "plots", skipped=skipped)
    assert {"bars", "latency"} <= set(plots)
    assert {"significance", "critical_difference"} <= set(skipped)
    page = render_html(run, plots, skipped=skipped)
    assert "No test was run" in page
    assert "not drawn" in page


def test_a_run_with_no_ranks_at_all_does_not_crash(tmp_path: Path) -> None:
    run = build_run(tmp_path / "run", ["x", "y"], failed=("x", "y"))
    assert run.ranks.empty
    skipped: dict[str, str] = {}
    plots = write_plots(run, tmp_path / "plots", skipped=skipped)
    assert plots == {}
    assert set(skipped) == set(PLOT_KEYS)
    assert "<h1>" in render_html(run, plots, skipped=skipped)


def test_many_long_and_cjk_names_are_drawn(tmp_path: Path) -> None:
    names = [f"vendor-{i}/very-long-model-name-instruct-v0.{i}-fp16-quantised" for i in range(9)]
    names += ["通义千问-大模型", "模型 $x$ 二"]
    run = build_run(tmp_path / "run", names, n_questions=8, repeats=1)
    skipped: dict[str, str] = {}
    plots = write_plots(run, tmp_path / "plots", skipped=skipped)
    assert skipped == {}
    for path in plots.values():
        assert_png(path)
    labels = plot_labels(list(run.summary_json["candidates"]))
    assert len(set(labels.values())) == len(names)
    assert all(len(label) <= 40 for label in labels.values())
    assert "通义千问-大模型" in render_html(run, plots)


def test_html_carries_the_evidence_for_each_significant_pair_escaped(panel_run: RunResult) -> None:
    page = render_html(panel_run, panel_run.plots)
    assert "The evidence behind each significant pair" in page
    assert panel_run.evidence, "the fixture has significant pairs"
    for pair in panel_run.evidence:
        assert 0 < len(pair.examples) <= 3
        assert f"<h3>{html.escape(pair.better)} vs {html.escape(pair.worse)}</h3>" in page
        for example in pair.examples:
            assert example.rank_difference < 0 or example.rank_difference > 0
            assert html.escape(example.item.question) in page
    assert "<script" not in page.lower()


def test_decision_page_puts_the_verdict_and_the_tradeoff_first(panel_run: RunResult) -> None:
    page = render_html(panel_run, panel_run.plots)
    verdict_at = page.index("<h2>Verdict</h2>")
    assert verdict_at < page.index("<h2>Candidates</h2>")
    for line in panel_run.summary_json["verdict"]:
        assert html.escape(line) in page
    assert 'alt="quality against speed and cost"' in page
    md = (panel_run.run_dir / "report.md").read_text()
    assert md.index("## Verdict") < md.index("## Candidates")
    assert [ln[2:] for ln in md.splitlines() if " beats " in ln] == panel_run.summary_json[
        "verdict"
    ]


def test_plots_are_the_bytes_matplotlibs_tight_crop_saves(
    panel_run: RunResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plots are cropped by measuring the figure instead of drawing it once more, as
    ``savefig(bbox_inches="tight")`` does: the files must not change. Three candidates side by
    side, and eleven long and CJK names on stacked panels with rotated labels."""
    import raq.report.plots.drawing as drawing
    from raq.report.plots.style import DPI, PAD_INCHES, PNG_COMPRESS_LEVEL

    many = [f"vendor-{i}/very-long-model-name-instruct-v0.{i}-fp16" for i in range(9)]
    many += ["通义千问-大模型", "模型 $x$ 二"]
    runs = {"panel": panel_run, "many": build_run(tmp_path / "many", many, n_questions=8)}
    for name, run in runs.items():
        ours = write_plots(run, tmp_path / name / "ours")
        with monkeypatch.context() as patch:
            patch.setattr(
                drawing,
                "save_png",
                lambda fig, path: fig.savefig(
                    path,
                    format="png",
                    dpi=DPI,
                    bbox_inches="tight",
                    pad_inches=PAD_INCHES,
                    pil_kwargs={"compress_level": PNG_COMPRESS_LEVEL},
                ),
            )
            theirs = write_plots(run, tmp_path / name / "matplotlib")
        assert set(ours) == set(theirs) == set(PLOT_KEYS)
        for key in PLOT_KEYS:
            assert ours[key].read_bytes() == theirs[key].read_bytes(), f"{name}: {key}.png"
