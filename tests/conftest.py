"""Shared fixtures: a loopback fake OpenAI server and small configs that point at it."""

from __future__ import annotations

import json
import os
import re
import signal
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from raq.testing import Behaviour, FakeOpenAIServer
from raq.testing.fake_server import judge_by_overlap

N_QUESTIONS = 24
# Every process this test session starts inherits this mark, so a test that looks for
# processes it left behind (an orphan llama.cpp server) sees its own, not another session's.
SESSION_MARK = os.environ.setdefault("RAQ_TEST_SESSION", uuid.uuid4().hex)
TEST_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "test-fake.yaml"


def raq_cli_env() -> dict[str, str]:
    """The environment for a ``python -m raq`` subprocess: wide, plain output."""
    return {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}


def ctrl_c_as_in_a_terminal() -> None:
    """``preexec_fn`` for a subprocess a test sends Ctrl-C: SIGINT acts as in a terminal. A
    suite started in the background (``make test &``, some CI runners) ignores SIGINT, and its
    children inherit that, so they would never see the test's Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


_NUMBER = re.compile(r"secret word number (\d+)")


def secret(n: int) -> str:
    return f"word{n:02d}"


def oracle(body: dict[str, Any]) -> str:
    """Always right: reads the question number from the prompt."""
    n = int(_NUMBER.search(body["messages"][-1]["content"]).group(1))  # type: ignore[union-attr]
    return f"The secret word is {secret(n)}."


def clueless(body: dict[str, Any]) -> str:
    return "I do not know."


def half_right(body: dict[str, Any]) -> str:
    n = int(_NUMBER.search(body["messages"][-1]["content"]).group(1))  # type: ignore[union-attr]
    return f"The secret word is {secret(n)}." if n % 2 == 0 else "Maybe it is nothing."


@pytest.fixture
def qa_file(tmp_path: Path) -> Path:
    """A SQuAD-shaped dataset whose answers the fake candidates can get right or wrong."""
    path = tmp_path / "qa.jsonl"
    with path.open("w") as out:
        for n in range(1, N_QUESTIONS + 1):
            context = f"The secret word number {n} is {secret(n)}. Nothing else matters."
            out.write(
                json.dumps(
                    {
                        "id": f"q{n:02d}",
                        "question": f"What is the secret word number {n}?",
                        "context": context,
                        "answers": {
                            "text": [secret(n)],
                            "answer_start": [context.index(secret(n))],
                        },
                    }
                )
                + "\n"
            )
    return path


def default_behaviours() -> dict[str, Behaviour]:
    return {
        "oracle": Behaviour(reply=oracle),
        "clueless": Behaviour(reply=clueless),
        "half": Behaviour(reply=half_right),
        "judge": Behaviour(reply=judge_by_overlap()),
    }


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(default_behaviours()) as running:
        yield running


ConfigWriter = Callable[..., Path]


@pytest.fixture
def make_config(tmp_path: Path, qa_file: Path, server: FakeOpenAIServer) -> ConfigWriter:
    """Write a run config against the fake server; keyword arguments override top-level keys."""

    def write(
        candidates: list[str] | None = None, judges: list[dict] | None = None, **top: Any
    ) -> Path:
        config = yaml.safe_load(TEST_CONFIG.read_text())
        config["dataset"]["path"] = str(qa_file)
        for endpoint in [*config["candidates"], *config["judges"]]:
            endpoint["base_url"] = server.base_url
        if candidates is not None:
            by_name = {c["name"]: c for c in config["candidates"]}
            config["candidates"] = [by_name[name] for name in candidates]
        if judges is not None:
            config["judges"] = judges
        config.update(top)
        path = tmp_path / f"config-{len(list(tmp_path.glob('config-*.yaml')))}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    return write
