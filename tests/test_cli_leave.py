"""The ``raq`` command leaves without the interpreter's teardown, and loses nothing by it: the
exit code, the output (to a file or a pipe), the exit handlers, and threads still working."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import raq_cli_env


def _python(code: str, tmp_path: Path, stdout_file: bool = False) -> tuple[int, str, str]:
    """Run ``code`` (which ends by calling raq's console entry point) in a fresh Python."""
    if stdout_file:
        target = tmp_path / "out.txt"
        with target.open("w") as out:
            done = subprocess.run(
                [sys.executable, "-c", code], stdout=out, stderr=subprocess.PIPE, text=True,
                env=raq_cli_env(), cwd=tmp_path, timeout=120,
            )  # fmt: skip
        return done.returncode, target.read_text(), done.stderr
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=raq_cli_env(),
        cwd=tmp_path, timeout=120,
    )  # fmt: skip
    return done.returncode, done.stdout, done.stderr


_PRELUDE = "import atexit, sys, threading, time\nfrom raq.cli import main\n"


def test_exit_handlers_run_and_output_written_to_a_file_is_complete(tmp_path: Path) -> None:
    code = _PRELUDE + (
        "atexit.register(lambda: print('exit handler ran'))\n"
        "print('x' * 100_000, end='')\n"  # a buffered write larger than the file buffer
        "sys.argv = ['raq', '--version']\n"
        "main()\n"
    )
    returncode, out, err = _python(code, tmp_path, stdout_file=True)
    assert returncode == 0, err
    assert out.startswith("x" * 100_000)
    assert "raq " in out and out.endswith("exit handler ran\n")


def test_the_exit_code_of_an_error_is_kept(tmp_path: Path) -> None:
    code = _PRELUDE + "sys.argv = ['raq', 'run', '-c', 'missing.yaml']\nmain()\n"
    returncode, _, err = _python(code, tmp_path)
    assert returncode == 2
    assert err.strip() == "raq: error: missing.yaml: config file not found"


def test_a_thread_still_working_is_waited_for(tmp_path: Path) -> None:
    code = _PRELUDE + (
        "def work():\n"
        "    time.sleep(0.5)\n"
        "    print('thread finished', flush=True)\n"
        "threading.Thread(target=work).start()\n"
        "sys.argv = ['raq', '--version']\n"
        "main()\n"
    )
    returncode, out, err = _python(code, tmp_path)
    assert returncode == 0, err
    assert out.splitlines()[-1] == "thread finished"


def test_a_message_as_the_exit_code_is_printed_and_exits_1(tmp_path: Path) -> None:
    code = "from raq.cli.leave import leave\nleave('stopped: because')\n"
    returncode, _, err = _python(code, tmp_path)
    assert returncode == 1
    assert err.strip() == "stopped: because"
