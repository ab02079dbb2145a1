"""``python -m projections``: run, status, skip, reset and rebuild from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from projection_defs import fill_ledger
from test_projection_failures import broken_tokens, fragile_rows

from fasm_es import open_store
from projections import Runner
from projections.__main__ import load, main

TARGET = "test_projection_failures:fragile_view"


@pytest.fixture
def urls(tmp_path: Path) -> tuple[str, str]:
    store, view = f"sqlite:///{tmp_path / 'store.db'}", f"sqlite:///{tmp_path / 'views.db'}"
    with open_store(store) as opened:
        fill_ledger(opened, 8)
    broken_tokens.clear()
    return store, view


def _json_status(store: str, view: str, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    assert main(["status", TARGET, "--store", store, "--view", view, "--json"]) == 0
    found: dict[str, object] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    return found


def test_run_status_skip_rebuild_and_reset(
    urls: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    store, view = urls
    common = ["--store", store, "--view", view, "--batch-size", "3"]
    broken_tokens.add("t5")
    assert main(["run", TARGET, *common]) == 1
    err = capsys.readouterr().err
    assert "stopped at log position 6" in err and "'acct-2' version 2" in err

    status = _json_status(store, view, capsys)
    assert status["position"] == 5 and status["head"] == 8 and status["lag_records"] == 3
    failure = status["failure"]
    assert isinstance(failure, dict) and failure["position"] == 6

    assert main(["skip", TARGET, "6", "--reason", "bad entry", "--by", "ops", *common]) == 0
    assert "skipped position 6" in capsys.readouterr().out
    assert main(["run", TARGET, *common]) == 0
    assert "applied 2 records" in capsys.readouterr().out
    assert _json_status(store, view, capsys)["skipped"] == 1

    broken_tokens.clear()
    assert main(["rebuild", TARGET, "--no-progress", *common]) == 0
    assert "rebuilt up to position 8" in capsys.readouterr().out
    assert main(["reset", TARGET, *common]) == 0
    assert _json_status(store, view, capsys)["position"] == 0
    with Runner(load(TARGET), store, view) as runner:
        assert runner.rows(fragile_rows) == []


def test_a_target_that_is_not_a_projection_is_refused() -> None:
    with pytest.raises(SystemExit, match="not module:attribute"):
        main(["status", "no_colon_here"])
    with pytest.raises(SystemExit, match="not a Projection"):
        main(["status", "test_projection_failures:broken_tokens"])
