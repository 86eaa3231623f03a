"""The CI gate and run comparison, both read from summary.json so they need no store or server.

The gate first refuses thin evidence: a run that did not finish, fewer questions than
``min_questions``, a verdict that rests on no qualified judge, or a candidate (or the baseline)
whose failed answers exceed ``max_failed``. Then, per candidate against the baseline:
``not-worse`` passes unless the candidate is significantly worse (adjusted p below alpha and a
higher mean rank) or, with a margin, only when the one-sided (1 - alpha) confidence bound of
the difference clears the margin; ``better`` passes only if significantly better.

Exit codes (``raq gate``): 0 every check passed; 1 a check failed (one line each says why);
2 the run directory or an argument is unusable.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from raq.core.errors import InputError
from raq.result.verdict import p_phrase

Requirement = Literal["not-worse", "better"]
MarginUnit = Literal["mean-rank", "win-rate"]
MIN_QUESTIONS = 20
MAX_FAILED = 0.1


@dataclass(frozen=True)
class Verdict:
    candidate: str
    baseline: str
    passed: bool
    requirement: str
    p_adjusted: float | None
    mean_rank_diff: float | None  # candidate - baseline; negative = candidate better
    win_rate: float | None  # share of shared questions the candidate ranked above the baseline
    reason: str
    bound: float | None = None  # the confidence bound held against the margin

    def line(self) -> str:
        mark = "PASS" if self.passed else "FAIL"
        return f"{mark} {self.candidate} vs {self.baseline} ({self.requirement}): {self.reason}"


def read_summary(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "summary.json" if run_dir.is_dir() else run_dir
    if not path.is_file():
        raise InputError(f"{run_dir}: no summary.json (is it a finished raq run directory?)")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    problem = _shape_problem(summary)
    if problem:  # a hand-edited or foreign file: one line, never a traceback
        raise InputError(
            f"{path}: not a raq summary ({problem}); render it again with raq report RUN_DIR"
        )
    return summary


def _shape_problem(summary: Any) -> str | None:
    """What in summary.json does not have the shape gate and compare read, or None."""
    if not isinstance(summary, dict):
        return "not a JSON object"
    candidates = summary.get("candidates")
    if not isinstance(candidates, dict) or not all(
        isinstance(e, dict) for e in candidates.values()
    ):
        return "'candidates' is not an object of candidate objects"
    test = summary.get("test")
    if not isinstance(test, dict):
        return "'test' is not an object"
    if test.get("name") is not None and not _numbers(test.get("alpha")):
        return "'test.alpha' is not a number"
    pairs = summary.get("pairs", [])
    if not isinstance(pairs, list) or not all(_pair_ok(p) for p in pairs):
        return "'pairs' is not a list of pair objects"
    significant = summary.get("significant_pairs", [])
    if not isinstance(significant, list) or not all(
        isinstance(p, list) and len(p) >= 2 for p in significant
    ):
        return "'significant_pairs' is not a list of pairs"
    return None


def _pair_ok(pair: Any) -> bool:
    return (
        isinstance(pair, dict)
        and isinstance(pair.get("a"), str)
        and isinstance(pair.get("b"), str)
        and _numbers(pair.get("n_pairs"))
        and all(
            pair.get(key) is None or _numbers(pair.get(key))
            for key in ("mean_rank_diff", "win_rate_a", "p_adjusted")
        )
    )


def evidence_problems(
    summary: dict[str, Any],
    names: list[str],
    *,
    min_questions: int = MIN_QUESTIONS,
    max_failed: float = MAX_FAILED,
) -> list[str]:
    """Why this run cannot carry a verdict (empty when it can); each a sentence."""
    problems = []
    status = summary.get("status")
    if status != "complete":
        problems.append(f"the run did not finish (status: {status or 'unknown'}); resume it first")
    ranked = summary.get("n_questions_ranked") or 0
    if ranked < min_questions:
        problems.append(
            f"{ranked} question(s) ranked, fewer than min_questions={min_questions}: too few to "
            "carry a verdict"
        )
    judges = summary.get("judges") or {}
    deciding = [name for name, j in judges.items() if j.get("in_verdict", True)]
    trusted = [
        name
        for name in deciding
        if judges[name].get("qualified") is True or judges[name].get("kind") == "reference"
    ]
    if not trusted:
        why = "; ".join(
            judges[name].get("controls", {}).get("reason", "")
            if judges[name].get("controls")
            else f"judge '{name}' ranked no planted controls (judges[].controls is off)"
            for name in judges
        )
        problems.append(f"the verdict rests on no qualified judge ({why})")
    for name in names:
        entry = summary["candidates"].get(name) or {}
        answers, failed = entry.get("answers") or 0, entry.get("failed_answers") or 0
        if not answers or failed / answers > max_failed:
            problems.append(
                f"candidate '{name}': {failed} of {answers} answers failed, above "
                f"max_failed={max_failed:g}"
            )
    return problems


def gate(
    summary: dict[str, Any],
    baseline: str,
    candidates: list[str] | None = None,
    require: Requirement = "not-worse",
    alpha: float | None = None,
    *,
    margin: float | None = None,
    margin_unit: MarginUnit = "mean-rank",
    min_questions: int = MIN_QUESTIONS,
    max_failed: float = MAX_FAILED,
) -> list[Verdict]:
    """One verdict per candidate against the baseline, from the run's pairwise results; every
    candidate fails, with the reason, when the run cannot carry a verdict."""
    names = list(summary.get("candidates", {}))
    if baseline not in names:
        raise InputError(
            f"baseline '{baseline}' is not a candidate of this run ({', '.join(names)})"
        )
    chosen = candidates or [n for n in names if n != baseline]
    unknown = [n for n in chosen if n not in names]
    if unknown:
        raise InputError(f"not a candidate of this run: {', '.join(unknown)}")
    if margin is not None and margin < 0:
        raise InputError(f"--margin must not be negative, got {margin:g}")
    problems = evidence_problems(
        summary, [baseline, *chosen], min_questions=min_questions, max_failed=max_failed
    )
    if problems:
        reason = "refused: " + "; ".join(problems)
        return [Verdict(n, baseline, False, require, None, None, None, reason) for n in chosen]
    test = summary.get("test") or {}
    if test.get("name") is None:
        reason = test.get("error") or "the run has no statistics"
        return [Verdict(n, baseline, False, require, None, None, None, reason) for n in chosen]
    level = alpha if alpha is not None else float(test["alpha"])
    pairs = {(p["a"], p["b"]): p for p in summary.get("pairs", [])}
    verdicts = [
        _verdict(name, baseline, pairs, require, level, margin, margin_unit) for name in chosen
    ]
    return [_with_power(v, summary) if _undecided(v, level) else v for v in verdicts]


def _undecided(verdict: Verdict, alpha: float) -> bool:
    return verdict.p_adjusted is not None and not verdict.p_adjusted < alpha


def _with_power(verdict: Verdict, summary: dict[str, Any]) -> Verdict:
    """A comparison that found no difference says how many questions would find one: the
    pair that decides the gate is the candidate against the baseline."""
    pair = {verdict.candidate, verdict.baseline}
    entry = next(
        (p for p in (summary.get("power") or {}).get("pairs", []) if {p["a"], p["b"]} == pair),
        None,
    )
    if entry is None or not entry.get("questions_80"):
        return verdict
    note = (
        f"; about {entry['questions_80']:,} questions would give 80% power to detect the "
        "observed difference"
    )
    return replace(verdict, reason=verdict.reason + note)


def _verdict(
    name: str,
    baseline: str,
    pairs: dict[tuple[str, str], Any],
    require: str,
    alpha: float,
    margin: float | None,
    margin_unit: str,
) -> Verdict:
    pair = pairs.get((name, baseline)) or pairs.get((baseline, name))
    if pair is None:
        return Verdict(name, baseline, False, require, None, None, None, "no ranks to compare")
    flipped = pair["a"] != name
    diff = -pair["mean_rank_diff"] if flipped else pair["mean_rank_diff"]
    diff = diff or 0.0  # a tie flipped is -0.0, printed "-0.00"
    win = 1 - pair["win_rate_a"] if flipped else pair["win_rate_a"]
    p = pair["p_adjusted"]
    significant = p is not None and p < alpha
    worse, better = significant and diff > 0, significant and diff < 0
    standing = (
        "significantly worse"
        if worse
        else "significantly better"
        if better
        else "no significant difference"
    )
    evidence = (
        f"{p_phrase(pair, '.3g')}, alpha = {alpha:g}; mean rank {diff:+.2f} vs baseline, "
        f"wins {win:.0%} of {pair['n_pairs']} shared questions"
    )
    if require == "better":
        return Verdict(name, baseline, better, require, p, diff, win, f"{standing} ({evidence})")
    if margin is None:
        return Verdict(name, baseline, not worse, require, p, diff, win, f"{standing} ({evidence})")
    bound = _one_sided_bound(pair, flipped, alpha, margin_unit)
    if bound is None:
        reason = f"no confidence bound (fewer than 2 shared questions); {standing} ({evidence})"
        return Verdict(name, baseline, False, require, p, diff, win, reason)
    if margin_unit == "mean-rank":
        passed = bound < margin
        reason = (
            f"the upper {1 - alpha:.0%} confidence bound of its mean-rank difference to the "
            f"baseline is {bound:+.2f}, {'inside' if passed else 'not inside'} the margin "
            f"+{margin:g} ({evidence})"
        )
    else:
        passed = bound > 0.5 - margin
        reason = (
            f"the lower {1 - alpha:.0%} confidence bound of its win rate against the baseline is "
            f"{bound:.0%}, {'above' if passed else 'not above'} 50% - margin = "
            f"{0.5 - margin:.0%} ({evidence})"
        )
    return Verdict(name, baseline, passed, require, p, diff, win, reason, bound)


def _one_sided_bound(pair: dict[str, Any], flipped: bool, alpha: float, unit: str) -> float | None:
    """The one-sided (1 - alpha) t bound over the shared questions: the upper bound of the
    candidate's rank difference (mean-rank margin), or the lower bound of its win rate."""
    from scipy import stats as ss

    n = pair.get("n_pairs") or 0
    mean_d, sd_d, sd_w = (pair.get(k) for k in ("paired_diff", "paired_diff_sd", "win_sd"))
    if n < 2 or mean_d is None or sd_d is None or sd_w is None:
        return None
    t = float(ss.t.isf(alpha, n - 1))
    if unit == "mean-rank":
        mean = -mean_d if flipped else mean_d
        return mean + t * sd_d / math.sqrt(n)
    win = 1 - pair["win_rate_a"] if flipped else pair["win_rate_a"]
    return win - t * sd_w / math.sqrt(n)


def verdicts_json(verdicts: list[Verdict]) -> dict[str, Any]:
    return {"passed": all(v.passed for v in verdicts), "verdicts": [asdict(v) for v in verdicts]}


def compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """What changed from run A to run B: per candidate standing and speed, and the verdicts."""
    metrics = ("mean_rank", "words_per_second", "answer_words", "ttft_s", "failed_answers")
    names_a, names_b = list(a["candidates"]), list(b["candidates"])
    rows = []
    for name in [*names_a, *[n for n in names_b if n not in names_a]]:
        row: dict[str, Any] = {"candidate": name}
        for metric in metrics:
            va = a["candidates"].get(name, {}).get(metric)
            vb = b["candidates"].get(name, {}).get(metric)
            row[metric] = {"a": va, "b": vb, "change": vb - va if _numbers(va, vb) else None}
        rows.append(row)
    sig_a = {tuple(sorted(p[:2])) for p in a.get("significant_pairs", [])}
    sig_b = {tuple(sorted(p[:2])) for p in b.get("significant_pairs", [])}
    return {
        "a": {
            "name": a.get("name"),
            "n_questions": a.get("n_questions"),
            "test": a["test"].get("name"),
        },
        "b": {
            "name": b.get("name"),
            "n_questions": b.get("n_questions"),
            "test": b["test"].get("name"),
        },
        "only_in_a": [n for n in names_a if n not in names_b],
        "only_in_b": [n for n in names_b if n not in names_a],
        "candidates": rows,
        "newly_significant": sorted(sig_b - sig_a),
        "no_longer_significant": sorted(sig_a - sig_b),
    }


def _numbers(*values: Any) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
