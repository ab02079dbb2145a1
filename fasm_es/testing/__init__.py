"""Deterministic simulation testing for fasm-es machines.

- :func:`simulate` runs a :class:`Simulation` spec (machine, inputs, world,
  invariants, faults) on the real engine in virtual time;
- :func:`scenario` writes given/when/then unit tests of a machine;
- :func:`machine_test` / :func:`simulation_test` build a hypothesis
  rule-based state machine, and :func:`inputs` / :func:`results` are
  hypothesis strategies from a machine's declared types.

The hypothesis-based names are imported on first use, so a project that
only simulates does not need hypothesis installed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from fasm_es.testing.scenario import ScenarioError, completed, elapsed, scenario
from fasm_es.testing.simulate import SimulationFailure, SimulationReport, simulate
from fasm_es.testing.spec import Faults, Simulation, World

if TYPE_CHECKING:
    from fasm_es.testing.stateful import MachineTest, machine_test, simulation_test
    from fasm_es.testing.strategies import StrategyError, inputs, results, tracked_actions

_NEEDS_HYPOTHESIS = {
    "MachineTest": "fasm_es.testing.stateful",
    "machine_test": "fasm_es.testing.stateful",
    "simulation_test": "fasm_es.testing.stateful",
    "StrategyError": "fasm_es.testing.strategies",
    "inputs": "fasm_es.testing.strategies",
    "results": "fasm_es.testing.strategies",
    "tracked_actions": "fasm_es.testing.strategies",
}


def __getattr__(name: str) -> Any:
    module = _NEEDS_HYPOTHESIS.get(name)
    if module is None:
        raise AttributeError(f"module 'fasm_es.testing' has no attribute {name!r}")
    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as exc:
        if exc.name != "hypothesis":
            raise
        raise ImportError(
            f"fasm_es.testing.{name} needs hypothesis: pip install hypothesis"
        ) from exc


__all__ = [
    "Faults",
    "MachineTest",
    "ScenarioError",
    "Simulation",
    "SimulationFailure",
    "SimulationReport",
    "StrategyError",
    "World",
    "completed",
    "elapsed",
    "inputs",
    "machine_test",
    "results",
    "scenario",
    "simulate",
    "simulation_test",
    "tracked_actions",
]
