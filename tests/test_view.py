"""``raq view`` over real fake-server runs: its JSON API, that it never changes the store, and
what a person sees in a real browser (Debian's chromium driven by Playwright)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .view_runs import (
    FAILED_QUESTION,
    HOSTILE,
    HOSTILE_QUESTION,
    JUDGE_FAILS_ON,
    THINKING,
    make_runs,
)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
RATIONALE = "Answer 2 names the secret word as the reference does; the others do not. " * 2


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_runs(tmp_path_factory.mktemp("view"))


@contextlib.contextmanager
def viewer(*run_dirs: Path, port: int | None = None) -> Iterator[str]:
    """``raq view`` in its own process, as a user starts it; yields its URL."""
    args = [sys.executable, "-m", "raq", "view", *map(str, run_dirs), "--no-browser"]
    if port is not None:
        args += ["--port", str(port)]
    process = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert found, (
            f"no URL in {line!r}; stderr: {process.stderr.read() if process.stderr else ''}"
        )
        yield found.group(0)
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0, "raq view stops cleanly on SIGTERM"


def get_json(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        body = error.read()
        try:
            return error.code, json.loads(body)
        except ValueError:
            return error.code, body.decode()


def fingerprint(run_dir: Path) -> dict[str, tuple[str, int]]:
    """Every file of a run directory: content hash and mtime."""
    return {
        str(p.relative_to(run_dir)): (
            hashlib.sha256(p.read_bytes()).hexdigest(),
            p.stat().st_mtime_ns,
        )
        for p in sorted(run_dir.rglob("*"))
        if p.is_file()
    }


# -- the API ------------------------------------------------------------------------------------
def test_browsing_never_changes_the_run_directory(runs: tuple[Path, Path]) -> None:
    before = [fingerprint(r) for r in runs]
    with viewer(*runs) as url:
        status, body = get_json(url + "api/runs")
        assert status == 200 and [r["name"] for r in body["runs"]] == ["view-a", "view-b"]
        for run in ("0", "1"):
            for query in ("filter=all", "filter=disagree&a=oracle&b=half", "filter=repeats",
                          "filter=judge_failed", "filter=control", "filter=failed",
                          "filter=search&q=secret", "filter=search&q=se"):  # fmt: skip
                status, page = get_json(f"{url}api/questions?run={run}&{query}")
                assert status == 200, page
            for qid in ("q03", "q04", "q05"):
                assert get_json(f"{url}api/question?run={run}&id={qid}")[0] == 200
    assert [fingerprint(r) for r in runs] == before, "no byte, mtime or file of the run changed"


def test_filters_select_the_questions_that_match(runs: tuple[Path, Path]) -> None:
    with viewer(runs[0]) as url:

        def page(query: str) -> dict[str, Any]:
            status, body = get_json(f"{url}api/questions?{query}")
            assert status == 200, body
            return body

        everything = page("filter=all&limit=10&offset=20")
        assert everything["total"] == 24
        assert [r["question_id"] for r in everything["rows"]] == ["q21", "q22", "q23", "q24"]
        failed = page("filter=failed")
        assert [(r["question_id"], r["failed"]) for r in failed["rows"]] == [
            (f"q{FAILED_QUESTION:02d}", ["half"])
        ]
        judge_failed = page("filter=judge_failed")
        assert [(r["question_id"], r["score"]) for r in judge_failed["rows"]] == [
            (f"q{JUDGE_FAILS_ON:02d}", 3)
        ]
        # oracle is always right; half is wrong on odd questions (and the hostile one), so
        # those come first
        disagree = page("filter=disagree&a=oracle&b=half")
        scores = [r["score"] for r in disagree["rows"]]
        assert scores == sorted(scores, key=abs, reverse=True) and scores[0] < 0
        n = int(disagree["rows"][0]["question_id"][1:])
        assert n % 2 == 1 or n == HOSTILE_QUESTION
        assert page("filter=disagree&a=oracle&b=oracle")["note"].startswith("choose two")
        # the judge breaks ties by presented position, so tied answers move between repeats
        repeats = page("filter=repeats")
        assert repeats["total"] > 0 and all(r["score"] > 0 for r in repeats["rows"])
        search = page("filter=search&q=ONERROR")
        assert [r["question_id"] for r in search["rows"]] == [f"q{HOSTILE_QUESTION:02d}"]
        assert page("filter=search&q=no+such+text+anywhere")["total"] == 0
        # search text is data, not FTS5 query syntax or a LIKE pattern
        assert page("filter=search&q=%22word*%22+OR+NEAR(")["total"] == 0
        assert page("filter=search&q=%25")["total"] == 0
        # the filter holds exactly the questions where a judgment put the reference below first
        # place or below the wrong answer (what qualifies a judge); the fake judge ranks by
        # word overlap, so the reference, all overlap in one word, always comes first
        controls = page("filter=control&limit=200")
        assert controls["note"] is None
        for row in controls["rows"]:
            _, question = get_json(f"{url}api/question?id={row['question_id']}")
            misplaced = [
                j for j in question["judgments"] if j["controls"]
                and (j["controls"]["#reference"] > 1
                     or j["controls"]["#reference"] > j["controls"]["#wrong"])
            ]  # fmt: skip
            assert len(misplaced) == row["score"] > 0
    with viewer(runs[1]) as url:
        _, off = get_json(f"{url}api/questions?filter=control")
        assert off["total"] == 0 and "no planted controls" in off["note"]


def test_a_run_that_starts_writing_while_viewed_is_read_through_its_log(
    runs: tuple[Path, Path], tmp_path: Path
) -> None:
    from raq.core.records import Answer
    from raq.store import RunStore

    run = tmp_path / "run"
    shutil.copytree(runs[0], run)
    (run / "summary.json").unlink()  # as before a run's first finalize
    with viewer(run) as url:
        _, overview = get_json(url + "api/runs")
        assert overview["runs"][0]["summary"] is None
        _, before = get_json(url + "api/question?id=q01")
        assert before["answers"][0]["answer"] == "The secret word is word01."
        store = RunStore(run)  # a resumed run writes (its log appears beside the store)
        try:
            store.put_answer(Answer("q01", "oracle", "written while viewed", words=3), "fp")
            _, after = get_json(url + "api/question?id=q01")
            assert after["answers"][0]["answer"] == "written while viewed"
        finally:
            store.close()


def test_the_api_refuses_what_it_does_not_serve(runs: tuple[Path, Path]) -> None:
    with viewer(runs[0]) as url:
        assert get_json(url + "api/questions?filter=nonsense")[0] == 400
        assert get_json(url + "api/questions?offset=-1")[0] == 400
        assert get_json(url + "api/questions?run=1")[0] == 400
        status, body = get_json(url + "api/question?id=q99")
        assert status == 404 and "q99" in body["error"]
        # a page elsewhere that points its own name at 127.0.0.1 cannot read the run
        host = {"Host": "attacker.example:80"}
        assert get_json(url + "api/runs", headers=host)[0] == 421
        request = urllib.request.Request(url + "api/runs", data=b"{}", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 405
        with urllib.request.urlopen(url, timeout=10) as response:
            assert "script-src 'self'" in response.headers["Content-Security-Policy"]


def test_ctrl_c_stops_the_viewer_and_removes_its_scratch_files(
    runs: tuple[Path, Path], tmp_path: Path
) -> None:
    import signal

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-m", "raq", "view", str(runs[0]), "--no-browser"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TMPDIR": str(scratch)},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as in a terminal
    )  # fmt: skip
    assert process.stdout is not None
    url = re.search(r"http://\S+/", process.stdout.readline())
    assert url and get_json(url.group(0) + "api/questions?filter=search&q=word")[0] == 200
    assert any(scratch.iterdir()), "the scratch database lives in the temporary directory"
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert (process.returncode, out, err) == (0, "stopped\n", "")
    assert not any(scratch.iterdir())


def test_a_directory_that_is_not_a_run_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "raq", "view", str(tmp_path), "--no-browser"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "not a raq run directory" in done.stderr


def test_a_port_in_use_is_one_line_and_exit_2(runs: tuple[Path, Path]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "raq", "view", str(runs[0]), "--no-browser",
             "--port", str(port)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr and "Traceback" not in done.stderr


def add_missing_columns(db: sqlite3.Connection) -> None:
    """The judgments' controls and rationale columns, as a raq that has them adds them."""
    have = {row[1] for row in db.execute("PRAGMA table_info(judgments)")}
    for name, declaration in (("controls", "TEXT NOT NULL DEFAULT '{}'"), ("rationale", "TEXT")):
        if name not in have:
            db.execute(f"ALTER TABLE judgments ADD COLUMN {name} {declaration}")


@pytest.fixture(scope="module")
def newer_run(runs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run A as a newer raq stores it: planted controls in every judgment, ranked among
    everything shown while ``ranks`` stay the candidates' among themselves (the judge put the
    wrong answer first once), a ``truncated`` flag on answers (one set) and a rationale."""
    run = tmp_path_factory.mktemp("newer") / "run"
    shutil.copytree(runs[1], run)  # written with controls off
    with contextlib.closing(sqlite3.connect(run / "raq.sqlite")) as db:
        add_missing_columns(db)
        if "truncated" not in {r[1] for r in db.execute("PRAGMA table_info(answers)")}:
            db.execute("ALTER TABLE answers ADD COLUMN truncated INTEGER")
        db.execute("UPDATE judgments SET rationale = ?", (RATIONALE,))
        db.execute("UPDATE answers SET truncated = 0")
        db.execute(
            "UPDATE answers SET truncated = 1 WHERE question_id = 'q10' AND candidate = 'oracle'"
        )
        rows = db.execute("SELECT question_id, repeat, presented_order FROM judgments"
                          " WHERE error IS NULL").fetchall()  # fmt: skip
        for qid, repeat, order in rows:
            k = len(json.loads(order))
            controls = {"#reference": 1.0, "#wrong": float(k + 2)}
            if (qid, repeat) == ("q07", 1):
                controls = {"#reference": 2.0, "#wrong": 1.0}
            db.execute(
                "UPDATE judgments SET controls = ?, presented_order = ?"
                " WHERE question_id = ? AND repeat = ?",
                (json.dumps(controls), json.dumps(["#reference", *json.loads(order), "#wrong"]),
                 qid, repeat),
            )  # fmt: skip
        db.commit()
    return run


def test_a_controls_column_of_empty_records_means_controls_were_off(
    runs: tuple[Path, Path], tmp_path: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(runs[1], run)  # written with controls off
    with contextlib.closing(sqlite3.connect(run / "raq.sqlite")) as db:
        add_missing_columns(db)
        db.commit()
    with viewer(run) as url:
        assert get_json(url + "api/runs")[1]["runs"][0]["has_controls"] is False
        _, body = get_json(url + "api/questions?filter=control")
        assert body["total"] == 0 and "no planted controls" in body["note"]


def test_misplaced_controls_and_truncated_answers_of_a_newer_store(newer_run: Path) -> None:
    with viewer(newer_run) as url:
        status, body = get_json(url + "api/questions?filter=control")
        assert status == 200 and [(r["question_id"], r["score"]) for r in body["rows"]] == [
            ("q07", 1)
        ]
        _, failed = get_json(url + "api/questions?filter=failed")
        assert [r["question_id"] for r in failed["rows"]] == ["q03", "q10"]
        _, question = get_json(url + "api/question?id=q10")
        oracle = next(a for a in question["answers"] if a["candidate"] == "oracle")
        assert oracle["fields"]["truncated"] is True
        _, runs_body = get_json(url + "api/runs")
        assert runs_body["runs"][0]["has_controls"] is True


# -- in a real browser -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium): "
                    "the browser tests drive it")  # fmt: skip
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, tmp_path: Path) -> Iterator[Any]:
    """A fresh page; fails the test on any script error or alert (an injected script)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    opened.on("dialog", lambda dialog: (problems.append(f"dialog: {dialog.message}"),
                                        dialog.dismiss()))  # fmt: skip
    opened.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
    opened.on("request", lambda r: r.url.startswith("http://127.0.0.1") or
              problems.append(f"fetched from the network: {r.url}"))  # fmt: skip
    yield opened
    shot = Path(os.environ.get("RAQ_VIEW_SHOTS", tmp_path))
    shot.mkdir(parents=True, exist_ok=True)
    opened.screenshot(
        path=str(
            shot / f"{os.environ.get('PYTEST_CURRENT_TEST', 'x').split(':')[-1].split(' ')[0]}.png"
        ),
        full_page=True,
    )
    context.close()
    assert not problems, problems


def test_the_page_shows_the_verdict_and_the_question_list(
    runs: tuple[Path, Path], page: Any
) -> None:
    with viewer(runs[0]) as url:
        page.goto(url)
        page.get_by_text(re.compile("^oracle beats clueless: wins 100%")).wait_for()
        table = page.locator("table.grid").first
        assert table.locator("tbody tr").first.locator("th").inner_text() == "oracle"
        assert page.get_by_text("24 question(s) · showing 1–24").is_visible()
        assert page.get_by_text(
            re.compile("^Planted controls, judge judge: qualified")
        ).is_visible()
        row = page.locator("table.list tbody tr").nth(FAILED_QUESTION - 1)
        assert "failed answer: half" in row.inner_text()


def test_filters_and_search_in_the_browser(runs: tuple[Path, Path], page: Any) -> None:
    with viewer(runs[0]) as url:
        page.goto(url)
        page.get_by_text("24 question(s)").wait_for()
        page.select_option("select[name=filter]", "failed")
        page.get_by_text("1 question(s) · showing 1–1").wait_for()
        assert page.locator("table.list tbody tr").count() == 1
        assert "q03" in page.locator("table.list").inner_text()

        page.select_option("select[name=filter]", "disagree")
        page.select_option("select[name=b]", "half")
        page.get_by_text("rank oracle − rank half").wait_for()
        _, api = get_json(url + "api/questions?filter=disagree&a=oracle&b=half")
        top = api["rows"][0]
        score = (
            str(int(top["score"])) if top["score"] == int(top["score"]) else f"{top['score']:.2f}"
        )
        first = page.locator("table.list tbody tr").first
        assert first.locator("a.qid").inner_text() == top["question_id"]
        assert first.locator("td.score").inner_text() == score and top["score"] < 0

        page.select_option("select[name=filter]", "search")
        page.fill("input[name=q]", "onerror")
        page.click("button[type=submit]")
        page.get_by_text("1 question(s) · showing 1–1").wait_for()
        assert f"q{HOSTILE_QUESTION:02d}" in page.locator("table.list").inner_text()

        page.select_option("select[name=filter]", "control")
        # the fake judge always puts the reference first: no question to show, and it says so
        page.get_by_text("0 question(s)").wait_for()


def test_a_question_shows_answers_judgments_and_a_hostile_answer_as_text(
    runs: tuple[Path, Path], page: Any
) -> None:
    with viewer(runs[0]) as url:
        page.goto(url)
        page.get_by_role("link", name=f"q{HOSTILE_QUESTION:02d}", exact=True).click()
        page.get_by_role("heading", name="What is the secret word number 4?").wait_for()
        assert page.locator(".refs").inner_text().endswith("word04")
        texts = page.locator(".answer-text").all_inner_texts()
        assert HOSTILE in texts, texts
        assert page.locator("main img").count() == 0 and page.locator("main script").count() == 0
        cards = page.locator("article.judgment")
        assert cards.count() == 3
        header = " ".join(cards.first.locator("header").inner_text().split())
        assert header == "judge: judge · repeat 0"
        rows = [r.split("\t") for r in cards.first.locator("tbody tr").all_inner_texts()]
        assert [r[1] for r in rows].count("#reference (planted control)") == 1
        # the table agrees with what the judge said: its ranking lists the IDs, best first
        ranking = json.loads(cards.first.locator("pre.raw").inner_text())["ranking"]
        assert [int(r[2]) for r in rows] == [ranking.index(int(r[0])) + 1 for r in rows]
        oracle = page.locator("article.answer").first
        assert "latency s" in oracle.inner_text()
        # a reasoning model's thinking shows apart from its answer, as text
        assert oracle.locator(".long-field .text").inner_text() == THINKING
        assert oracle.locator(".answer-text").inner_text() == "The secret word is word04."
        assert oracle.locator("b").count() == 0

        page.get_by_role("link", name="next").click()
        page.get_by_role("heading", name="What is the secret word number 5?").wait_for()
        failed = page.locator("article.judgment.failed")
        assert failed.count() == 3 and "not a permutation" in failed.first.inner_text()
        assert failed.first.locator("tr.control").count() == 2  # planted, though not ranked


def test_two_runs_side_by_side(runs: tuple[Path, Path], page: Any) -> None:
    with viewer(*runs) as url:
        page.goto(url)
        page.get_by_text("22 question(s) in both runs").wait_for()
        match = page.locator(".match").inner_text()
        assert "2 only in A (q01, q02)" in match and "2 only in B (q25, q26)" in match
        assert page.get_by_role("heading", name=re.compile("^Run A: view-a")).is_visible()
        assert page.get_by_role("heading", name=re.compile("^Run B: view-b")).is_visible()
        cards = page.locator("section.verdict")
        assert "Planted controls, judge judge" in cards.nth(0).inner_text()
        assert "Planted controls: off" in cards.nth(1).inner_text()

        page.get_by_role("link", name="q04", exact=True).click()
        page.get_by_role("heading", name="What is the secret word number 4?").wait_for()
        sides = page.locator("section.side")
        assert sides.count() == 2
        assert sides.nth(0).locator("h2").inner_text() == "Run A: view-a"
        assert sides.nth(1).locator("h2").inner_text() == "Run B: view-b"
        for i in range(2):
            assert sides.nth(i).locator("article.answer").count() == 3
            assert HOSTILE in sides.nth(i).locator(".answer-text").all_inner_texts()

        page.goto(url + "#/q?id=q01&run=0")
        page.get_by_text("This question is not in run B.").wait_for()

        page.goto(url)
        page.select_option("select[name=run]", "1")
        page.get_by_text("24 question(s) · showing 1–24").wait_for()
        assert "q26" in page.locator("table.list").inner_text()


def test_a_newer_store_shows_its_controls_and_extra_columns(newer_run: Path, page: Any) -> None:
    with viewer(newer_run) as url:
        page.goto(url + "#/?filter=control")
        page.get_by_text("1 question(s) · showing 1–1").wait_for()
        assert not page.get_by_text("Planted controls: off").is_visible()
        page.get_by_role("link", name="q07", exact=True).click()
        page.get_by_role("heading", name="What is the secret word number 7?").wait_for()
        card = page.locator("article.judgment").nth(1)
        head = card.locator("table thead").inner_text().strip().split("\t")
        assert head == ["position (ID shown)", "candidate", "rank of all shown",
                        "rank among candidates"]  # fmt: skip
        rows = [r.split("\t") for r in card.locator("table tbody tr").all_inner_texts()]
        assert rows[0] == ["1", "#reference (planted control)", "2", ""]
        assert rows[-1] == ["5", "#wrong (planted control)", "1", ""]
        # the candidates fill places 3, 4, 5 in their own order
        assert sorted((r[3], r[2]) for r in rows[1:-1]) == [("1", "3"), ("2", "4"), ("3", "5")]
        assert RATIONALE.strip() in card.locator(".long-field").inner_text()
        page.goto(url + "#/q?id=q10")
        oracle = page.locator("article.answer").first
        oracle.locator(".badge.truncated").wait_for()
        assert "truncated\nyes" in oracle.locator("dl").inner_text()


def test_search_by_index_and_by_scan_find_the_same_questions(
    runs: tuple[Path, Path], tmp_path: Path
) -> None:
    from raq.view import RunReader

    queries = ["onerror", "ONERROR", "word1", "secret word is", '"word*" OR NEAR(', "o k", "zzz"]
    scanned = RunReader(runs[0], tmp_path)
    by_scan = {q: scanned.page("search", 0, 100, text=q) for q in queries}
    assert scanned.overview()["search"] == "scan"
    scanned.build_search_index()
    assert scanned.search_error is None and scanned.overview()["search"] == "index"
    for query in queries:
        indexed = scanned.page("search", 0, 100, text=query)
        assert [r["question_id"] for r in indexed.rows] == [
            r["question_id"] for r in by_scan[query].rows
        ], query
    assert by_scan["word1"].total == 10  # word10 … word19 (q01 answers "word01")
    scanned.close()
