"""The page frame: the head with its inline CSS, and the order of the sections in the body."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from raq.report.html.appendix import config_section, failures_section
from raq.report.html.candidates import candidates_section, thinking_section
from raq.report.html.decision import alerts_section, facts_section, verdict_section
from raq.report.html.diagnostics import diagnostics_section
from raq.report.html.differences import differences_section
from raq.report.html.evidence import evidence_section
from raq.report.html.figures import plots_section

if TYPE_CHECKING:
    from raq.result import RunResult


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
        facts_section(result),
        alerts_section(result),
        verdict_section(result),
        candidates_section(result, plots),
        thinking_section(result),
        differences_section(result),
        evidence_section(result),
        plots_section({k: v for k, v in plots.items() if k != "tradeoff"}, skipped or {}),
        diagnostics_section(result),
        failures_section(result),
        config_section(result),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>RAQ report: {escape(str(summary['name']))}</title>\n"
        f"<style>{CSS}</style>\n</head>\n<body>\n"
        + "\n".join(part for part in body if part)
        + "\n</body>\n</html>\n"
    )
