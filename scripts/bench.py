"""raq's performance benchmark: real evaluations against a loopback fake OpenAI server.

    python scripts/bench.py                    # every scenario (about 6 minutes on 2 cores)
    python scripts/bench.py --quick            # a smaller version of each
    python scripts/bench.py --scenario timing  # one scenario (repeat the flag for more)
    python scripts/bench.py --repeat 3         # each row 3 times, keep the median, show spread
    python scripts/bench.py --scenario instant-stream --profile   # + cProfile of each row
    python scripts/bench.py --scenario custom --latency-s 0.5 --ttft-s 0.1 --concurrency 128

Every row runs in two fresh processes: the fake server (raq.testing.fake_server's
FakeOpenAIServer, with configurable latency, TTFT and token rate, and a judge model that
answers {"ranking": [...]}) and the client (a real ``raq.pipeline.run.evaluate_async`` with the
response cache off, or a bare request loop for the reference rows). Separate processes keep
the server's CPU out of the client's CPU measurement and make peak RSS a per-row number.
Pipeline rows time ``Pipeline.run`` — the stage that sends the requests — and report the
run's fixed set-up/finalize time separately ("run total").

Columns: requests sent (client counters), concurrency, wall time, ideal wall time
(sum of request latencies / concurrency, plus the judge stage's critical path: the last
question's judgment starts only after its answers), their ratio, requests/s, client CPU per
request (time.process_time of the client process over the measured phase), server CPU per
request (from /proc), peak RSS of the client process (VmHWM), the pipeline's own peak RSS
growth, the median of measured minus injected TTFT and latency (read from the run's
answers), and the CPU that other processes ("other procs") and the hypervisor ("steal")
took during the row, in cores: rows where those are high are not clean measurements.
Results are measurements, never asserted. See scripts/BENCH.md for a recorded run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing as mp
import os
import platform
import re
import resource
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

WORDS = 37  # words in every streamed candidate answer
CANDIDATES = ("cand-a", "cand-b")
JUDGE_MODEL = "judge"
# The fake server streams a reply as one chunk per word (its _PIECE regex), so a stream of
# n pieces ends (n - 1) / tokens_per_s after its first content chunk when paced by rate.
_PIECE = re.compile(r"\s*\S+\s*")


@dataclass(frozen=True)
class Row:
    """One line of the table: what to run and against which server behaviour."""

    scenario: str
    name: str
    kind: str  # pipeline | chat | aiohttp | openai
    count: int  # questions for pipeline rows, requests for the others
    concurrency: int
    judge: str = "reference"  # reference | llm (pipeline rows)
    latency_s: float = 0.0
    ttft_s: float | None = None
    tokens_per_s: float | None = None
    judge_latency_s: float | None = None  # default: latency_s
    warmup: int = 0  # unmeasured requests before a direct row
    cache: bool = False  # pipeline rows: a fresh response cache, as a first run by default
    # The server's token bucket (requests/s, size); beyond it 429 with Retry-After, and with
    # rate_headers OpenAI's x-ratelimit-*-requests on every response.
    rate_limit_per_s: float | None = None
    rate_burst: float = 1.0
    rate_headers: bool = False
    schedule: str = "interleaved"  # pipeline rows: the run config's schedule


@dataclass
class Result:
    row: Row
    requests: int = 0
    answers: int = 0
    judgments: int = 0
    errors: int = 0
    wall_s: float = math.nan
    total_s: float = math.nan  # pipeline rows: whole evaluate_async (set-up + finalize)
    ideal_s: float = math.nan
    client_cpu_s: float = math.nan
    total_cpu_s: float = math.nan
    server_cpu_s: float = math.nan
    system_busy_s: float = math.nan  # every process on the machine, over the measured phase
    steal_s: float = math.nan  # CPU the hypervisor gave to other machines, same phase
    peak_rss_mb: float = math.nan
    pipeline_rss_mb: float = math.nan  # peak RSS during the pipeline minus RSS at its start
    phase_peaks_mb: dict[str, float] = field(default_factory=dict)  # set-up, pipeline, finalize
    ttft_err_ms: float | None = None
    latency_err_ms: float | None = None
    ttft_p90_err_ms: float | None = None
    latency_p90_err_ms: float | None = None
    profile: str = ""
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.wall_s / self.ideal_s if self.ideal_s > 0 else math.nan

    @property
    def per_s(self) -> float:
        return self.requests / self.wall_s if self.wall_s > 0 else math.nan

    @property
    def other_load(self) -> float:
        """CPU used by processes other than this row's client and server, in cores."""
        other = self.system_busy_s - self.client_cpu_s - self.server_cpu_s
        return max(0.0, other) / self.wall_s if self.wall_s > 0 else math.nan

    @property
    def steal(self) -> float:
        """CPU the hypervisor withheld from this machine, in cores."""
        return self.steal_s / self.wall_s if self.wall_s > 0 else math.nan

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.client_cpu_s / self.requests if self.requests else math.nan

    @property
    def server_cpu_ms(self) -> float:
        return 1000 * self.server_cpu_s / self.requests if self.requests else math.nan


# ---------------------------------------------------------------------------------------------
# Scenarios


def scenarios(quick: bool, custom: argparse.Namespace | None = None) -> dict[str, list[Row]]:
    q = 0.25 if quick else 1.0

    def n(value: int) -> int:
        return max(50, int(value * q))

    timing: dict[str, Any] = {"latency_s": 0.2, "ttft_s": 0.05}
    # The scenario: 20 requests/s with a bucket of 5, 240 answers, no rate in the config.
    limited: dict[str, Any] = {"latency_s": 0.1, "rate_limit_per_s": 20.0, "rate_burst": 5.0}
    instant = n(1000)  # questions; two candidates → 2× answers
    direct = 2 * instant
    rows = {
        "instant-stream": [
            Row("instant-stream", "pipeline", "pipeline", instant, 32),
            Row("instant-stream", "pipeline+llm-judge", "pipeline", instant, 32, judge="llm"),
            Row("instant-stream", "pipeline, cache on", "pipeline", instant, 32, cache=True),
            Row("instant-stream", "ChatClient.chat", "chat", direct, 32, warmup=64),
            Row("instant-stream", "raw aiohttp floor", "aiohttp", direct, 32, warmup=64),
            Row("instant-stream", "openai SDK", "openai", direct, 32, warmup=64),
        ],
        "latency-64": [
            Row("latency-64", "pipeline", "pipeline", n(2500), 64, latency_s=0.1),
            Row("latency-64", "pipeline+llm-judge", "pipeline", n(2500), 64, "llm", 0.1),
            Row(
                "latency-64",
                "pipeline, cache on",
                "pipeline",
                n(2500),
                64,
                latency_s=0.1,
                cache=True,
            ),
            # The pipeline row as a user runs it: the whole `raq run` command, process to exit.
            Row("latency-64", "raq run (command)", "command", n(2500), 64, latency_s=0.1),
        ],
        "latency-256": [
            Row("latency-256", "pipeline", "pipeline", n(2500), 256, latency_s=0.1),
            Row("latency-256", "pipeline+llm-judge", "pipeline", n(2500), 256, "llm", 0.1),
            Row("latency-256", "ChatClient.chat", "chat", 2 * n(2500), 256, latency_s=0.1),
            Row("latency-256", "raw aiohttp floor", "aiohttp", 2 * n(2500), 256, latency_s=0.1),
        ],
        "timing": [
            Row("timing", "pipeline", "pipeline", n(320), 32, **timing),
            Row("timing", "ChatClient.chat", "chat", 2 * n(320), 32, **timing),
            Row("timing", "raw aiohttp floor", "aiohttp", 2 * n(320), 32, **timing),
            Row("timing", "pipeline c=8", "pipeline", n(80), 8, **timing),
        ],
        "rate-limit": [
            Row("rate-limit", "pipeline, 429 + Retry-After", "pipeline", 120, 32, **limited),
            Row(
                "rate-limit",
                "pipeline, + x-ratelimit headers",
                "pipeline",
                120,
                32,
                rate_headers=True,
                **limited,
            ),
            # A hosted endpoint answering at once (429s are instant anyway): no answer latency
            # to slow the pacer's ramp down.
            Row(
                "rate-limit",
                "pipeline, 429 + Retry-After, instant answers",
                "pipeline",
                120,
                32,
                **{**limited, "latency_s": 0.0},
            ),
        ],
        "schedule": [
            Row("schedule", "interleaved", "pipeline", n(500), 32, "llm", 0.1),
            Row("schedule", "phased", "pipeline", n(500), 32, "llm", 0.1, schedule="phased"),
        ],
        "memory": [
            Row("memory", f"pipeline {n(1000):,} q", "pipeline", n(1000), 32, judge="llm"),
            Row("memory", f"pipeline {10 * n(1000):,} q", "pipeline", 10 * n(1000), 32, "llm"),
            Row("memory", f"pipeline {100 * n(1000):,} q", "pipeline", 100 * n(1000), 32, "llm"),
        ],
    }
    if custom is not None:
        rows["custom"] = [
            Row(
                "custom",
                "pipeline",
                "pipeline",
                custom.questions,
                custom.concurrency,
                judge=custom.judge,
                latency_s=custom.latency_s,
                ttft_s=custom.ttft_s,
                tokens_per_s=custom.tokens_per_s,
            )
        ]
    return rows


def injected_stream(row: Row) -> tuple[float, float]:
    """(TTFT, latency) the server injects into a streamed answer, as FakeOpenAIServer does."""
    from raq.testing.fake_server import fixed_text

    ttft = row.ttft_s if row.ttft_s is not None else row.latency_s
    if row.tokens_per_s:
        pieces = len(_PIECE.findall(fixed_text(WORDS)))
        return ttft, ttft + (pieces - 1) / row.tokens_per_s
    return ttft, max(ttft, row.latency_s)


def ideal_wall(row: Row, answers: int, judge_requests: int) -> float:
    """Request-seconds over the concurrency, plus the judge's critical path after the answers."""
    _, latency = injected_stream(row)
    judge_latency = row.judge_latency_s if row.judge_latency_s is not None else row.latency_s
    busy = answers * latency + judge_requests * judge_latency
    tail = judge_latency if judge_requests else 0.0
    ideal = busy / row.concurrency + tail
    if row.rate_limit_per_s:  # the bucket's tokens, then one request per refill, answered
        paced = (answers + judge_requests - row.rate_burst) / row.rate_limit_per_s + latency
        ideal = max(ideal, paced)
    return ideal


# ---------------------------------------------------------------------------------------------
# Server process


def _server_main(conn: Any, row: Row) -> None:
    """Serve the candidates (streamed fixed text) and a judge that ranks in presented order."""
    with contextlib.suppress(ImportError):
        import uvloop  # the fake server's thread loop comes from the policy

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    from raq.testing.fake_server import (
        Behaviour,
        FakeOpenAIServer,
        RateLimit,
        fixed_text,
        judge_presented_order,
        reply_text,
    )

    timing = {"latency_s": row.latency_s, "ttft_s": row.ttft_s, "tokens_per_s": row.tokens_per_s}
    answer = Behaviour(reply=reply_text(fixed_text(WORDS)), **timing)
    judge_latency = row.judge_latency_s if row.judge_latency_s is not None else row.latency_s
    judge = Behaviour(reply=judge_presented_order(), latency_s=judge_latency)
    behaviours = {CANDIDATES[0]: answer, CANDIDATES[1]: Behaviour(reply=_half_right, **timing)}
    behaviours[JUDGE_MODEL] = judge
    limit = None
    if row.rate_limit_per_s:
        limit = RateLimit(row.rate_limit_per_s, row.rate_burst, headers=row.rate_headers)
    server = FakeOpenAIServer(
        behaviours, default=answer, log_requests=False, rate_limit=limit
    ).start()
    conn.send(server.base_url)
    with contextlib.suppress(EOFError, KeyboardInterrupt):
        while conn.recv() != "stop":
            pass
    with contextlib.suppress(BrokenPipeError):
        conn.send((server.count(), limit.refused if limit else 0, server.model_switches()))
    server.stop()


_MILL = re.compile(r"mill number (\d+)")


def _half_right(body: dict[str, Any]) -> str:
    """The second candidate: the first's words, ending in a reference answer on the questions
    with an even mill number. The reference judge then ranks it first on half the questions
    and ties the rest, so the outputs are those of a real difference (p-values, every plot
    drawn), not of two identical candidates; its answers are as long as the first's."""
    from raq.testing.fake_server import fixed_text

    text = fixed_text(WORDS)
    found = _MILL.search(str(body["messages"][-1]["content"]))
    if found is None or int(found.group(1)) % 2:
        return text
    return " ".join(text.split(" ")[:-3]) + " the old town."


# ---------------------------------------------------------------------------------------------
# Measurements


def _proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads), from /proc; NaN elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return math.nan


def _system_cpu_s() -> tuple[float, float]:
    """(busy, steal): CPU seconds all CPUs spent busy in this machine, and stolen by the
    hypervisor, since boot (/proc/stat). Steal is CPU a virtual machine did not get."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return math.nan, math.nan
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


def _status_kb(key: str) -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return float(line.split()[1])
    except OSError:
        pass
    return math.nan


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux: write 5 to clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    hwm = _status_kb("VmHWM")
    if math.isnan(hwm):
        hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return hwm / 1024


def _median_err_ms(values: list[float], injected: float, q: float = 0.5) -> float | None:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return None
    if q == 0.5:
        return 1000 * (statistics.median(values) - injected)
    return 1000 * (statistics.quantiles(values, n=10)[8] - injected)


class _Profile:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.profiler: Any = None

    def start(self) -> None:
        if self.enabled:
            import cProfile

            self.profiler = cProfile.Profile()
            self.profiler.enable()

    def stop(self) -> str:
        if self.profiler is None:
            return ""
        self.profiler.disable()
        import io
        import pstats

        out = io.StringIO()
        stats = pstats.Stats(self.profiler, stream=out)
        stats.strip_dirs()
        out.write("--- by internal time (tottime) ---\n")
        stats.sort_stats("tottime").print_stats(25)
        out.write("--- by cumulative time ---\n")
        stats.sort_stats("cumulative").print_stats(40)
        self.profiler = None
        return out.getvalue()


_CONTEXT_TEXT = (
    "the river basin holds seven old towns whose mills ground grain for the county until "
    "steam arrived and the canal company bought the water rights in eighteen forty"
)


def _write_dataset(path: Path, n: int) -> None:
    """n SQuAD-shaped questions with a ~60-word context each."""
    words = _CONTEXT_TEXT.split(" ")
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            context = " ".join(words[(i + j) % len(words)] for j in range(60)) + "."
            row = {
                "id": f"q{i:06d}",
                "question": f"Which town in the basin had mill number {i}?",
                "context": context,
                "answers": {"text": [f"town {i % 7}", "the old town"]},
            }
            f.write(json.dumps(row) + "\n")


def _body(i: int) -> dict[str, Any]:
    from raq.config import ARTICLE_ANSWER_PROMPT

    prompt = ARTICLE_ANSWER_PROMPT.replace("{context}", "the river basin holds seven towns " * 9)
    prompt = prompt.replace("{question}", f"Which town had mill number {i}?")
    return {
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0.0,
        "max_tokens": 64,
    }


def _client_main(conn: Any, row: Row, base_url: str, server_pid: int, workdir: str) -> None:
    os.environ.setdefault("HF_DATASETS_CACHE", str(Path(workdir) / "hf-cache"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    # All answers are identical, so the statistics divide by zero ties; not the bench's concern.
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    profile = _Profile(os.environ.get("RAQ_BENCH_PROFILE") == "1")
    try:
        if row.kind == "pipeline":
            result = asyncio.run(_run_pipeline(row, base_url, server_pid, Path(workdir), profile))
        elif row.kind == "command":
            result = _run_command(row, base_url, server_pid, Path(workdir))
        else:
            result = asyncio.run(_run_direct(row, base_url, server_pid, profile))
        # With the high-water mark reset per phase, the run's peak is the largest phase peak;
        # what the bench does afterwards (RunResult.answer_metrics, read from the store for
        # the TTFT errors) is not the run's memory.
        peaks = result.phase_peaks_mb.values()
        result.peak_rss_mb = max(peaks) if peaks else _peak_rss_mb()
        conn.send(result)
    except BaseException as exc:
        conn.send(f"{type(exc).__name__}: {exc}")
        raise


def _pipeline_config(row: Row, base_url: str, workdir: Path, dataset: Path) -> dict[str, Any]:
    """The run config of a pipeline row (and of the command row, which runs it as `raq run`)."""
    judges: list[dict[str, Any]] = [{"name": "f1", "kind": "reference"}]
    if row.judge == "llm":
        judges = [{"name": "judge", "base_url": base_url, "model": JUDGE_MODEL}]
    config = {
        "name": f"bench-{row.scenario}",
        "dataset": {"path": str(dataset), "limit": row.count},
        "candidates": [
            {
                "name": name,
                "base_url": base_url,
                "model": name,
                "params": {"temperature": 0.0, "max_tokens": 64},
            }
            for name in CANDIDATES
        ],
        "judges": judges,
        "repeats": 1,
        "concurrency": row.concurrency,
        "timeout_s": 60,
        "max_retries": 2,
        "env_file": None,
        "cache": {"enabled": row.cache, "path": str(workdir / "responses.sqlite")},
    }
    if row.schedule != "interleaved":
        config["schedule"] = row.schedule
    return config


def _run_command(row: Row, base_url: str, server_pid: int, workdir: Path) -> Result:
    """The pipeline row's run as a user starts it: ``python -m raq run -c CONFIG -q`` in a
    fresh process, timed from the start of that process to its exit (Python's start, raq's
    imports, datasets', staging, requests, outputs, the printed verdict, the exit)."""
    import compileall
    import subprocess

    import yaml

    import raq

    # raq's bytecode, as an installed raq has it (pip compiles a wheel at install): where the
    # environment sets PYTHONDONTWRITEBYTECODE, an editable install would compile its sources
    # at every command's start, 0.3 s that is no part of raq (scripts/BENCH.md, "third look").
    compileall.compile_dir(Path(raq.__file__).parent, quiet=1)

    dataset = workdir / f"questions-{row.count}.jsonl"
    _write_dataset(dataset, row.count)
    config_path = workdir / f"command-{row.scenario}.yaml"
    config_path.write_text(yaml.safe_dump(_pipeline_config(row, base_url, workdir, dataset)))
    out_dir = workdir / f"run-{row.scenario}-command"
    command = [sys.executable, "-m", "raq", "run", "-c", str(config_path), "-o", str(out_dir)]
    command += ["--no-preflight", "-q"] + ([] if row.cache else ["--no-cache"])
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    srv0, (sys0, steal0) = _proc_cpu_s(server_pid), _system_cpu_s()
    t0 = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=workdir, check=False)
    wall = time.perf_counter() - t0
    srv1, (sys1, steal1) = _proc_cpu_s(server_pid), _system_cpu_s()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"raq run exited {done.returncode}: {done.stderr.strip()[-500:]}")
    summary = json.loads((out_dir / "summary.json").read_text())
    requests = sum(c.get("requests", 0) for c in summary["requests"].values())
    answers = sum(1 for _ in (out_dir / "answers.jsonl").open())
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return Result(
        row=row,
        requests=requests,
        answers=answers,
        judgments=sum(j["judgments"] for j in summary["judges"].values()),
        wall_s=wall,
        total_s=wall,
        ideal_s=ideal_wall(row, answers, 0),
        client_cpu_s=cpu,
        total_cpu_s=cpu,
        server_cpu_s=srv1 - srv0,
        system_busy_s=sys1 - sys0,
        steal_s=steal1 - steal0,
        peak_rss_mb=after.ru_maxrss / 1024,
        note="wall = the whole command, from its process's start to its exit",
    )


async def _run_pipeline(
    row: Row, base_url: str, server_pid: int, workdir: Path, profile: _Profile
) -> Result:
    # Import everything the run will import, so the measured phases and RSS are the run's own.
    import datasets  # noqa: F401
    import pandas  # noqa: F401

    if row.scenario == "memory":
        # And what the run imports in the background during its requests (about 35 MB, once,
        # from 1 s in): otherwise the request stage of a run longer than that holds them and
        # one shorter does not, and the stage's growth with the number of questions is hidden
        # behind them. Only here: the timing rows pay for those imports, as a run does.
        import threading

        from raq.pipeline.outputs_ahead import _import_outputs

        _import_outputs(threading.Event())

    import raq.result
    import raq.stats  # noqa: F401
    from raq.pipeline import run as run_mod
    from raq.pipeline import schedule
    from raq.report import markdown  # noqa: F401

    dataset = workdir / f"questions-{row.count}.jsonl"
    _write_dataset(dataset, row.count)
    config = _pipeline_config(row, base_url, workdir, dataset)
    marks: dict[str, float] = {}
    marks_text: dict[str, str] = {}

    def begin() -> None:
        marks["hwm_setup"] = _status_kb("VmHWM")
        marks["reset"] = float(_reset_peak_rss())
        marks["rss0"] = _status_kb("VmRSS")
        marks["srv0"] = _proc_cpu_s(server_pid)
        marks["sys0"], marks["steal0"] = _system_cpu_s()
        marks["cpu0"] = time.process_time()
        marks["t0"] = time.perf_counter()
        profile.start()

    def end() -> None:
        marks["t1"] = time.perf_counter()
        marks["cpu1"] = time.process_time()
        marks["srv1"] = _proc_cpu_s(server_pid)
        marks["sys1"], marks["steal1"] = _system_cpu_s()
        marks["hwm1"] = _status_kb("VmHWM")
        _reset_peak_rss()
        marks_text["profile"] = profile.stop()

    # Time the stage that sends the requests (raq.pipeline.schedule.Pipeline.run); should it be
    # renamed, fall back to timing the whole evaluation and say so.
    pipeline_cls = getattr(schedule, "Pipeline", None)
    original = getattr(pipeline_cls, "run", None)
    if original is not None:

        async def timed_run(self: Any) -> None:
            begin()
            try:
                await original(self)
            finally:
                end()

        pipeline_cls.run = timed_run  # type: ignore[union-attr]
    t0, cpu0 = time.perf_counter(), time.process_time()
    try:
        if original is None:
            begin()
        result = await run_mod.evaluate_async(
            config,
            output=workdir / f"run-{row.scenario}-{row.name.replace(' ', '_')}",
            progress=False,
            use_cache=row.cache,
            preflight=False,
        )
        if original is None:
            end()
    finally:
        if original is not None:
            pipeline_cls.run = original  # type: ignore[union-attr]
    total_s, total_cpu = time.perf_counter() - t0, time.process_time() - cpu0
    peaks = {
        "set-up": marks["hwm_setup"] / 1024,
        "pipeline": marks["hwm1"] / 1024,
        "finalize": _status_kb("VmHWM") / 1024,
    }

    summary = result.summary_json
    requests = sum(c.get("requests", 0) for c in summary["requests"].values())
    frame = result.answer_metrics
    ok = frame[frame["ok"]]
    judgments = sum(j["judgments"] for j in summary["judges"].values())
    judge_requests = requests - len(frame)
    failed = sum(j["failed_judgments"] for j in summary["judges"].values())
    ttft_in, latency_in = injected_stream(row)
    out = Result(
        row=row,
        requests=requests,
        answers=len(frame),
        judgments=judgments,
        errors=int(len(frame) - len(ok)) + failed,
        wall_s=marks["t1"] - marks["t0"],
        total_s=total_s,
        ideal_s=ideal_wall(row, len(frame), judge_requests if row.judge == "llm" else 0),
        client_cpu_s=marks["cpu1"] - marks["cpu0"],
        total_cpu_s=total_cpu,
        server_cpu_s=marks["srv1"] - marks["srv0"],
        system_busy_s=marks["sys1"] - marks["sys0"],
        steal_s=marks["steal1"] - marks["steal0"],
        pipeline_rss_mb=(marks["hwm1"] - marks["rss0"]) / 1024 if marks["reset"] else math.nan,
        phase_peaks_mb=peaks if marks["reset"] else {},
        ttft_err_ms=_median_err_ms(list(ok["ttft_s"]), ttft_in),
        latency_err_ms=_median_err_ms(list(ok["latency_s"]), latency_in),
        ttft_p90_err_ms=_median_err_ms(list(ok["ttft_s"]), ttft_in, 0.9),
        latency_p90_err_ms=_median_err_ms(list(ok["latency_s"]), latency_in, 0.9),
        profile=marks_text.get("profile", ""),
        note=""
        if original is not None
        else "raq.pipeline.schedule.Pipeline.run not found: timed whole run",
    )
    out.extra["judge_requests"] = judge_requests
    return out


async def _run_direct(row: Row, base_url: str, server_pid: int, profile: _Profile) -> Result:
    """ChatClient.chat, a raw aiohttp loop, or the openai SDK: n streamed requests, c workers."""
    timings: list[tuple[float | None, float]] = []
    errors = 0
    if row.kind == "chat":
        from raq.endpoints.client import ChatClient
        from raq.endpoints.endpoint import Endpoint

        endpoint = Endpoint(name=CANDIDATES[0], base_url=base_url, model=CANDIDATES[0])
        client = ChatClient(concurrency=row.concurrency, timeout_s=60, max_retries=2)
        await client.__aenter__()

        async def one(i: int) -> tuple[str, float | None, float]:
            completion = await client.chat(endpoint, _body(i), stream=True)
            return completion.text, completion.ttft_s, completion.latency_s

        async def close() -> None:
            await client.__aexit__(None, None, None)

    elif row.kind == "aiohttp":
        import aiohttp

        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=row.concurrency),
            timeout=aiohttp.ClientTimeout(total=60),
        )
        url = f"{base_url}/chat/completions"
        loads = json.loads

        async def one(i: int) -> tuple[str, float | None, float]:
            payload = {**_body(i), "model": CANDIDATES[0], "stream": True}
            started = time.perf_counter()
            ttft, parts = None, []
            async with session.post(url, json=payload) as response:
                async for line in response.content:
                    if not line.startswith(b"data: "):
                        continue
                    data = line[6:].strip()
                    if data == b"[DONE]":
                        continue  # read to the body's end, or aiohttp will not pool the connection
                    for choice in loads(data)["choices"]:
                        text = choice["delta"].get("content")
                        if text:
                            if ttft is None:
                                ttft = time.perf_counter() - started
                            parts.append(text)
            return "".join(parts), ttft, time.perf_counter() - started

        async def close() -> None:
            await session.close()

    elif row.kind == "openai":
        from openai import AsyncOpenAI

        sdk = AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0, timeout=60)

        async def one(i: int) -> tuple[str, float | None, float]:
            started = time.perf_counter()
            ttft, parts = None, []
            stream = await sdk.chat.completions.create(
                model=CANDIDATES[0],
                stream=True,
                stream_options={"include_usage": True},
                **_body(i),
            )
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    if ttft is None:
                        ttft = time.perf_counter() - started
                    parts.append(chunk.choices[0].delta.content)
            return "".join(parts), ttft, time.perf_counter() - started

        async def close() -> None:
            await sdk.close()

    else:
        raise ValueError(f"unknown row kind {row.kind!r}")

    async def drive(n: int, record: bool) -> None:
        nonlocal errors
        counter = iter(range(n))

        async def worker() -> None:
            nonlocal errors
            for i in counter:
                try:
                    text, ttft, latency = await one(i)
                except Exception:
                    errors += 1
                    continue
                if record:
                    timings.append((ttft, latency))
                    if not text:
                        errors += 1

        await asyncio.gather(*(worker() for _ in range(min(row.concurrency, n))))

    try:
        if row.warmup:
            await drive(row.warmup, record=False)
            errors = 0
        srv0, (sys0, steal0) = _proc_cpu_s(server_pid), _system_cpu_s()
        cpu0, t0 = time.process_time(), time.perf_counter()
        profile.start()
        await drive(row.count, record=True)
        text = profile.stop()
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        srv, (sys1, steal1) = _proc_cpu_s(server_pid) - srv0, _system_cpu_s()
    finally:
        await close()
    ttft_in, latency_in = injected_stream(row)
    ttfts = [t for t, _ in timings if t is not None]
    latencies = [latency for _, latency in timings]
    return Result(
        row=row,
        requests=row.count,
        answers=len(timings),
        errors=errors,
        wall_s=wall,
        ideal_s=ideal_wall(row, row.count, 0),
        client_cpu_s=cpu,
        server_cpu_s=srv,
        system_busy_s=sys1 - sys0,
        steal_s=steal1 - steal0,
        ttft_err_ms=_median_err_ms(ttfts, ttft_in),
        latency_err_ms=_median_err_ms(latencies, latency_in),
        ttft_p90_err_ms=_median_err_ms(ttfts, ttft_in, 0.9),
        latency_p90_err_ms=_median_err_ms(latencies, latency_in, 0.9),
        profile=text,
    )


# ---------------------------------------------------------------------------------------------
# Orchestration


def wait_for_quiet(max_wait_s: float, threshold: float = 0.15) -> tuple[float, float]:
    """Wait (up to max_wait_s) until the machine's busy CPU drops below threshold cores.

    Returns (seconds waited, the last measured load in cores). On a shared machine other
    processes take CPU from both the client and the server and distort every column.
    """
    started = time.monotonic()
    while True:
        before = _system_cpu_s()[0]
        time.sleep(1.0)
        load = _system_cpu_s()[0] - before
        waited = time.monotonic() - started - 1.0
        if math.isnan(load) or load < threshold or waited >= max_wait_s:
            return waited, load


def run_row(row: Row, workdir: Path, profile: bool) -> Result:
    ctx = mp.get_context("spawn")
    server_conn, server_end = ctx.Pipe()
    server = ctx.Process(target=_server_main, args=(server_end, row), daemon=True)
    server.start()
    try:
        if not server_conn.poll(60):
            raise RuntimeError("the fake server did not start within 60 s")
        base_url = server_conn.recv()
        client_conn, client_end = ctx.Pipe()
        if profile:
            os.environ["RAQ_BENCH_PROFILE"] = "1"
        try:
            client = ctx.Process(
                target=_client_main, args=(client_end, row, base_url, server.pid, str(workdir))
            )
            client.start()
        finally:
            os.environ.pop("RAQ_BENCH_PROFILE", None)
        try:
            outcome = client_conn.recv()
        except EOFError:
            outcome = f"the client process died (exit code {client.exitcode})"
        client.join(30)
        if isinstance(outcome, str):
            raise RuntimeError(f"{row.scenario} / {row.name}: {outcome}")
        server_conn.send("stop")
        if server_conn.poll(15):
            count, refused, switches = server_conn.recv()
            outcome.extra["refused"] = refused
            outcome.extra["model_switches"] = switches
            expected = outcome.requests + outcome.row.warmup
            if count != expected:
                outcome.note += f" server counted {count} requests, client {expected}"
        return outcome
    finally:
        server.join(15)
        if server.is_alive():
            server.terminate()
            server.join(5)


def pick_median(runs: list[Result]) -> Result:
    """The run with the median wall time, noting the spread of the others."""
    if len(runs) == 1:
        return runs[0]
    ordered = sorted(runs, key=lambda r: r.wall_s)
    chosen = ordered[(len(ordered) - 1) // 2]
    rates = [r.per_s for r in runs]
    cpus = [r.cpu_ms for r in runs]
    chosen.note += (
        f" median of {len(runs)} runs by wall time; req/s {min(rates):,.0f}–{max(rates):,.0f},"
        f" client CPU {min(cpus):.3f}–{max(cpus):.3f} ms/req"
    )
    if chosen.row.scenario == "timing":
        errs = [r.ttft_err_ms for r in runs if r.ttft_err_ms is not None]
        chosen.note += f", TTFT err {min(errs):+.1f}–{max(errs):+.1f} ms"
    if chosen.ideal_s > 0:
        ratios = [r.ratio for r in runs]
        chosen.note += f", ratio {min(ratios):.2f}–{max(ratios):.2f}"
        totals = sorted(r.total_s for r in runs if not math.isnan(r.total_s))
        if totals:
            median = totals[(len(totals) - 1) // 2]
            chosen.note += (
                f", run total {totals[0]:.2f}–{totals[-1]:.2f} s (median {median:.2f} s = "
                f"{median / chosen.ideal_s:.2f}× ideal)"
            )
    return chosen


def _fmt(value: float | None, spec: str = ".2f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return format(value, spec)


COLUMNS = [
    "scenario",
    "row",
    "judge",
    "requests",
    "conc",
    "wall s",
    "ideal s",
    "ratio",
    "req/s",
    "client CPU ms/req",
    "server CPU ms/req",
    "peak RSS MB",
    "pipeline ΔRSS MB",
    "TTFT err ms",
    "latency err ms",
    "run total s",
    "other procs",
    "steal",
]


def table_rows(results: list[Result]) -> list[list[str]]:
    rows = []
    for r in results:
        judge = {"pipeline": r.row.judge, "command": r.row.judge}.get(r.row.kind, "none")
        if judge == "llm":
            judge = "llm (fake)"
        errors = f" ({r.errors} errors)" if r.errors else ""
        rows.append(
            [
                r.row.scenario,
                r.row.name + errors,
                judge,
                f"{r.requests:,}",
                str(r.row.concurrency),
                _fmt(r.wall_s),
                _fmt(r.ideal_s) if r.ideal_s > 0 else "—",
                _fmt(r.ratio),
                _fmt(r.per_s, ",.0f"),
                _fmt(r.cpu_ms, ".3f"),
                _fmt(r.server_cpu_ms, ".3f"),
                _fmt(r.peak_rss_mb, ".0f"),
                _fmt(r.pipeline_rss_mb, ".1f"),
                _fmt(r.ttft_err_ms, "+.1f"),
                _fmt(r.latency_err_ms, "+.1f"),
                _fmt(r.total_s),
                _fmt(r.other_load, ".2f"),
                _fmt(r.steal, ".2f"),
            ]
        )
    return rows


def print_table(results: list[Result]) -> None:
    rows = table_rows(results)
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(COLUMNS)]
        print("  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True)))
        for r in rows:
            print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))
        return
    table = Table(title="raq benchmark (loopback fake server in its own process)")
    for i, column in enumerate(COLUMNS):
        table.add_column(column, justify="left" if i < 3 else "right")
    for r in rows:
        table.add_row(*r)
    Console(width=max(200, Console().width)).print(table)


def markdown_table(results: list[Result]) -> str:
    rows = table_rows(results)
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _find(results: list[Result], scenario: str, name: str) -> Result | None:
    for r in results:
        if r.row.scenario == scenario and r.row.name.startswith(name):
            return r
    return None


def _bound(r: Result) -> str:
    """What limits a row: the busier process, or latency when neither is near a full core."""
    client = r.client_cpu_s / r.wall_s
    server = r.server_cpu_s / r.wall_s
    busiest = max(client, server)
    kind = "CPU-bound" if busiest > 0.85 else "not CPU-saturated"
    other = f", other processes {r.other_load:.0%}" if r.other_load > 0.05 else ""
    if r.steal > 0.05:
        other += f", hypervisor steal {r.steal:.0%}"
    return f"{kind}: client CPU {client:.0%} of a core, server CPU {server:.0%} of a core{other}"


def goals(results: list[Result]) -> list[tuple[str, bool | None, str]]:
    out: list[tuple[str, bool | None, str]] = []
    r = _find(results, "instant-stream", "pipeline")
    if r is not None:
        ok = r.per_s >= 800 and r.cpu_ms <= 1.25
        out.append(
            (
                "instant-stream: ≥ 800 answers/s and client CPU ≤ 1.25 ms/answer (pipeline)",
                ok,
                f"{r.per_s:,.0f} answers/s, {r.cpu_ms:.3f} ms CPU/answer; {_bound(r)}",
            )
        )
    r = _find(results, "instant-stream", "pipeline, cache on")
    if r is not None:
        out.append(
            (
                "instant-stream (pipeline, cache on: the default config's first run)",
                None,
                f"{r.per_s:,.0f} answers/s, {r.cpu_ms:.3f} ms CPU/answer; {_bound(r)}",
            )
        )
    for name in ("pipeline", "pipeline+llm-judge", "pipeline, cache on"):
        r = _find(results, "latency-64", name)
        if r is not None and r.row.name == name:
            out.append(
                (
                    f"latency-64 ({name}): wall ≤ 1.15× ideal",
                    r.ratio <= 1.15,
                    f"{r.wall_s:.2f} s vs ideal {r.ideal_s:.2f} s = {r.ratio:.3f}×; {_bound(r)}",
                )
            )
    r = _find(results, "latency-64", "pipeline")
    if r is not None and r.row.name == "pipeline":
        whole = r.total_s / r.ideal_s
        out.append(
            (
                "latency-64 (pipeline): the whole run (staging, requests, outputs) ≤ 1.15× ideal",
                whole <= 1.15,
                f"run total {r.total_s:.2f} s vs ideal {r.ideal_s:.2f} s = {whole:.3f}× "
                f"(requests {r.wall_s:.2f} s, the rest {r.total_s - r.wall_s:.2f} s)",
            )
        )
    r = _find(results, "latency-64", "raq run (command)")
    if r is not None and r.row.name == "raq run (command)":
        out.append(
            (
                "latency-64 (raq run, the command): the whole command ≤ 1.15× ideal",
                r.ratio <= 1.15,
                f"{r.wall_s:.2f} s from its process's start to its exit vs ideal "
                f"{r.ideal_s:.2f} s = {r.ratio:.3f}×",
            )
        )
    for r in results:
        if r.row.scenario == "latency-256":
            out.append(
                (
                    f"latency-256 ({r.row.name}): report ratio and bound",
                    None,
                    f"{r.ratio:.2f}× ideal ({r.wall_s:.2f} s vs {r.ideal_s:.2f} s), "
                    f"{r.per_s:,.0f} req/s; {_bound(r)}",
                )
            )
    for r in results:
        if r.row.scenario == "timing" and r.ttft_err_ms is not None:
            ok = abs(r.ttft_err_ms) <= 5 and abs(r.latency_err_ms or math.inf) <= 5
            out.append(
                (
                    f"timing ({r.row.name}, c={r.row.concurrency}): median TTFT and latency "
                    "within 5 ms of injected",
                    # The goal is raq's (pipeline rows); the direct rows are for comparison.
                    ok if r.row.kind == "pipeline" else None,
                    f"TTFT {r.ttft_err_ms:+.2f} ms (p90 {r.ttft_p90_err_ms:+.2f}), latency "
                    f"{r.latency_err_ms:+.2f} ms (p90 {r.latency_p90_err_ms:+.2f})",
                )
            )
    for r in results:
        if r.row.scenario == "rate-limit":
            refused = r.extra.get("refused", 0) / r.requests if r.requests else math.nan
            out.append(
                (
                    f"rate-limit ({r.row.name}): wall ≤ 1.10× ideal with ≤ 10% of requests refused",
                    r.ratio <= 1.10 and refused <= 0.10,
                    f"{r.wall_s:.2f} s vs ideal {r.ideal_s:.2f} s = {r.ratio:.3f}×; "
                    f"{r.extra.get('refused', 0)} of {r.requests} requests refused "
                    f"({refused:.1%}), {r.errors} failed answers",
                )
            )
    for r in results:
        if r.row.scenario == "schedule":
            out.append(
                (
                    f"schedule ({r.row.name}): model switches (reloads on a one-model server) "
                    "and wall time",
                    None,
                    f"{r.extra.get('model_switches', '?')} switches in {r.requests:,} requests; "
                    f"{r.wall_s:.2f} s vs ideal {r.ideal_s:.2f} s = {r.ratio:.3f}×, run total "
                    f"{r.total_s:.2f} s",
                )
            )
    mem = sorted((r for r in results if r.row.scenario == "memory"), key=lambda r: r.row.count)

    def phases(r: Result) -> str:
        return ", ".join(f"{k} {v:.0f}" for k, v in r.phase_peaks_mb.items())

    for large in mem[1:]:
        small = mem[0]
        extra = large.row.count - small.row.count
        growth = large.peak_rss_mb / small.peak_rss_mb - 1
        out.append(
            (
                f"memory (whole run): peak RSS flat from {small.row.count:,} to "
                f"{large.row.count:,} questions (< 10% growth)",
                growth < 0.10,
                f"{small.peak_rss_mb:.0f} → {large.peak_rss_mb:.0f} MB ({growth:+.1%}, "
                f"{1024 * (large.peak_rss_mb - small.peak_rss_mb) / extra:.2f} KB per extra "
                f"question); phase peaks MB: [{phases(small)}] → [{phases(large)}]",
            )
        )
        own = large.pipeline_rss_mb - small.pipeline_rss_mb
        out.append(
            (
                f"memory (pipeline stage, {large.row.count:,} questions): its own RSS growth "
                f"flat (the extra {extra:,} questions add < 10% of the smaller run's peak)",
                own < 0.10 * small.peak_rss_mb,
                f"ΔRSS during the pipeline {small.pipeline_rss_mb:.1f} → "
                f"{large.pipeline_rss_mb:.1f} MB ({own:+.1f} MB, {1024 * own / extra:.2f} KB "
                "per extra question)",
            )
        )
    return out


def machine() -> str:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (
        f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def code_state() -> str:
    """The commit measured, and which source files differ from it (results depend on them)."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    files = [line[3:] for line in changed if line.strip()]
    return f"{commit}" + (f" + uncommitted changes in {', '.join(files)}" if files else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller version of each scenario")
    parser.add_argument(
        "--scenario",
        action="append",
        help="run only this scenario (repeatable): instant-stream, latency-64, latency-256, "
        "timing, rate-limit, schedule, memory, custom",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile each client row")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="run every row N times and keep the median by wall time (notes give the spread)",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=20.0,
        metavar="S",
        help="before each row, wait up to S seconds for other processes to go idle (0: never)",
    )
    parser.add_argument("--markdown", type=Path, help="also write the table as Markdown here")
    parser.add_argument("--json", type=Path, help="also write the raw results as JSON here")
    custom = parser.add_argument_group("the custom scenario (--scenario custom)")
    custom.add_argument("--questions", type=int, default=500)
    custom.add_argument("--concurrency", type=int, default=32)
    custom.add_argument("--judge", choices=["reference", "llm"], default="reference")
    custom.add_argument("--latency-s", type=float, default=0.1)
    custom.add_argument("--ttft-s", type=float, default=None)
    custom.add_argument("--tokens-per-s", type=float, default=None)
    args = parser.parse_args(argv)

    table = scenarios(args.quick, args)
    chosen = args.scenario or [name for name in table if name != "custom"]
    unknown = [name for name in chosen if name not in table]
    if unknown:
        parser.error(f"unknown scenario {unknown[0]!r} (one of: {', '.join(table)})")
    rows = [row for name in chosen for row in table[name]]
    try:
        import openai  # noqa: F401
    except ImportError:
        rows = [r for r in rows if r.kind != "openai"]

    print(f"machine: {machine()}")
    print(f"code: {code_state()}")
    with contextlib.suppress(OSError):
        load = os.getloadavg()[0]
        if load > 0.5:
            print(
                f"WARNING: 1-minute load average is {load:.2f} before starting; "
                "other processes will distort the numbers"
            )
    print(f"rows: {len(rows)}{' (quick)' if args.quick else ''}; each in a fresh client process")
    results: list[Result] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="raq-bench-") as tmp:
        for row in rows:
            runs = []
            for attempt in range(args.repeat):
                label = f"{row.name} #{attempt + 1}" if args.repeat > 1 else row.name
                print(f"  {row.scenario:15} {label:28} ...", end="", flush=True)
                if args.wait_quiet > 0:
                    waited, load = wait_for_quiet(args.wait_quiet)
                    if waited > 0:
                        print(f" (waited {waited:.0f} s for quiet: {load:.2f} cores busy)", end="")
                t0 = time.perf_counter()
                result = run_row(row, Path(tmp), args.profile)
                runs.append(result)
                print(
                    f" {result.requests:,} requests, wall {result.wall_s:.2f} s, "
                    f"{result.cpu_ms:.3f} ms CPU/req, other load "
                    f"{result.other_load + result.steal:.2f} ({time.perf_counter() - t0:.0f} s)",
                    flush=True,
                )
            results.append(pick_median(runs))
    print(f"total bench time {time.perf_counter() - started:.0f} s\n")
    print_table(results)
    print(
        "wall = the pipeline stage that sends requests (direct rows: the measured loop); "
        "'run total' adds dataset loading, statistics and output files.\n"
        "CPU columns are process CPU time (user + system, all threads) over the measured phase."
    )
    for r in results:
        if r.note.strip():
            print(f"note: {r.row.scenario} / {r.row.name}: {r.note.strip()}")
    busy = [r for r in results if r.other_load + r.steal > 0.15]
    if busy:
        worst = max(busy, key=lambda r: r.other_load + r.steal)
        print(
            f"WARNING: other processes or the hypervisor took up to "
            f"{worst.other_load + worst.steal:.2f} cores during {len(busy)} row(s) "
            f"({worst.row.scenario} / {worst.row.name}); those rows are not clean "
            "measurements ('other procs' and 'steal' columns)."
        )
    print()
    for label, ok, detail in goals(results):
        status = "report" if ok is None else ("met" if ok else "NOT MET")
        print(f"[{status}] {label}: {detail}")
    if args.profile:
        for r in results:
            if r.profile:
                print(
                    f"\n===== cProfile: {r.row.scenario} / {r.row.name} "
                    f"(profiled: timings inflated) ====="
                )
                print(r.profile)
    if args.markdown:
        args.markdown.write_text(markdown_table(results) + "\n", encoding="utf-8")
    if args.json:
        data = [
            {
                **{k: v for k, v in asdict(r).items() if k != "profile"},
                "ratio": r.ratio,
                "per_s": r.per_s,
                "cpu_ms": r.cpu_ms,
                "server_cpu_ms": r.server_cpu_ms,
            }
            for r in results
        ]
        args.json.write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
