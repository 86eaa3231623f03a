"""The end of the page, for looking things up: failures and HTTP requests per candidate, judge
and endpoint, and the resolved config."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

from raq.config import config_to_yaml
from raq.report.html.blocks import number, table

if TYPE_CHECKING:
    from raq.result import RunResult


def _errors(errors: dict[str, int]) -> str:
    return "; ".join(f"{escape(k)} ×{v}" for k, v in errors.items()) or "–"


def failures_section(result: RunResult) -> str:
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
        table(["who", "failed", "errors", "from store/cache"], rows),
    ]
    requests = summary.get("requests") or {}
    if requests:
        keys = sorted({k for counters in requests.values() for k in counters})
        out.append('<p class="desc">HTTP requests per endpoint, as the client counted them.</p>')
        out.append(
            table(
                ["endpoint", *(escape(k) for k in keys)],
                [
                    [escape(str(name)), *(number(counters.get(k)) for k in keys)]
                    for name, counters in requests.items()
                ],
            )
        )
    return "\n".join(out)


def config_section(result: RunResult) -> str:

    yaml_text = escape(config_to_yaml(result.config))
    return (
        '<h2>Config</h2><p class="desc">The resolved run config; it never holds secrets, only '
        f"the names of environment variables.</p>\n<pre>{yaml_text}</pre>"
    )
