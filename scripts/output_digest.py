"""Fingerprint a run's output files, timings aside: proof that a refactoring changed no output.

    python scripts/output_digest.py fake OUT_DIR        # a run on the loopback fake server
    python scripts/output_digest.py demo OUT_DIR        # the embedded demo (llama.cpp, no keys)
    python scripts/output_digest.py digest RUN_DIR      # only fingerprint an existing run

Each output file is printed with a SHA-256 of its content after the parts that change from
run to run on the same code are masked: wall-clock timings and timestamps, the fake server's
port and the run directory. Run it on two commits and diff the listings; `--show FILE` prints
one file's masked text to see what differs. Plots that draw timings (latency, trade-off) are
listed but not hashed: their pixels move with the timings.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

# JSON keys whose values are wall-clock measurements or moments (masked wherever they appear).
TIMING_KEY = re.compile(
    r"(latency|ttft|_s$|_s_|per_s|per_second|seconds|elapsed|duration|started|finished|"
    r"time|_at$|created|words_per|tokens_per|throughput|wall|speed|faster|slower)",
    re.IGNORECASE,
)
# A speed ratio inside a sentence.
SPEED_RATIO = re.compile(r"\d+(?:\.\d+)?×(?= (?:faster|slower))")
# Plots whose pixels depend on timings (bars.png has a speed panel).
TIMED_PLOTS = {"latency.png", "tradeoff.png", "bars.png"}
# In the text reports timings share table rows with ranks, so every digit is masked there: their
# words, names, verdicts and order are compared byte for byte, and their numbers are compared
# where they come from (summary.json, pvalues.csv, ranks.csv, the jsonl files).
EMBEDDED_PNG = re.compile(r"data:image/png;base64,[A-Za-z0-9+/=]+")
LOOPBACK = re.compile(r"http://127\.0\.0\.1:\d+")
DIGITS = re.compile(r"\d+")


def _mask_json(value: Any, key: str = "") -> Any:
    if TIMING_KEY.search(key):
        return "<timing>"
    if isinstance(value, dict):
        return {k: _mask_json(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_json(v, key) for v in value]
    if isinstance(value, str):  # a verdict sentence quotes a speed ratio ("1.4× faster")
        return SPEED_RATIO.sub("<ratio>×", value)
    return value


def _timing_columns(header: list[str]) -> set[int]:
    return {i for i, name in enumerate(header) if TIMING_KEY.search(name)}


def masked_text(path: Path, replacements: dict[str, str]) -> str | None:
    """The file's text with run-to-run noise masked, or None for a binary file."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    for old, new in replacements.items():
        text = text.replace(old, new)
    text = LOOPBACK.sub("<loopback>", text)
    text = EMBEDDED_PNG.sub("data:image/png;base64,<the plot's file>", text)
    if path.suffix == ".json":
        return json.dumps(_mask_json(json.loads(text)), sort_keys=True, indent=1)
    if path.suffix == ".jsonl":
        rows = [_mask_json(json.loads(line)) for line in text.splitlines()]
        return "\n".join(json.dumps(row, sort_keys=True) for row in rows)
    if path.suffix == ".csv":
        lines = text.splitlines()
        if not lines:
            return text
        drop = _timing_columns(lines[0].split(","))
        kept = (",".join(c for i, c in enumerate(row.split(",")) if i not in drop) for row in lines)
        return "\n".join(kept)
    return DIGITS.sub("#", text)


def digest(run_dir: Path, replacements: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for path in sorted(p for p in run_dir.rglob("*") if p.is_file()):
        name = str(path.relative_to(run_dir))
        if path.name.startswith("raq.sqlite") or path.name == "raq.lock":
            out[name] = "(store: not compared)"
            continue
        if path.name in TIMED_PLOTS:
            out[name] = "(draws timings: not compared)"
            continue
        text = masked_text(path, replacements)
        data = path.read_bytes() if text is None else text.encode()
        out[name] = hashlib.sha256(data).hexdigest()[:16]
    return out


def _fake_run(out: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import yaml
    from conftest import TEST_CONFIG, default_behaviours, secret  # the tests' fake candidates

    import raq
    from raq.testing import FakeOpenAIServer

    out.mkdir(parents=True, exist_ok=True)
    qa = out / "qa.jsonl"
    with qa.open("w") as f:
        for n in range(1, 31):
            context = f"The secret word number {n} is {secret(n)}. Nothing else matters."
            row = {"id": f"q{n:02d}", "question": f"What is the secret word number {n}?"}
            row |= {"context": context, "answers": {"text": [secret(n)], "answer_start": [0]}}
            f.write(json.dumps(row) + "\n")
    with FakeOpenAIServer(default_behaviours()) as server:
        config = yaml.safe_load(TEST_CONFIG.read_text())
        config["dataset"]["path"] = str(qa)
        for endpoint in [*config["candidates"], *config["judges"]]:
            endpoint["base_url"] = server.base_url
        config["judges"].append({**config["judges"][0], "name": "judge2"})
        config["concurrency"] = 1  # one request at a time: the same order on every run
        raq.evaluate(config, output=str(out / "run"), progress=False)


def _demo_run(out: Path) -> None:
    import subprocess

    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "raq", "demo", "--quiet", "--limit", "12", "-o", str(out / "run")]
    subprocess.run(cmd, check=True, stdout=sys.stderr)  # the listing alone on stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["fake", "demo", "digest"])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--show", help="print this file's masked text instead of the digest")
    args = parser.parse_args()
    if args.what == "fake":
        _fake_run(args.dir)
    elif args.what == "demo":
        _demo_run(args.dir)
    run_dir = args.dir if args.what == "digest" else args.dir / "run"
    replacements = {str(run_dir.resolve().parent): "<out>"}
    if args.show:
        print(masked_text(run_dir / args.show, replacements))
        return 0
    for name, value in digest(run_dir, replacements).items():
        print(f"{value}  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
