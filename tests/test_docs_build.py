"""The documentation site builds with no warning, and the reference covers the public API.

``mkdocs build --strict`` fails on any warning: a broken link or anchor, a
page missing from the nav, a docstring mkdocstrings cannot render. The
pages' Python blocks are run by ``tests/test_docs.py``.
"""

from __future__ import annotations

import fnmatch
import importlib
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

import fasm_es
import fasm_es.testing
import projections

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
DIRECTIVE = re.compile(r"^::: ([\w.]+)$", re.MULTILINE)
TEST_REFERENCE = re.compile(r"`(tests/[\w/]+\.py)(?:::([\w*]+))?`")


def test_mkdocs_builds_the_site_with_no_warning(tmp_path: Path) -> None:
    for needed in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
        pytest.importorskip(
            needed, reason="the docs extra is not installed: pip install -e .[docs]"
        )
    site = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    assert build.returncode == 0, build.stderr
    assert "WARNING" not in build.stderr, build.stderr
    reference = (site / "api" / "fasm_es" / "index.html").read_text()
    # Docstrings were rendered, and their Sphinx roles turned into plain code.
    assert "The streams of one machine in one event store." in reference
    assert ":class:" not in reference and ":meth:" not in reference
    assert (site / "tutorial" / "index.html").is_file()


def resolve(path: str) -> object:
    """The object a ``::: path`` directive names: the longest importable module, then attributes."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            found = getattr(found, name)
        return found
    raise AssertionError(f"::: {path} names nothing importable")


def documented() -> list[object]:
    """Every object the API pages render, a module standing for its public members."""
    found: list[object] = []
    for page in sorted((DOCS / "api").glob("*.md")):
        for path in DIRECTIVE.findall(page.read_text()):
            target = resolve(path)
            found.append(target)
            if isinstance(target, types.ModuleType):
                found += [getattr(target, n) for n in dir(target) if not n.startswith("_")]
    return found


@pytest.mark.parametrize(
    "package", [fasm_es, fasm_es.testing, projections], ids=lambda p: p.__name__
)
def test_every_public_name_is_in_the_api_reference(package: types.ModuleType) -> None:
    rendered = documented()
    missing = [
        name
        for name in package.__all__
        if not any(getattr(package, name) is target for target in rendered)
    ]

    assert missing == [], f"add '::: ...' for these to docs/api/: {missing}"


def test_the_tests_named_by_the_docs_exist() -> None:
    references = [
        (page.name, file, pattern)
        for page in sorted(DOCS.glob("*.md"))
        for file, pattern in TEST_REFERENCE.findall(page.read_text())
    ]
    assert references, "docs/concepts.md names the test of each guarantee"
    for page, file, pattern in references:
        source = ROOT / file
        assert source.is_file(), f"{page} names {file}, which does not exist"
        if pattern:
            names = re.findall(r"^(?:async )?def (test_\w+)", source.read_text(), re.MULTILINE)
            assert fnmatch.filter(names, pattern), f"{page}: no test {pattern} in {file}"
