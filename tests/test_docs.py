"""Every Python code block in the README and docs runs, so the docs never rot.

Each block runs alone, in a fresh temporary directory. A block whose first
line is a file name comment (``# box_office.py``) is a module the reader saves:
it is imported under that name, and the blocks after it on the same page can
import it too.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
MODULE = re.compile(r"\A# (\w+)\.py\n")


def blocks() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        for index, match in enumerate(BLOCK.finditer(page.read_text())):
            found.append((f"{page.relative_to(ROOT)}#{index + 1}", match.group(1)))
    return found


def modules_upto(where: str) -> dict[str, str]:
    """The module blocks (first line ``# name.py``) on the page of ``where``, up to it."""
    page, _, number = where.partition("#")
    found = {}
    for index, match in enumerate(BLOCK.finditer((ROOT / page).read_text()), 1):
        named = MODULE.match(match.group(1))
        if index <= int(number) and named:
            found[named.group(1)] = match.group(1)
    return found


def test_docs_have_code_blocks() -> None:
    assert len(blocks()) >= 2


@pytest.mark.parametrize(("where", "code"), blocks(), ids=[b[0] for b in blocks()])
def test_code_block_runs(
    where: str, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    modules = modules_upto(where)
    for name, source in modules.items():
        (tmp_path / f"{name}.py").write_text(source)
        sys.modules.pop(name, None)  # another page's module of that name
    monkeypatch.syspath_prepend(str(tmp_path))
    namespace: dict[str, object] = {"__name__": f"docs_{abs(hash(where))}"}
    named = MODULE.match(code)
    try:
        if named:
            importlib.import_module(named.group(1))
        else:
            exec(compile(code, where, "exec"), namespace)
    finally:
        for name in modules:
            sys.modules.pop(name, None)
