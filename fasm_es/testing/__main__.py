"""Replay a simulation from the command line.

``python -m fasm_es.testing MODULE:SPEC --seed S --steps N`` runs one seed, as
the command printed by a failing simulation; ``--seeds N`` runs seeds 0..N-1.
Exit status: 0 when every check held, 1 when one failed, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

from fasm_es.testing.simulate import SimulationFailure, simulate
from fasm_es.testing.spec import Simulation


def load_spec(location: str) -> Simulation[Any]:
    """Import ``module:attribute`` and check it is a :class:`Simulation`."""
    module_name, sep, attribute = location.partition(":")
    if not sep or not module_name or not attribute:
        raise SystemExit(f"error: expected MODULE:ATTRIBUTE, got {location!r}")
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        spec = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise SystemExit(f"error: cannot load {location!r}: {exc}") from exc
    if not isinstance(spec, Simulation):
        raise SystemExit(f"error: {location!r} is a {type(spec).__name__}, not a Simulation")
    return spec


def main(argv: list[str] | None = None) -> int:
    """Run the simulation the arguments name; see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m fasm_es.testing", description=__doc__)
    parser.add_argument("spec", help="MODULE:ATTRIBUTE of a fasm_es.testing.Simulation")
    parser.add_argument("--seed", type=int, help="run this one seed")
    parser.add_argument("--seeds", type=int, default=10, help="run seeds 0..N-1 (default 10)")
    parser.add_argument("--steps", type=int, default=1000, help="steps per seed (default 1000)")
    args = parser.parse_args(argv)
    spec = load_spec(args.spec)
    spec.location = spec.location or args.spec
    seeds = [args.seed] if args.seed is not None else list(range(args.seeds))
    try:
        report = simulate(spec, seeds, args.steps)
    except SimulationFailure as failure:
        print(failure, file=sys.stderr)
        return 1
    print(report.summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
