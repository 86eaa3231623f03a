"""One writer per run directory; readers that never collide with it; a full disk or a read-only
directory as one line with the right cause, and the store survives."""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from raq.testing import Behaviour, FakeOpenAIServer
from raq.testing.fake_server import judge_by_overlap

from .conftest import ConfigWriter, clueless, oracle, raq_cli_env

FREE_KB = 200


def raq(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "raq", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=raq_cli_env(),
    )  # fmt: skip


def wait_for(condition: object, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def _running(out: Path) -> bool:
    import sqlite3

    if not (out / "raq.sqlite").exists():
        return False
    try:
        with contextlib.closing(sqlite3.connect(out / "raq.sqlite")) as conn:
            return conn.execute("SELECT COUNT(*) FROM answers").fetchone()[0] > 2
    except sqlite3.Error:
        return False


def test_a_second_run_or_a_report_is_refused_while_a_run_writes_naming_it(
    server: FakeOpenAIServer, make_config: ConfigWriter, tmp_path: Path
) -> None:
    for name, reply in (("oracle", oracle), ("clueless", clueless)):
        server.set_behaviour(name, Behaviour(reply=reply, latency_s=0.05))
    server.set_behaviour("judge", Behaviour(reply=judge_by_overlap(), latency_s=0.05))
    config = make_config(candidates=["oracle", "clueless"], concurrency=2, repeats=1)
    out = tmp_path / "run"
    first = raq("run", "-c", str(config), "-o", str(out), "-q")
    try:
        wait_for(lambda: _running(out))
        second = subprocess.run(
            [sys.executable, "-m", "raq", "run", "-c", str(config), "-o", str(out), "-q"],
            capture_output=True, text=True, env=raq_cli_env(), timeout=120,
        )  # fmt: skip
        assert second.returncode == 2
        assert second.stderr.count("\n") == 1
        assert f"another raq run is writing to it (pid {first.pid} on " in second.stderr
        report = subprocess.run(
            [sys.executable, "-m", "raq", "report", str(out)],
            capture_output=True, text=True, env=raq_cli_env(), timeout=120,
        )  # fmt: skip
        assert report.returncode == 2  # it would write the run's files while the run does
        assert f"another raq run is writing to it (pid {first.pid} on " in report.stderr
    finally:
        _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["n_questions_ranked"] > 0
    again = subprocess.run(
        [sys.executable, "-m", "raq", "report", str(out)],
        capture_output=True, text=True, env=raq_cli_env(), timeout=120,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr  # the lock went with the run


@contextlib.contextmanager
def tmpfs(path: Path, size: str, *, read_only: bool = False) -> Iterator[Path]:
    """A small filesystem of its own (needs root); the test is skipped where none can be had."""
    path.mkdir()
    options = f"size={size}" + (",ro" if read_only else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_full_disk_says_how_to_resume_and_the_store_survives(
    make_config: ConfigWriter, tmp_path: Path
) -> None:
    config = make_config(candidates=["oracle", "clueless"], repeats=1, concurrency=1)
    with tmpfs(tmp_path / "disk", "4m") as disk:
        filler = disk / "filler"  # leaves FREE_KB: room for some answers, not for the run
        filler.write_bytes(b"\0" * (4096 * 1024 - FREE_KB * 1024))
        out = disk / "run"
        done = subprocess.run(
            [sys.executable, "-m", "raq", "run", "-c", str(config), "-o", str(out), "-q"],
            capture_output=True, text=True, env=raq_cli_env(), timeout=300,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
        assert "no space left" in done.stderr
        assert "run the same command again" in done.stderr
        with contextlib.closing(sqlite3.connect(out / "raq.sqlite")) as conn:
            kept = conn.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
        assert kept > 0, "the disk filled after some answers were stored"
        filler.unlink()
        resumed = subprocess.run(
            [sys.executable, "-m", "raq", "run", "-c", str(config), "-o", str(out), "-q"],
            capture_output=True, text=True, env=raq_cli_env(), timeout=300,
        )  # fmt: skip
        assert resumed.returncode == 0, resumed.stderr
        summary = json.loads((out / "summary.json").read_text())
        assert summary["status"] == "complete"
        assert summary["candidates"]["oracle"]["failed_answers"] == 0
        assert summary["requests"]["oracle"]["requests"] < 24  # the kept answers were reused


def test_a_read_only_directory_is_one_line_with_its_cause(
    make_config: ConfigWriter, tmp_path: Path
) -> None:
    config = make_config(candidates=["oracle", "clueless"], repeats=1)
    with tmpfs(tmp_path / "ro", "100k", read_only=True) as read_only:
        done = subprocess.run(
            [sys.executable, "-m", "raq", "run", "-c", str(config), "-o", str(read_only / "r"),
             "-q", "--limit", "2"],
            capture_output=True, text=True, env=raq_cli_env(), timeout=120,
        )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Read-only file system" in done.stderr


def test_a_run_directory_on_a_read_only_disk_cannot_be_reported_and_says_why(
    make_config: ConfigWriter, tmp_path: Path
) -> None:
    config = make_config(candidates=["oracle", "clueless"], repeats=1)
    out = tmp_path / "r"
    subprocess.run(
        [sys.executable, "-m", "raq", "run", "-c", str(config), "-o", str(out), "-q",
         "--limit", "2"], capture_output=True, env=raq_cli_env(), timeout=120,
    )  # fmt: skip
    assert (out / "summary.json").is_file()
    with tmpfs(tmp_path / "disk", "4m") as disk:
        shutil.copytree(out, disk / "r")
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        done = subprocess.run(
            [sys.executable, "-m", "raq", "report", str(disk / "r")],
            capture_output=True, text=True, env=raq_cli_env(), timeout=120,
        )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "read-only" in done.stderr.lower()


def test_a_merge_into_an_output_another_process_writes_is_refused_by_name(
    tmp_path: Path,
) -> None:
    """`raq merge` takes the run lock of its output like `raq run`: a second writer of the
    same directory is refused with one line naming the holder, and nothing is merged."""
    from raq.core.errors import StoreError
    from raq.pipeline.merge import merge_runs
    from raq.store.lock import RunLock

    output = tmp_path / "merged"
    with RunLock(output), pytest.raises(StoreError, match="another raq run is writing to it"):
        merge_runs([tmp_path / "shard-0"], output)
    assert [p.name for p in output.iterdir()] == ["raq.lock"]
