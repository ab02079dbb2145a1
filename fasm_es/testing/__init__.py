"""Deterministic simulation testing for fasm-es machines."""

from fasm_es.testing.simulate import SimulationFailure, SimulationReport, simulate
from fasm_es.testing.spec import Faults, Simulation, World

__all__ = ["Faults", "Simulation", "SimulationFailure", "SimulationReport", "World", "simulate"]
