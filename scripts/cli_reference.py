"""Regenerate the CLI reference in README.md from `raq --help` (so the docs never drift).

python scripts/cli_reference.py          # rewrite the section
python scripts/cli_reference.py --check  # exit 1 if README.md is out of date
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- cli-reference:start -->", "<!-- cli-reference:end -->"


def help_text(*args: str) -> str:
    env = {**os.environ, "COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"}
    done = subprocess.run(
        [sys.executable, "-m", "raq", *args, "--help"], capture_output=True, text=True, env=env
    )
    lines = [line.rstrip() for line in done.stdout.splitlines()]
    return "\n".join(lines).strip("\n")


def commands() -> list[str]:
    text = help_text()
    block = text.split("Commands", 1)[1]
    return re.findall(r"^│ ([a-z][a-z-]+)\s", block, flags=re.MULTILINE)


def reference() -> str:
    parts = [START, "", "```text", "$ raq --help", help_text(), "```"]
    for command in commands():
        parts += ["", "```text", f"$ raq {command} --help", help_text(command), "```"]
    return "\n".join([*parts, "", END])


def main() -> int:
    text = README.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(text):
        print(f"README.md has no {START} … {END} section", file=sys.stderr)
        return 1
    updated = pattern.sub(lambda _: reference(), text)
    if "--check" in sys.argv:
        if updated != text:
            print("README.md's CLI reference is out of date: run python scripts/cli_reference.py")
            return 1
        return 0
    README.write_text(updated, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
