"""``fasm-es simulate``: the report, the failure and its replay commands, and exit codes."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import types
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from examples.coffee_shop.simulation import SIMULATION
from examples.counter import Counter
from fasm_es.cli import ExitCode
from fasm_es.cli.output import Meter, Output
from fasm_es.testing import Simulation, simulate
from tests.cli.conftest import Run

ROOT = Path(__file__).resolve().parents[2]
COFFEE_SIM = "examples.coffee_shop.simulation:SIMULATION"
# Reads the wall clock in its STF: the determinism check fails at the first step.
BROKEN_SIM = "tests.simulation.broken:WALL_CLOCK"


def test_a_passing_simulation_prints_the_summary(fasm: Run) -> None:
    result = fasm("simulate", COFFEE_SIM, "--seeds", "2", "--steps", "40")

    assert result.exit_code == ExitCode.OK, result.output
    assert "machine CoffeeShop: 2 seeds x 40 steps passed (80 steps)" in result.stdout
    assert "crashes" in result.stdout and "duplicates refused" in result.stdout
    assert SIMULATION.location is None  # the imported spec is not changed


def test_json_counts_are_those_of_the_library_run(fasm: Run) -> None:
    result = fasm("simulate", COFFEE_SIM, "--seeds", "3", "--steps", "40", "--json")

    assert result.exit_code == ExitCode.OK, result.output
    document = json.loads(result.stdout)
    expected = simulate(SIMULATION, 3, 40)
    assert document["ok"] is True
    assert document["machine"] == "CoffeeShop"
    assert document["seeds"] == [0, 1, 2]
    assert document["stats"] == asdict(expected.stats)
    assert document["determinism_probes"] == expected.probed_calls


def test_seed_runs_that_one_seed(fasm: Run) -> None:
    result = fasm("simulate", COFFEE_SIM, "--seed", "7", "--seeds", "5", "--steps", "30", "--json")

    assert result.exit_code == ExitCode.OK, result.output
    document = json.loads(result.stdout)
    assert document["seeds"] == [7]
    assert document["stats"] == asdict(simulate(SIMULATION, [7], 30).stats)


def test_a_failure_exits_1_with_seed_step_check_trace_and_replay_command(fasm: Run) -> None:
    result = fasm("simulate", BROKEN_SIM, "--seeds", "2", "--steps", "30")

    assert result.exit_code == ExitCode.CHECK_FAILED, result.output
    out = result.stdout
    assert "simulation of machine WallClockCounter failed: seed 0, step 1 of 30" in out
    assert "check 'determinism'" in out
    assert "shrunk trace (1 of 1 steps):\n  1. submit " in out
    assert f"replay: python -m fasm_es.testing {BROKEN_SIM} --seed 0 --steps 1\n" in out
    assert f"or: fasm-es simulate {BROKEN_SIM} --seed 0 --steps 1\n" in out


def test_a_failure_as_json(fasm: Run) -> None:
    result = fasm("simulate", BROKEN_SIM, "--steps", "30", "--json")

    assert result.exit_code == ExitCode.CHECK_FAILED, result.output
    document = json.loads(result.stdout)
    assert document["ok"] is False
    assert (document["seed"], document["step"], document["check"]) == (0, 1, "determinism")
    assert len(document["shrunk"]) == 1 and document["shrunk"][0].startswith("submit ")
    assert document["command"].endswith(f"{BROKEN_SIM} --seed 0 --steps 1")


def test_both_replay_commands_reproduce_the_failure(fasm: Run) -> None:
    first = json.loads(fasm("simulate", BROKEN_SIM, "--seed", "3", "--json").stdout)

    again = fasm(*first["fasm_es_command"].split()[1:], "--json")
    assert again.exit_code == ExitCode.CHECK_FAILED, again.output
    second = json.loads(again.stdout)
    assert (second["seed"], second["step"], second["check"]) == (3, first["step"], "determinism")

    argv = first["command"].split()
    assert argv[:3] == ["python", "-m", "fasm_es.testing"]
    replay = subprocess.run(
        [sys.executable, *argv[1:]],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert replay.returncode == 1, replay.stdout + replay.stderr
    assert f"seed 3, step {first['step']}" in replay.stderr


@pytest.mark.parametrize(
    ("spec", "code", "words"),
    [
        ("no-colon", ExitCode.USAGE, "is not module:attribute"),
        ("examples.coffee_shop.simulation:", ExitCode.USAGE, "is not module:attribute"),
        ("examples.coffee_shop:simulation.SIMULATION", ExitCode.USAGE, "not module:attribute"),
        ("no_such_module_here:SPEC", ExitCode.MACHINE, "No module named 'no_such_module_here'"),
        ("examples.coffee_shop.simulation:NOPE", ExitCode.MACHINE, "has no attribute 'NOPE'"),
        ("examples.counter:Counter", ExitCode.MACHINE, "not a Simulation"),
    ],
)
def test_a_spec_that_cannot_be_loaded_is_one_line_and_an_exit_code(
    fasm: Run, spec: str, code: ExitCode, words: str
) -> None:
    result = fasm("simulate", spec, "--seeds", "1", "--steps", "5")

    assert result.exit_code == code, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("error: ") and words in result.stderr
    assert result.stderr.count("\n") == 1


def test_bad_counts_are_usage_errors(fasm: Run) -> None:
    result = fasm("simulate", COFFEE_SIM, "--seeds", "0")

    assert result.exit_code == ExitCode.USAGE, result.output


def test_a_spec_that_raises_is_a_machine_error(fasm: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    def inputs(rng: random.Random, stream: str, state: Any) -> Any:
        raise RuntimeError("the generator is broken")

    module = types.ModuleType("raising_spec")
    module.SPEC = Simulation(machine=Counter, inputs=inputs, world=lambda: None)  # type: ignore[attr-defined,arg-type,return-value]
    monkeypatch.setitem(sys.modules, "raising_spec", module)

    result = fasm("simulate", "raising_spec:SPEC", "--seeds", "1", "--steps", "5")

    assert result.exit_code == ExitCode.MACHINE, result.output
    assert "seed 0 on RuntimeError: the generator is broken" in result.stderr


def test_the_progress_bar_moves_once_per_seed_and_leaves_stdout_alone(
    fasm: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = fasm("simulate", COFFEE_SIM, "--seeds", "3", "--steps", "20")
    advanced: list[int] = []
    original = Meter.advance

    def counting(self: Meter, steps: int = 1) -> None:
        if self.active:
            advanced.append(steps)
        original(self, steps)

    monkeypatch.setattr(Output, "shows_progress", property(lambda self: True))
    monkeypatch.setattr(Meter, "advance", counting)
    with_bar = fasm("simulate", COFFEE_SIM, "--seeds", "3", "--steps", "20")

    assert with_bar.exit_code == ExitCode.OK, with_bar.output
    assert advanced == [1, 1, 1]
    assert with_bar.stdout == plain.stdout
