"""docs/cli.md stays true to the code: the exit codes and the commands it documents."""

from __future__ import annotations

import re
from pathlib import Path

from fasm_es.cli import ExitCode
from tests.cli.conftest import Run

PAGE = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def section(title: str) -> str:
    text = PAGE.read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def test_every_exit_code_is_documented_and_no_other() -> None:
    documented = {int(n) for n in re.findall(r"^\| (\d+) \|", section("Exit codes"), re.M)}

    assert documented == {int(code) for code in ExitCode}


def test_every_command_is_documented(fasm: Run) -> None:
    listed = fasm("--help").stdout + fasm("audit", "--help").stdout
    commands = set(re.findall(r"^│ (\w+) ", listed, re.M)) - {"audit"}
    headings = set(re.findall(r"^### `(?:audit )?(\w+)", PAGE.read_text(), re.M))

    assert {"demo", "streams", "log", "state", "replay", "outstanding", "verify", "export"} <= (
        commands
    )
    assert commands <= headings
