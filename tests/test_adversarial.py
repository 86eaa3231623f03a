"""Malformed input, table-driven: every case exits with its documented code, says what is wrong
in one stderr line that names the file, line or key, shows no traceback, and nothing raq wrote
(run directories, the cache, stdout, stderr) holds the test key.

Each case builds its inputs under ``in/`` and says which command to run; all cases run as real
``python -m raq`` processes, a few at a time, before the assertions.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from .conftest import raq_cli_env

KEY = "sk-adversarial-KEY-9d8e7f6a5b"
UNREACHABLE = "http://127.0.0.1:9/v1"  # the discard port: nothing listens


@dataclass(frozen=True)
class Case:
    """``build(root)`` writes the inputs and returns the raq arguments; ``names`` must all
    appear in the one stderr line; ``code`` is the documented exit code."""

    build: Callable[[Path], list[str]]
    names: tuple[str, ...]
    code: int = 2


CASES: dict[str, Case] = {}


def case(*names: str, code: int = 2) -> Callable:
    def register(build: Callable[[Path], list[str]]) -> Callable:
        CASES[build.__name__.removeprefix("case_")] = Case(build, names, code)
        return build

    return register


# ---------------------------------------------------------------------------------------------
# Inputs


def qa_rows(n: int = 3) -> list[dict]:
    return [
        {
            "id": f"q{i}",
            "question": f"Question {i}?",
            "context": "c",
            "answers": {"text": [f"a{i}"]},
        }
        for i in range(n)
    ]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def base_config(root: Path) -> dict:
    inputs = root / "in"
    inputs.mkdir(exist_ok=True)
    dataset = write_jsonl(inputs / "qa.jsonl", qa_rows())
    endpoint = {"base_url": UNREACHABLE, "api_key_env": "RAQ_ADV_KEY"}
    return {
        "name": "adv",
        "dataset": {"path": str(dataset)},
        "candidates": [
            endpoint | {"name": "a", "model": "a"},
            endpoint | {"name": "b", "model": "b"},
        ],
        "judges": [endpoint | {"name": "j", "model": "j"}],
        "cache": {"path": str(root / "cache.sqlite")},
        "env_file": None,
    }


def config_file(root: Path, config: dict | str | bytes, name: str = "config.yaml") -> Path:
    path = root / "in" / name
    path.parent.mkdir(exist_ok=True)
    if isinstance(config, dict):
        path.write_text(yaml.safe_dump(config, sort_keys=False))
    elif isinstance(config, bytes):
        path.write_bytes(config)
    else:
        path.write_text(config)
    return path


def run_with(root: Path, change: Callable[[dict], object], *extra: str) -> list[str]:
    config = base_config(root)
    change(config)
    return ["run", "-c", str(config_file(root, config)), "-o", str(root / "out"), "-q", *extra]


def ranks_file(root: Path, text: str | bytes) -> list[str]:
    path = root / "in" / "ranks.csv"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return ["stats", str(path)]


RANKS_HEAD = "question_id,repeat,judge,candidate,rank,position\n"
GOOD_RANKS = "q1,0,j,a,1,1\nq1,0,j,b,2,2\n"


def summary_dir(root: Path, content: str) -> Path:
    run = root / "in" / "run"
    run.mkdir(parents=True)
    (run / "summary.json").write_text(content)
    return run


# ---------------------------------------------------------------------------------------------
# Config files


@case("config.yaml", "config file not found")
def case_config_missing(root: Path) -> list[str]:
    return ["run", "-c", str(root / "config.yaml")]


@case("config.yaml", "not UTF-8")
def case_config_not_utf8(root: Path) -> list[str]:
    return ["run", "-c", str(config_file(root, b"name: \xff\xfe" + KEY.encode()))]


@case("config.yaml:2", "not valid YAML")
def case_config_not_yaml(root: Path) -> list[str]:
    return ["run", "-c", str(config_file(root, "name: x\n  bad: [unclosed\n"))]


@case("config.yaml", "mapping")
def case_config_a_list(root: Path) -> list[str]:
    return ["run", "-c", str(config_file(root, "- a\n- b\n"))]


@case("config.yaml", "mapping")
def case_config_empty(root: Path) -> list[str]:
    return ["run", "-c", str(config_file(root, ""))]


@case("config.yaml:2", "repeats", "duplicate key", "line 1")
def case_duplicate_top_level_key(root: Path) -> list[str]:
    text = yaml.safe_dump(base_config(root), sort_keys=False)
    return ["run", "-c", str(config_file(root, "repeats: 3\nrepeats: 5\n" + text))]


@case("config.yaml", "candidates[0].model", "duplicate key")
def case_duplicate_nested_key(root: Path) -> list[str]:
    text = yaml.safe_dump(base_config(root), sort_keys=False)
    text = text.replace("  model: a\n", "  model: a\n  model: b\n", 1)
    return ["run", "-c", str(config_file(root, text))]


@case("config.yaml", "candidates")
def case_misspelt_key(root: Path) -> list[str]:
    return run_with(root, lambda c: c.update(candidtes=c.pop("candidates")))


@case("config.yaml", "dataset", "missing")
def case_no_dataset(root: Path) -> list[str]:
    return run_with(root, lambda c: c.pop("dataset"))


@case("config.yaml", "candidates")
def case_one_candidate(root: Path) -> list[str]:
    return run_with(root, lambda c: c["candidates"].pop())


@case("config.yaml", "judges")
def case_no_judges(root: Path) -> list[str]:
    return run_with(root, lambda c: c.update(judges=[]))


@case("config.yaml", "repeats")
def case_zero_repeats(root: Path) -> list[str]:
    return run_with(root, lambda c: c.update(repeats=0))


@case("config.yaml", "repeats")
def case_text_repeats(root: Path) -> list[str]:
    return run_with(root, lambda c: c.update(repeats="three"))


@case("config.yaml", "alpha")
def case_alpha_above_one(root: Path) -> list[str]:
    return run_with(root, lambda c: c.update(alpha=2))


@case("config.yaml", "concurrency")
def case_negative_concurrency(root: Path) -> list[str]:
    return run_with(root, lambda c: c.update(concurrency=-1))


@case("config.yaml", "timeout_s")
def case_zero_timeout(root: Path) -> list[str]:
    return run_with(root, lambda c: c.update(timeout_s=0))


@case("config.yaml", "name", "plain name")
def case_name_escapes_runs(root: Path) -> list[str]:
    config = base_config(root)
    config["name"] = "/../../tmp/raq-escape"
    return ["run", "-c", str(config_file(root, config)), "-q"]


@case("config.yaml", "name", "plain name")
def case_name_with_separator(root: Path) -> list[str]:
    return run_with(root, lambda c: c.update(name="a/b"))


@case("config.yaml", "name", "plain name")
def case_name_dot_dot(root: Path) -> list[str]:
    return run_with(root, lambda c: c.update(name=".."))


@case("config.yaml", "name", "plain name")
def case_name_with_escape_sequence(root: Path) -> list[str]:
    return run_with(root, lambda c: c.update(name="a\x1b]0;title\x07b"))


@case("config.yaml", "p_adjust")
def case_unknown_p_adjust(root: Path) -> list[str]:
    return run_with(root, lambda c: c.update(p_adjust="bogus"))


@case("config.yaml", "structured_output")
def case_unknown_structured_mode(root: Path) -> list[str]:
    return run_with(root, lambda c: c["judges"][0].update(structured_output="yaml"))


@case("judge", "candidate")
def case_self_judge(root: Path) -> list[str]:
    return run_with(root, lambda c: c["judges"][0].update(model="a"))


@case("config.yaml", "candidates")
def case_duplicate_candidate_names(root: Path) -> list[str]:
    return run_with(root, lambda c: c["candidates"][1].update(name="a"))


@case("RAQ_ADV_MISSING", "candidate 'a'")
def case_key_variable_not_set(root: Path) -> list[str]:
    return run_with(root, lambda c: c["candidates"][0].update(api_key_env="RAQ_ADV_MISSING"))


@case("config.yaml", "dataset.limit")
def case_zero_limit(root: Path) -> list[str]:
    return run_with(root, lambda c: c["dataset"].update(limit=0))


@case("config.yaml", "base_url")
def case_candidate_without_base_url(root: Path) -> list[str]:
    return run_with(root, lambda c: c["candidates"][0].pop("base_url"))


@case("config.yaml", "seed")
def case_seed_not_a_number(root: Path) -> list[str]:
    return run_with(root, lambda c: c.update(seed="x"))


@case("candidate 'a'", "unreachable", "--no-preflight")
def case_unreachable_endpoint(root: Path) -> list[str]:
    return run_with(root, lambda c: None)


# ---------------------------------------------------------------------------------------------
# Env files


@case("bad.env", "not UTF-8")
def case_env_file_not_utf8(root: Path) -> list[str]:
    def change(config: dict) -> None:
        env = root / "in" / "bad.env"
        env.write_bytes(b"RAQ_ADV_OTHER=\xff\xfe" + KEY.encode() + b"\n")
        config["env_file"] = str(env)

    return run_with(root, change)


@case("RAQ_ADV_FROM_FILE", "candidate 'a'")
def case_env_file_without_the_variable(root: Path) -> list[str]:
    def change(config: dict) -> None:
        env = root / "in" / "var.env"
        env.write_text(f"SOMETHING_ELSE={KEY}\n")
        config["env_file"] = str(env)
        config["candidates"][0]["api_key_env"] = "RAQ_ADV_FROM_FILE"

    return run_with(root, change)


# ---------------------------------------------------------------------------------------------
# Datasets


def with_dataset(root: Path, name: str, content: str | bytes, **fields: object) -> list[str]:
    def change(config: dict) -> None:
        path = root / "in" / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        config["dataset"] = {"path": str(path), **fields}

    return run_with(root, change)


@case("missing.jsonl", "not found")
def case_dataset_missing(root: Path) -> list[str]:
    return run_with(root, lambda c: c["dataset"].update(path=str(root / "in" / "missing.jsonl")))


@case("broken.jsonl:2", "not valid JSON")
def case_dataset_broken_line(root: Path) -> list[str]:
    return with_dataset(root, "broken.jsonl", json.dumps(qa_rows(1)[0]) + "\n{" + KEY + "\n")


@case("secret.json", "not a readable json dataset")
def case_dataset_json_that_is_a_secret(root: Path) -> list[str]:
    return with_dataset(root, "secret.json", f"OPENAI_API_KEY={KEY}\n")


@case("secret.csv")
def case_dataset_csv_that_is_a_secret(root: Path) -> list[str]:
    return with_dataset(root, "secret.csv", f"OPENAI_API_KEY={KEY}\n\x00\x01\n")


@case("fake.parquet", "not a readable parquet dataset")
def case_dataset_parquet_that_is_text(root: Path) -> list[str]:
    return with_dataset(root, "fake.parquet", f"token: {KEY}\n")


@case("empty.jsonl")
def case_dataset_empty(root: Path) -> list[str]:
    return with_dataset(root, "empty.jsonl", "")


@case("nulls.jsonl", "no usable questions")
def case_dataset_null_answers(root: Path) -> list[str]:
    rows = [{"id": "q1", "question": "Q?", "answers": {"text": [None]}}, {"id": "q2",
            "question": "Q2?", "answers": {"text": None}}]  # fmt: skip
    return with_dataset(root, "nulls.jsonl", "".join(json.dumps(r) + "\n" for r in rows))


@case("dupes.jsonl", "row 1", "'q0'", "row 0")
def case_dataset_duplicate_ids(root: Path) -> list[str]:
    rows = qa_rows(2)
    rows[1]["id"] = "q0"
    return with_dataset(root, "dupes.jsonl", "".join(json.dumps(r) + "\n" for r in rows))


@case("noq.jsonl", "question", "dataset.fields")
def case_dataset_without_question_field(root: Path) -> list[str]:
    rows = [{"id": "q1", "prompt": "Q?", "answers": {"text": ["a"]}}]
    return with_dataset(root, "noq.jsonl", json.dumps(rows[0]) + "\n")


@case("qa.jsonl", "answers.text")
def case_dataset_field_map_to_nothing(root: Path) -> list[str]:
    return run_with(root, lambda c: c["dataset"].update(fields={"answer": "answers.text"}) or
                    c["dataset"].update(path=str(write_jsonl(root / "in" / "qa.jsonl",
                    [{"id": "1", "question": "q", "answer": "a"}]))))  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Run directories and CLI arguments of `raq run`


@case("--shard")
def case_shard_not_a_fraction(root: Path) -> list[str]:
    return run_with(root, lambda c: None, "--shard", "x")


@case("--shard")
def case_shard_out_of_range(root: Path) -> list[str]:
    return run_with(root, lambda c: None, "--shard", "5/2")


@case("dataset.limit")
def case_limit_zero(root: Path) -> list[str]:
    return run_with(root, lambda c: None, "--limit", "0")


@case("not a raq run directory")
def case_resume_a_plain_directory(root: Path) -> list[str]:
    (root / "in").mkdir()
    return ["run", "--resume", str(root / "in")]


@case("out", "not a directory")
def case_output_is_a_file(root: Path) -> list[str]:
    argv = run_with(root, lambda c: None)
    (root / "out").write_text("a file")
    return argv


@case("out", "not a raq run directory")
def case_output_holds_foreign_files(root: Path) -> list[str]:
    argv = run_with(root, lambda c: None)
    (root / "out").mkdir()
    (root / "out" / "notes.txt").write_text(KEY)
    return argv


@case("raq.sqlite", "0-byte")
def case_output_has_an_empty_store(root: Path) -> list[str]:
    argv = run_with(root, lambda c: None)
    (root / "out").mkdir()
    (root / "out" / "raq.sqlite").write_bytes(b"")
    return argv


@case("raq.sqlite", "not a readable raq run store")
def case_output_has_a_garbage_store(root: Path) -> list[str]:
    argv = run_with(root, lambda c: None)
    (root / "out").mkdir()
    (root / "out" / "raq.sqlite").write_bytes(b"not sqlite " + KEY.encode() * 100)
    return argv


@case("raq.sqlite", "not a raq run store")
def case_output_has_a_foreign_sqlite(root: Path) -> list[str]:
    argv = run_with(root, lambda c: None)
    (root / "out").mkdir()
    with sqlite3.connect(root / "out" / "raq.sqlite") as conn:
        conn.execute("CREATE TABLE secrets (value TEXT)")
        conn.execute("INSERT INTO secrets VALUES (?)", (KEY,))
    conn.close()
    return argv


@case("cache.sqlite", "0-byte")
def case_cache_is_an_empty_file(root: Path) -> list[str]:
    argv = run_with(root, lambda c: None)
    (root / "cache.sqlite").write_bytes(b"")
    return argv


@case("another raq run is writing to it", "pid 4242 on elsewhere")
def case_output_locked_by_another_run(root: Path) -> list[str]:
    argv = run_with(root, lambda c: None)
    (root / "out").mkdir()
    lock = root / "out" / "raq.lock"
    lock.write_text(json.dumps({"pid": 4242, "host": "elsewhere", "since": "2026-01-01"}))
    holder = subprocess.Popen(  # holds the lock the way a running raq does
        [sys.executable, "-c", "import fcntl,sys,time; f=open(sys.argv[1]); "
         "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(900)", str(lock)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    HOLDERS.append(holder)
    return argv


HOLDERS: list[subprocess.Popen] = []


# ---------------------------------------------------------------------------------------------
# Ranks files (`raq stats`)


@case("ranks.csv", "no such file")
def case_ranks_missing(root: Path) -> list[str]:
    return ["stats", str(root / "ranks.csv")]


@case("ranks.csv", "not a readable CSV")
def case_ranks_empty(root: Path) -> list[str]:
    return ranks_file(root, "")


@case("ranks.csv", "missing column", "rank")
def case_ranks_without_rank_column(root: Path) -> list[str]:
    return ranks_file(root, "question_id,repeat,judge,candidate\nq1,0,j,a\n")


@pytest.fixture
def _unused() -> None:  # pragma: no cover - keeps the table below readable
    pass


for _value in ("inf", "-inf", "nan", "NaN", "-1", "0", "0.5", "abc", "", "1e400", KEY):
    CASES[f"ranks_rank_{_value or 'empty'}"[:40]] = Case(
        (lambda v: lambda root: ranks_file(root, RANKS_HEAD + GOOD_RANKS + f"q2,0,j,a,{v},1\n"))(
            _value
        ),
        ("ranks.csv:4", "rank"),
    )


@case("ranks.csv:2", "candidate", "empty")
def case_ranks_empty_candidate(root: Path) -> list[str]:
    return ranks_file(root, RANKS_HEAD + "q1,0,j,,1,1\n")


@case("ranks.csv", "not a readable CSV")
def case_ranks_not_utf8(root: Path) -> list[str]:
    return ranks_file(root, RANKS_HEAD.encode() + b"q1,0,j,\xff\xfe,1,1\n")


@case("ranks.csv", "not a readable CSV")
def case_ranks_binary(root: Path) -> list[str]:
    return ranks_file(root, b"\x89PNG\r\n\x1a\n\x00\x00\x00" + KEY.encode())


@case("test")
def case_stats_unknown_test(root: Path) -> list[str]:
    return [*ranks_file(root, RANKS_HEAD + GOOD_RANKS), "--test", "bogus"]


# ---------------------------------------------------------------------------------------------
# Run directories (`raq report`, `raq gate`, `raq compare`)


@case("nowhere", "not a raq run directory")
def case_report_missing_dir(root: Path) -> list[str]:
    return ["report", str(root / "nowhere")]


@case("not a raq run directory")
def case_report_plain_dir(root: Path) -> list[str]:
    (root / "in").mkdir()
    return ["report", str(root / "in")]


@case("raq.sqlite", "0-byte")
def case_report_empty_store(root: Path) -> list[str]:
    (root / "in").mkdir()
    (root / "in" / "raq.sqlite").write_bytes(b"")
    return ["report", str(root / "in")]


@case("raq.sqlite", "no config")
def case_report_store_without_a_run(root: Path) -> list[str]:
    from raq.store import RunStore

    (root / "in").mkdir()
    RunStore(root / "in").close()
    return ["report", str(root / "in")]


@case("summary.json")
def case_gate_without_summary(root: Path) -> list[str]:
    (root / "in").mkdir()
    return ["gate", str(root / "in"), "--baseline", "a"]


@case("summary.json", "not valid JSON")
def case_gate_summary_not_json(root: Path) -> list[str]:
    return ["gate", str(summary_dir(root, "{" + KEY)), "--baseline", "a"]


@case("summary.json", "not a raq summary")
def case_gate_summary_a_list(root: Path) -> list[str]:
    return ["gate", str(summary_dir(root, "[1, 2]")), "--baseline", "a"]


@case("summary.json", "not a raq summary")
def case_gate_summary_hand_edited(root: Path) -> list[str]:
    edited = {"candidates": {"a": {}, "b": {"mean_rank": "low"}}, "pairs": "none"}
    return ["gate", str(summary_dir(root, json.dumps(edited))), "--baseline", "a"]


@case("summary.json", "not a raq summary")
def case_compare_hand_edited(root: Path) -> list[str]:
    run = summary_dir(root, json.dumps({"candidates": [KEY]}))
    return ["compare", str(run), str(run)]


@case("summary.json", "not valid JSON")
def case_gate_summary_not_utf8(root: Path) -> list[str]:
    return ["gate", str(summary_dir(root, "")), "--baseline", "a"] if False else [
        "gate", str(_binary_summary(root)), "--baseline", "a"]  # fmt: skip


def _binary_summary(root: Path) -> Path:
    run = root / "in" / "run"
    run.mkdir(parents=True)
    (run / "summary.json").write_bytes(b"\xff\xfe{}")
    return run


# ---------------------------------------------------------------------------------------------
# The runner


def _snapshot(root: Path) -> dict[Path, str]:
    return {
        p: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file() and not p.is_symlink()
    }


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    """Every case, run as a real process (four at a time)."""
    prepared = {}
    for name, entry in CASES.items():
        root = tmp_path_factory.mktemp(name[:30])
        argv = entry.build(root)
        home = root / "home"
        env = {
            **raq_cli_env(), "RAQ_ADV_KEY": KEY, "HOME": str(home),
            "XDG_CACHE_HOME": str(home / ".cache"),
        }  # fmt: skip
        env.pop("RAQ_ADV_FROM_FILE", None)
        prepared[name] = (root, argv, env, _snapshot(root))

    def run(name: str) -> tuple:
        root, argv, env, before = prepared[name]
        done = subprocess.run(
            [sys.executable, "-m", "raq", *argv], capture_output=True, text=True, env=env,
            cwd=root, timeout=120,
        )  # fmt: skip
        return root, done, before

    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            return dict(zip(prepared, pool.map(run, prepared), strict=True))
    finally:
        for holder in HOLDERS:
            holder.kill()
            holder.wait()


def test_the_table_has_at_least_sixty_cases() -> None:
    assert len(CASES) >= 60


@pytest.mark.parametrize("name", list(CASES))
def test_malformed_input_is_one_line_with_its_exit_code_and_no_key(
    name: str, outcomes: dict[str, tuple]
) -> None:
    root, done, before = outcomes[name]
    expected = CASES[name]
    assert done.returncode == expected.code, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("raq: error: ") or "Usage:" in done.stderr, lines[0]
    for part in expected.names:
        assert part in lines[0], (part, lines[0])
    assert "Traceback" not in done.stderr + done.stdout
    assert KEY not in done.stderr + done.stdout
    for path, digest in _snapshot(root).items():  # what raq wrote or changed
        if before.get(path) != digest:
            assert KEY.encode() not in path.read_bytes(), path


def test_a_name_that_leads_out_of_runs_wrote_nothing_outside(
    outcomes: dict[str, tuple],
) -> None:
    root, done, _ = outcomes["name_escapes_runs"]
    assert done.returncode == 2
    assert not Path("/tmp/raq-escape").exists()
    assert not (root / "runs").exists()


def test_the_lock_of_a_dead_holder_is_taken_over(tmp_path: Path) -> None:
    """A raq.lock left by a process that died is no lock: the OS dropped it with the process."""
    from raq.store.lock import RunLock

    (tmp_path / "raq.lock").write_text(json.dumps({"pid": 999999, "host": "h", "since": "s"}))
    with RunLock(tmp_path):
        holder = json.loads((tmp_path / "raq.lock").read_text())
        assert holder["pid"] == os.getpid()
