"""Leaving the process once a command is done, without the interpreter's teardown.

After a run, Python's shutdown frees pandas, matplotlib, pyarrow and their modules one by one:
about 0.3 s after the last line is printed, which a user (or a CI job) waits for and gains
nothing from. Exit handlers still run and the output is flushed first; the files are all
written and closed by then (the run store and the cache close when the run ends).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
from typing import NoReturn


def leave(code: object) -> NoReturn:
    """Exit with ``code`` (as ``sys.exit`` takes it). The fast way only for an integer code
    and when no other non-daemon thread runs (the ordinary exit would wait for it)."""
    if code is None:
        code = 0
    others = [
        t for t in threading.enumerate()
        if t is not threading.main_thread() and not t.daemon and t.is_alive()
    ]  # fmt: skip
    if not isinstance(code, int) or others:
        sys.exit(code)
    atexit._run_exitfuncs()  # logging's flush, a local server's backstop, libraries' own
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe: nothing left to tell
            stream.flush()
    os._exit(code & 0xFF)
