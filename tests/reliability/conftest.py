"""Reliability tests: the worker processes' folder on the path, and the long runs kept apart.

Tests marked ``torture`` are the long runs of ``make torture``; they are
skipped unless ``FASM_ES_TORTURE=1``, so ``make test`` runs only the short
versions. ``FASM_ES_TORTURE_KILLS`` sets the kills of a long run (default 50)
and ``FASM_ES_TORTURE_REPORT`` a file that collects every run's figures as
JSON lines.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

TORTURE_ENV = "FASM_ES_TORTURE"
KILLS_ENV = "FASM_ES_TORTURE_KILLS"
REPORT_ENV = "FASM_ES_TORTURE_REPORT"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the long runs unless they were asked for."""
    if os.environ.get(TORTURE_ENV) == "1":
        return
    skip = pytest.mark.skip(reason=f"long reliability run: set {TORTURE_ENV}=1 (make torture)")
    for item in items:
        if item.get_closest_marker("torture") is not None:
            item.add_marker(skip)


def long_run_kills() -> int:
    """How many kills a long torture run makes."""
    return int(os.environ.get(KILLS_ENV, "50"))


def record_figures(name: str, figures: dict[str, Any]) -> None:
    """Print a run's figures, and append them to the report file if one is named."""
    line = json.dumps({"run": name, **figures}, sort_keys=True)
    print(f"\nRELIABILITY {line}")
    target = os.environ.get(REPORT_ENV)
    if target:
        with open(Path(target), "a") as f:
            f.write(line + "\n")
