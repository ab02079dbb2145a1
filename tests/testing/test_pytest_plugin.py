"""The pytest plugin: its options are parsed, applied by the ``fasm_simulate`` fixture,
and a failing simulation says how to rerun just its seed."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

SPEC = """
import random

from examples.counter.machine import Counter, Increment
from fasm_es.testing import Simulation


class NoWorld:
    def answer(self, stream, action_id, action, rng):
        raise AssertionError("the counter emits no tracked actions")


def increments(rng: random.Random, stream: str, state: object) -> Increment:
    return Increment(by=rng.randint(1, 3))


def below_ten(state) -> str | None:
    return None if state.value < 10 else f"value {state.value} reached 10"


COUNTER = Simulation(machine=Counter, inputs=increments, world=NoWorld)
CAPPED = Simulation(machine=Counter, inputs=increments, world=NoWorld, invariants=[below_ten])
"""

TESTS = """
from sim_specs import CAPPED, COUNTER


def test_counter(fasm_simulate):
    report = fasm_simulate(COUNTER, seeds=3, steps=20)
    print("RAN", report.seeds, report.steps)


def test_capped(fasm_simulate):
    fasm_simulate(CAPPED, seeds=2, steps=50)
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(sim_specs=SPEC, test_sims=TESTS)
    pytester.syspathinsert()
    return pytester


def test_the_test_arguments_apply_without_options(project: pytest.Pytester) -> None:
    result = project.runpytest("-s", "-k", "test_counter")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["*machine Counter: 3 seeds x 20 steps passed*", "RAN [0, 1, 2] 20"]
    )


def test_seed_and_steps_options_override_the_test(project: pytest.Pytester) -> None:
    result = project.runpytest(
        "-s", "-k", "test_counter", "--fasm-seed", "7", "--fasm-seed", "9", "--fasm-steps", "5"
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["RAN [7, 9] 5"])


def test_seeds_option_runs_that_many(project: pytest.Pytester) -> None:
    result = project.runpytest("-s", "-k", "test_counter", "--fasm-seeds", "5")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["RAN [0, 1, 2, 3, 4] 20"])


def test_contradictory_or_impossible_options_are_usage_errors(project: pytest.Pytester) -> None:
    result = project.runpytest("--fasm-seed", "1", "--fasm-seeds", "3")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*use --fasm-seed or --fasm-seeds, not both*"])
    result = project.runpytest("--fasm-steps", "0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--fasm-steps must be at least 1, got 0*"])


def test_a_failure_prints_the_seed_and_a_rerun_command(project: pytest.Pytester) -> None:
    result = project.runpytest("-k", "test_capped")
    result.assert_outcomes(failed=1)
    text = result.stdout.str()
    assert "check 'invariant': below_ten" in text
    rerun_note = "rerun this test on the failing seed: pytest test_sims.py::test_capped"
    assert f"{rerun_note} --fasm-seed 0 --fasm-steps" in text

    # The printed rerun command reproduces the failure on its own.
    line = next(line for line in text.splitlines() if rerun_note in line)
    args = line.split("pytest ", 1)[1].split()
    rerun = project.runpytest(*args)
    rerun.assert_outcomes(failed=1)
    assert "seed 0" in rerun.stdout.str()


def test_options_are_listed_in_help(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*--fasm-seed=SEED*", "*--fasm-seeds=N*", "*--fasm-steps=N*"])
