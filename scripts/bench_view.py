"""How responsive ``raq view`` is on a large run: build a synthetic run store through RunStore's
own writing API (default 100,000 questions, 3 candidates, 3 repeats of one LLM judge), start
``raq view`` on it as a user would, and time the requests the page makes.

    python scripts/bench_view.py [--questions N] [--dir DIR]

The store is kept in DIR (default /tmp/raq-view-bench-N) and reused when it is already there.
Prints one line per request: what, milliseconds, and the answer's size.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from raq.config import RunConfig
from raq.core.records import Answer, Judgment, QAItem
from raq.store import RunStore

CANDIDATES = ("alpha", "bravo", "charlie")
WORDS = (
    "the", "river", "city", "north", "east", "answer", "model", "token", "quality", "rank",
    "judge", "paris", "tokyo", "seven", "eleven", "blue", "green", "ocean", "mountain",
    "history", "science",
)  # fmt: skip


def build(run_dir: Path, n_questions: int, repeats: int = 3, seed: int = 7) -> None:
    """A finished-looking run store of ``n_questions``, written as a run writes it."""
    rng = random.Random(seed)
    config = RunConfig.model_validate({
        "name": "view-bench", "dataset": {"path": "synthetic.jsonl"}, "repeats": repeats,
        "candidates": [{"name": c, "base_url": "http://127.0.0.1:9/v1", "model": c}
                       for c in CANDIDATES],
        "judges": [{"name": "judge", "base_url": "http://127.0.0.1:9/v1", "model": "judge"}],
    })  # fmt: skip
    store = RunStore(run_dir)
    store.set_meta("config", config.model_dump(mode="json"))
    store.set_meta("name", config.name)
    store.set_meta("status", "complete")

    def sentence(n: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(n))

    store.save_questions(
        (i, QAItem(f"q{i:06d}", f"Question {i}: {sentence(12)}?", (sentence(3),),
                   f"Context {i}. {sentence(60)}."))
        for i in range(n_questions)
    )  # fmt: skip
    with store._transaction():  # one transaction for speed; the rows are the run's own
        for i in range(n_questions):
            qid = f"q{i:06d}"
            for name in CANDIDATES:
                failed = rng.random() < 0.01
                words = rng.randint(10, 60)
                store.put_answer(
                    Answer(qid, name, None if failed else sentence(words), latency_s=1.0,
                           ttft_s=0.2, words=None if failed else words,
                           words_per_second=None if failed else words, completion_tokens=words,
                           error="HTTP 500: synthetic" if failed else None),
                    "fp",
                )  # fmt: skip
            for repeat in range(repeats):
                order = list(CANDIDATES)
                rng.shuffle(order)
                if rng.random() < 0.005:
                    store.put_judgment(
                        Judgment(
                            qid,
                            repeat,
                            "judge",
                            tuple(order),
                            "nonsense",
                            error="not a permutation",
                            attempts=3,
                        ),
                        "fp",
                    )
                    continue
                ranking = order[:]
                rng.shuffle(ranking)
                ranks = {name: float(k + 1) for k, name in enumerate(ranking)}
                raw = json.dumps({"ranking": [order.index(n) + 1 for n in ranking]})
                store.put_judgment(Judgment(qid, repeat, "judge", tuple(order), raw, ranks,
                                            mode="json_schema"), "fp")  # fmt: skip
    store.close()


def get(base: str, path: str) -> tuple[float, int, dict]:
    started = time.perf_counter()
    with urllib.request.urlopen(base + path, timeout=600) as response:
        body = response.read()
    return (time.perf_counter() - started) * 1000, len(body), json.loads(body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=100_000)
    parser.add_argument("--dir", type=Path)
    args = parser.parse_args(argv)
    run_dir = args.dir or Path(f"/tmp/raq-view-bench-{args.questions}")
    if not (run_dir / "raq.sqlite").exists():
        started = time.perf_counter()
        build(run_dir, args.questions)
        print(f"built {args.questions} questions in {time.perf_counter() - started:.1f} s "
              f"({(run_dir / 'raq.sqlite').stat().st_size / 1e6:.0f} MB)")  # fmt: skip
    viewer = subprocess.Popen(
        [sys.executable, "-m", "raq", "view", str(run_dir), "--no-browser"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert viewer.stdout is not None
        line = viewer.stdout.readline()
        base = re.search(r"http://\S+/", line).group(0).rstrip("/")  # type: ignore[union-attr]
        serving = time.perf_counter()
        last = args.questions - 50
        steps = [
            ("overview (/api/runs)", "/api/runs"),
            ("list, first page", "/api/questions?filter=all&offset=0&limit=50"),
            ("list, last page", f"/api/questions?filter=all&offset={last}&limit=50"),
            ("filter disagree, first use", "/api/questions?filter=disagree&a=alpha&b=bravo"),
            ("filter disagree, page 1000", "/api/questions?filter=disagree&a=alpha&b=bravo"
             "&offset=50000"),
            ("filter repeats, first use", "/api/questions?filter=repeats"),
            ("filter failed answers, first use", "/api/questions?filter=failed"),
            ("filter judge failed, first use", "/api/questions?filter=judge_failed"),
            ("search 'paris tokyo blue' (scan: no index yet)",
             "/api/questions?filter=search&q=paris+tokyo+blue"),
            ("question page", "/api/question?id=q050000"),
        ]  # fmt: skip
        for label, path in steps:
            ms, size, body = get(base, path)
            total = body.get("total", "")
            print(f"{label:48s} {ms:9.1f} ms  {size / 1000:7.1f} kB  {total}")
        while get(base, "/api/runs")[2]["runs"][0]["search"] != "index":
            time.sleep(0.5)
        ready = time.perf_counter() - serving
        print(f"{'search index ready, after the server started':48s} {ready:9.1f} s")
        for label, path in [
            ("search 'paris tokyo blue' (index), first use",
             "/api/questions?filter=search&q=paris+tokyo+blue"),
            ("search, next page", "/api/questions?filter=search&q=paris+tokyo+blue&offset=50"),
            ("search 'ocean mountain history' (index)",
             "/api/questions?filter=search&q=ocean+mountain+history"),
        ]:  # fmt: skip
            ms, size, body = get(base, path)
            print(f"{label:48s} {ms:9.1f} ms  {size / 1000:7.1f} kB  {body.get('total', '')}")
        status = Path(f"/proc/{viewer.pid}/status")
        if status.exists():  # Linux: the viewer process's peak resident memory
            peak = re.search(r"VmHWM:\s+(\d+) kB", status.read_text())
            print(f"{'viewer peak resident memory':48s} {int(peak.group(1)) / 1000:9.0f} MB")
    finally:
        viewer.terminate()
        viewer.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
