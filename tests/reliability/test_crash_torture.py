"""Crash torture: an engine process SIGKILLed at random moments loses and doubles nothing.

The short runs here (a few kills) are part of every test run; the long runs
(``make torture``, at least 50 kills per backend) are marked ``torture``.
What is checked after each kill is listed in :mod:`torture`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import long_run_kills, record_figures
from torture import Torture, TortureReport

CI_KILLS = 6


def torture(backend: str, store_url: str, tmp_path: Path, kills: int, seed: int) -> TortureReport:
    view_url = f"sqlite:///{tmp_path / 'views.db'}" if backend == "sqlite" else None
    work = tmp_path / "work"
    work.mkdir()
    return Torture(
        store_url, work, backend=backend, kills=kills, seed=seed, view_url=view_url
    ).run()


def check(report: TortureReport, kills: int) -> None:
    assert report.problems == [], "\n".join(report.problems[:20])
    assert report.kills == kills
    assert report.losses == 0
    assert report.duplicates == 0
    # The run did what it claims: inputs were acknowledged, and kills left
    # tracked actions outstanding that restarts dispatched again.
    assert report.acknowledged > 0
    assert report.redispatched > 0
    assert report.service_applied == report.acknowledged


@pytest.mark.backends("sqlite", "postgres")
def test_sigkill_at_random_moments_loses_nothing_and_doubles_nothing(
    backend: str, store_url: str, tmp_path: Path
) -> None:
    report = torture(backend, store_url, tmp_path, CI_KILLS, seed=11)
    record_figures(f"torture-short-{backend}", report.as_json())
    check(report, CI_KILLS)


@pytest.mark.torture
@pytest.mark.backends("sqlite", "postgres")
def test_long_crash_torture(backend: str, store_url: str, tmp_path: Path) -> None:
    kills = long_run_kills()
    report = torture(backend, store_url, tmp_path, kills, seed=2024)
    print(f"\n{report.summary()}")
    record_figures(f"torture-{backend}", report.as_json())
    check(report, kills)
