"""The ``raq view`` web server: loopback only, read-only, a JSON API and static pages.

The pages are plain HTML, CSS and JavaScript shipped in ``static/`` (nothing from a CDN, nothing
fetched from the network), and they insert every string from the server as text, never as
markup; a Content-Security-Policy that allows no inline script backs that up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import tempfile
import threading
import webbrowser
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raq.core.errors import RaqError
from raq.view.reader import RunReader

if TYPE_CHECKING:
    from aiohttp import web

STATIC = Path(__file__).parent / "static"
HOST = "127.0.0.1"
MAX_PAGE = 200
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class Viewer:
    """One or two runs opened read-only, each with its own scratch directory."""

    def __init__(self, run_dirs: list[Path]) -> None:
        if not 1 <= len(run_dirs) <= 2:
            raise RaqError("raq view takes one run directory, or two to compare")
        self._tmp = tempfile.TemporaryDirectory(prefix="raq-view-", ignore_cleanup_errors=True)
        self.readers: list[RunReader] = []
        self._indexers: list[threading.Thread] = []
        try:
            for i, run_dir in enumerate(run_dirs):
                scratch = Path(self._tmp.name) / f"run{i}"
                scratch.mkdir()
                self.readers.append(RunReader(run_dir, scratch))
            self.matching = (
                self.readers[0].matching(self.readers[1]) if len(self.readers) == 2 else None
            )
        except BaseException:
            self.close()
            raise

    def start_search_indexes(self) -> None:
        """Build each run's search index in the background; search scans until it is ready."""
        for reader in self.readers:
            thread = threading.Thread(target=reader.build_search_index, daemon=True)
            thread.start()
            self._indexers.append(thread)

    def close(self) -> None:
        for reader in self.readers:
            reader.stop_indexing()
        for thread in self._indexers:
            thread.join(timeout=5)
        for reader in self.readers:
            reader.close()
        self._tmp.cleanup()

    def app(self, allowed_hosts: Callable[[], set[str]]) -> web.Application:
        from aiohttp import web

        app = web.Application(middlewares=[_guard(allowed_hosts)])
        app.router.add_get("/", self._index)
        app.router.add_get("/api/runs", self._runs)
        app.router.add_get("/api/questions", self._questions)
        app.router.add_get("/api/question", self._question)
        app.router.add_static("/static/", STATIC, follow_symlinks=False)
        return app

    # -- handlers -------------------------------------------------------------------------------
    async def _index(self, request: web.Request) -> web.StreamResponse:
        from aiohttp import web

        return web.FileResponse(STATIC / "index.html")

    async def _runs(self, request: web.Request) -> web.StreamResponse:
        runs = await asyncio.to_thread(lambda: [r.overview() for r in self.readers])
        return _json({"runs": runs, "matching": self.matching})

    async def _questions(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        reader = self._reader(q.get("run", "0"))
        offset = _int(q.get("offset", "0"), "offset", 0)
        limit = min(_int(q.get("limit", "50"), "limit", 1), MAX_PAGE)
        try:
            page = await asyncio.to_thread(
                reader.page, q.get("filter", "all"), offset, limit, q.get("a"), q.get("b"),
                q.get("q"),
            )  # fmt: skip
        except ValueError as exc:
            raise _bad_request(str(exc)) from None
        return _json({"total": page.total, "offset": offset, "rows": page.rows,
                      "note": page.note})  # fmt: skip

    async def _question(self, request: web.Request) -> web.StreamResponse:
        from aiohttp import web

        reader = self._reader(request.query.get("run", "0"))
        question_id = request.query.get("id", "")
        found = await asyncio.to_thread(reader.question, question_id)
        if found is None and request.query.get("missing_ok") == "1":  # the two-run view asks
            return _json({"missing": f"no question {question_id!r} in this run"})
        if found is None:
            raise web.HTTPNotFound(
                text=json.dumps({"error": f"no question {question_id!r} in this run"}),
                content_type="application/json",
            )
        return _json(found)

    def _reader(self, value: str) -> RunReader:
        index = _int(value, "run", 0)
        if index >= len(self.readers):
            raise _bad_request(f"no run {index}")
        return self.readers[index]


def _json(data: Any) -> web.StreamResponse:
    from aiohttp import web

    return web.json_response(data, dumps=lambda d: json.dumps(d, ensure_ascii=False))


def _bad_request(message: str) -> Exception:
    from aiohttp import web

    return web.HTTPBadRequest(text=json.dumps({"error": message}), content_type="application/json")


def _int(value: str, name: str, minimum: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise _bad_request(f"{name} must be a whole number, not {value!r}") from None
    if number < minimum:
        raise _bad_request(f"{name} must be at least {minimum}")
    return number


def _guard(allowed_hosts: Callable[[], set[str]]) -> Any:
    """Only GET, only for this server's own address (a page elsewhere that points a name at
    127.0.0.1 cannot read the run), and security headers on every response."""
    from aiohttp import web

    @web.middleware
    async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            raise web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD"])
        if request.host not in allowed_hosts():
            raise web.HTTPMisdirectedRequest(text="raq view answers only on its own address")
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            exc.headers.update(SECURITY_HEADERS)
            raise
        response.headers.update(SECURITY_HEADERS)
        return response

    return guard


async def serve(
    run_dirs: list[Path],
    port: int | None = None,
    open_browser: bool = True,
    announce: Callable[[str], None] = print,
) -> None:
    """Serve the viewer on loopback until cancelled (Ctrl-C) or sent SIGTERM."""
    from aiohttp import web

    viewer = await asyncio.to_thread(Viewer, run_dirs)
    hosts: set[str] = set()
    runner = web.AppRunner(viewer.app(lambda: hosts), access_log=None)
    try:
        await runner.setup()
        site = web.TCPSite(runner, HOST, port or 0)
        try:
            await site.start()
        except OSError as exc:
            raise RaqError(f"cannot listen on {HOST}:{port or 0}: {exc.strerror}") from None
        bound = runner.addresses[0][1]
        hosts.update({f"{HOST}:{bound}", f"localhost:{bound}"})
        viewer.start_search_indexes()
        url = f"http://{HOST}:{bound}/"
        announce(f"raq view: {url}  (Ctrl-C stops it)")
        if open_browser:
            await asyncio.to_thread(webbrowser.open, url)
        stop = asyncio.Event()
        with contextlib.suppress(NotImplementedError):  # not on Windows
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
        viewer.close()
