"""Simulation: steps per second of the simulator, beside a bare loop calling the STF.

- **ours**: ``fasm_es.testing.simulate(spec, seeds=range(K), steps=N)`` with the
  spec's own fault rates (every fault on) and every automatic check on: the
  real engine on a virtual-time event loop, an in-memory store, the
  simulated world, crashes and restores, second writers, replay, restore,
  determinism and invariant checks.
- **bare loop**: the same number of steps, each one generating an input with
  the spec's ``inputs(rng, stream, state)`` from a ``random.Random(seed)``
  against a plain state per stream, validating it with the machine's codec
  (as the engine does at the edge) and calling ``machine.stf(state,
  Normal(value, meta), actions)`` directly, counting rejections and invalid
  payloads. No engine, no store, no world, no checks: the floor for any
  simulator of this machine.

The spec is the dentist-booking example's when it exists, else the coffee
shop's (``--spec module:attribute`` picks another). Each side runs in a fresh
process that imports the spec and builds the machine's codecs before its clock
starts; repetitions alternate and each rate is the median.

``--profile`` also runs the simulation once under cProfile and prints where
its time goes, by layer (see :func:`layer_of`).
"""

from __future__ import annotations

import argparse
import cProfile
import importlib
import importlib.util
import pstats
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.measure import Run, Runs, run_isolated
from benchmarks.report import Figure, Goal, render
from fasm_es import Codec, InvalidInput, Metadata, Normal, Rejection
from fasm_es.machine import drive
from fasm_es.snapshot import SnapshotCodec
from fasm_es.testing import Simulation, simulate

DENTIST_SPEC = "examples.dentist_booking.simulation:SIMULATION"
COFFEE_SHOP_SPEC = "examples.coffee_shop.simulation:SIMULATION"

DEFAULT_SEEDS = 3
DEFAULT_STEPS = 1_000
DEFAULT_REPEAT = 3
QUICK = {"seeds": 1, "steps": 200, "repeat": 1}

BARE_GOAL = Goal(at_least=0.25)

Progress = Callable[[str], None]


def default_spec() -> str:
    """The dentist-booking spec when its module exists, else the coffee shop's."""
    module = DENTIST_SPEC.partition(":")[0]
    return DENTIST_SPEC if importlib.util.find_spec(module) is not None else COFFEE_SHOP_SPEC


def load_spec(location: str) -> Simulation[Any]:
    """The :class:`~fasm_es.testing.Simulation` at ``module:attribute``."""
    module, _, attribute = location.partition(":")
    spec = getattr(importlib.import_module(module), attribute or "SIMULATION")
    if not isinstance(spec, Simulation):
        raise TypeError(f"{location} is {type(spec).__name__}, not a fasm_es.testing.Simulation")
    return spec


def _prepared(location: str) -> Simulation[Any]:
    # Codecs are built once per machine class; both sides build theirs before the clock starts.
    spec = load_spec(location)
    machine = spec.machine()
    Codec.for_machine(machine)
    SnapshotCodec.for_machine(machine)
    return spec


# -- the two sides (each run in a fresh process) ---------------------------------------------


def simulate_steps(location: str, seeds: str, steps: str) -> dict[str, Any]:
    """``simulate(spec, seeds=range(seeds), steps=steps)``; its step count, stats and timings."""
    spec = _prepared(location)
    started, cpu_started = time.perf_counter(), time.process_time()
    report = simulate(spec, seeds=range(int(seeds)), steps=int(steps))
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    return {
        "machine": report.machine,
        "steps": report.stats.steps,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "stats": vars(report.stats),
    }


def bare_loop(spec: Simulation[Any], seed: int, steps: int) -> dict[str, int]:
    """``steps`` generated inputs through the machine's STF directly; the outcome counts."""
    machine = spec.machine()
    codec = Codec.for_machine(machine)
    rng = random.Random(seed)
    streams = list(spec.streams)
    states = {stream: machine.initial_state() for stream in streams}
    counts = {"steps": 0, "accepted": 0, "rejected": 0, "invalid": 0, "none": 0}
    for step in range(steps):
        counts["steps"] += 1
        stream = rng.choice(streams)
        value = spec.inputs(rng, stream, states[stream])
        if value is None:
            counts["none"] += 1
            continue
        try:
            validated = codec.validate_input(value)
        except InvalidInput:
            counts["invalid"] += 1
            continue
        meta = Metadata(accepted_at=spec.start + timedelta(milliseconds=step))
        try:
            drive(
                machine.stf(states[stream], Normal(validated, meta), machine.new_actions()),
                machine.name,
                "stf",
            )
        except Rejection:
            counts["rejected"] += 1
        else:
            counts["accepted"] += 1
    return counts


def bare_steps(location: str, seeds: str, steps: str) -> dict[str, Any]:
    """The bare loop for each of ``seeds`` seeds, ``steps`` steps each; counts and timings."""
    spec = _prepared(location)
    totals: dict[str, int] = {}
    started, cpu_started = time.perf_counter(), time.process_time()
    for seed in range(int(seeds)):
        for name, count in bare_loop(spec, seed, int(steps)).items():
            totals[name] = totals.get(name, 0) + count
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    return {"steps": totals["steps"], "seconds": seconds, "cpu_seconds": cpu_seconds, **totals}


# -- where the simulator's time goes ---------------------------------------------------------

COPYING = "deepcopy"

LAYERS = (
    ("simulator", ("fasm_es/testing/",)),
    (
        "engine",
        tuple(
            f"fasm_es/{name}.py"
            for name in (
                "engine",
                "group_commit",
                "dispatch",
                "outstanding",
                "restore",
                "timers",
                "subscribers",
                "sync",
                "clock",
            )
        ),
    ),
    ("streams and fold", ("fasm_es/streams.py", "fasm_es/fold.py", "fasm_es/actions.py")),
    ("codec", ("fasm_es/record.py", "fasm_es/snapshot.py", "fasm_es/schema.py")),
    ("store", ("fasm_es/store.py", "fasm_es/backends/", "eventsourcing/")),
    ("asyncio", ("asyncio/", "/selectors.py")),
    (COPYING, ("/copy.py",)),
    ("user code (STF, inputs, world, invariants)", ("examples/",)),
)
"""Layers by source path, first match wins. Time spent in anything else (built-ins,
pydantic, the standard library) counts for the layer of whoever called it; time in
``copy.deepcopy`` is shown apart, as copying for the layer that asked for the copy."""

_Func = tuple[str, int, str]

TOP = 12
"""How many functions each list of the profile shows."""
OUTER_LOOP = frozenset({"simulate", "run", "_run_steps", "_execute"})
"""The simulator's outer loop: every step passes through it, so it tells nothing."""


def layer_of(filename: str) -> str | None:
    """The layer a function defined in ``filename`` belongs to; None to count it for its callers."""
    path = filename.replace("\\", "/")
    for layer, parts in LAYERS:
        if any(part in path for part in parts):
            return layer
    return None


def _copying(stats: dict[_Func, Any]) -> set[_Func]:
    """The functions of ``copy`` and those only ever called from them (``__deepcopy__`` hooks)."""
    inside = {func for func in stats if layer_of(func[0]) == COPYING}
    grown = True
    while grown:
        grown = False
        for func, (_, _, _, _, callers) in stats.items():
            if func not in inside and callers and all(c in inside for c in callers):
                inside.add(func)
                grown = True
    return inside


def _by_layer(stats: dict[_Func, Any]) -> dict[str, float]:
    """Own time per layer, from ``pstats`` data: ``{func: (cc, nc, tottime, cumtime, callers)}``.

    cProfile keeps one level of callers, not whole stacks, so time that belongs
    to no layer is split among its callers in proportion to the time each
    spent in it. Copying recurses through itself and pydantic's hooks, so it
    is split by entry instead: among the functions outside it that called it,
    in proportion to the cumulative time of those calls.
    """
    settled: dict[_Func, dict[str, float]] = {}

    def via_callers(func: _Func, seen: frozenset[_Func]) -> tuple[dict[str, float], bool]:
        result: dict[str, float] = {}
        total, complete = 0.0, True
        for caller, (_, calls, tottime, _) in stats[func][4].items():
            if caller in seen or caller not in stats:
                complete = complete and caller not in seen
                continue
            layers, caller_complete = shares(caller, seen | {func})
            complete = complete and caller_complete
            weight = tottime + 1e-9 * calls  # calls break ties between callers of no time
            if layers:
                total += weight
                for name, share in layers.items():
                    result[name] = result.get(name, 0.0) + share * weight
        return ({name: value / total for name, value in result.items()} if total else {}), complete

    def shares(func: _Func, seen: frozenset[_Func]) -> tuple[dict[str, float], bool]:
        """Fractions of func's own time per layer, and whether no cycle was cut to find them."""
        if func in settled:
            return settled[func], True
        layer = layer_of(func[0])
        result, complete = via_callers(func, seen) if layer is None else ({layer: 1.0}, True)
        if complete:
            settled[func] = result
        return result, complete

    copying = _copying(stats)
    settled = {func: {} for func in copying}
    entries: dict[_Func, float] = {}
    for func in copying:
        for caller, (_, _, _, cumtime) in stats[func][4].items():
            if caller not in copying and caller in stats:
                entries[caller] = entries.get(caller, 0.0) + cumtime
    total = sum(entries.values())
    for_copying: dict[str, float] = {}
    for caller, weight in entries.items():
        for name, share in (shares(caller, frozenset())[0] or {"other": 1.0}).items():
            key = f"{COPYING} for the {name}"
            for_copying[key] = for_copying.get(key, 0.0) + share * weight / total
    # Answers found while copying counted for nothing are not kept.
    settled = {func: dict(for_copying or {COPYING: 1.0}) for func in copying}

    layers: dict[str, float] = {}
    for func, (_, _, tottime, _, _) in stats.items():
        for name, share in (shares(func, frozenset())[0] or {"other": 1.0}).items():
            layers[name] = layers.get(name, 0.0) + tottime * share
    return layers


def _where(func: _Func) -> str:
    file, line, name = func
    path = file.replace("\\", "/")
    return f"{name} ({path.rsplit('/', 1)[-1]}:{line})"


def profile_simulation(location: str, seeds: str, steps: str) -> dict[str, Any]:
    """Run the simulation under cProfile: seconds per layer, and the hot functions.

    ``own``: the functions with the most time of their own. ``paths``: the
    fasm-es and example functions with the most cumulative time, below the
    simulator's outer loop: they show which path the time is spent on.
    """
    spec = _prepared(location)
    profiler = cProfile.Profile()
    profiler.enable()
    simulate(spec, seeds=range(int(seeds)), steps=int(steps))
    profiler.disable()
    stats: dict[_Func, Any] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    own = sorted(stats.items(), key=lambda item: item[1][2], reverse=True)[:TOP]
    ours = [
        (func, timing)
        for func, timing in stats.items()
        if any(part in func[0].replace("\\", "/") for part in ("fasm_es/", "examples/"))
        and func[2] not in OUTER_LOOP
    ]
    paths = sorted(ours, key=lambda item: item[1][3], reverse=True)[:TOP]
    return {
        "layers": _by_layer(stats),
        "own": [{"function": _where(func), "calls": v[1], "seconds": v[2]} for func, v in own],
        "paths": [{"function": _where(func), "calls": v[1], "seconds": v[3]} for func, v in paths],
    }


# -- the benchmark ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SimulationResult:
    """What one run of the simulation benchmark measured."""

    spec: str
    machine: str
    seeds: int
    steps: int
    ours: Runs
    bare: Runs
    profile: dict[str, Any] | None

    @property
    def total_steps(self) -> int:
        """Steps per run: seeds times steps per seed."""
        return self.seeds * self.steps

    def figures(self) -> list[Figure]:
        """The simulator's steps/s beside the bare loop's, held to the goal."""
        n = self.total_steps
        return [
            Figure(
                "simulation_steps",
                f"simulate {self.machine}, {self.seeds} seeds x {self.steps:,} steps",
                "steps/s",
                self.ours.rate(n),
                "bare loop: inputs + STF",
                self.bare.rate(n),
                BARE_GOAL,
            )
        ]

    def as_json(self) -> dict[str, Any]:
        """Rates, the simulator's counts, per-repetition seconds and any profile, as JSON."""
        n = self.total_steps
        named = {"ours": self.ours, "bare": self.bare}
        return {
            "spec": self.spec,
            "machine": self.machine,
            "seeds": self.seeds,
            "steps": self.steps,
            "repeat": len(self.ours.runs),
            "steps_per_s": {name: round(runs.rate(n)) for name, runs in named.items()},
            "cpu_steps_per_s": {name: round(runs.cpu_rate(n)) for name, runs in named.items()},
            "seconds": {name: runs.seconds for name, runs in named.items()},
            "simulator_stats": self.ours.runs[0].result["stats"],
            "bare_counts": {
                k: v
                for k, v in self.bare.runs[0].result.items()
                if k not in ("seconds", "cpu_seconds")
            },
            "profile": self.profile,
            "figures": {f.key: f.as_json() for f in self.figures()},
        }


def _inner(run: Run, steps: int, name: str) -> Run:
    """The run with the child's own timing (imports and codec building excluded)."""
    result = run.result
    if not isinstance(result, dict) or result.get("steps") != steps:
        raise RuntimeError(f"{name}: ran {result!r}, expected {steps:,} steps")
    return replace(run, seconds=result["seconds"], cpu_seconds=result["cpu_seconds"])


def run(
    spec: str | None = None,
    seeds: int = DEFAULT_SEEDS,
    steps: int = DEFAULT_STEPS,
    repeat: int = DEFAULT_REPEAT,
    *,
    profile: bool = False,
    progress: Progress = lambda _: None,
) -> SimulationResult:
    """Time the simulator and the bare loop ``repeat`` times each, alternating.

    Raises ``RuntimeError`` if a side runs another number of steps, and
    whatever the simulation raises if one of its checks fails.
    """
    if min(seeds, steps, repeat) < 1:
        raise ValueError(f"seeds, steps and repeat must be >= 1: {seeds}, {steps}, {repeat}")
    location = spec or default_spec()
    args = (location, str(seeds), str(steps))
    ours: list[Run] = []
    bare: list[Run] = []
    for round_ in range(1, repeat + 1):
        progress(
            f"simulating {location}: {seeds} seeds x {steps:,} steps, "
            f"repetition {round_} of {repeat}"
        )
        ours.append(
            _inner(
                run_isolated("benchmarks.simulation:simulate_steps", *args), seeds * steps, "ours"
            )
        )
        bare.append(
            _inner(run_isolated("benchmarks.simulation:bare_steps", *args), seeds * steps, "bare")
        )
    profiled = None
    if profile:
        progress("profiling one simulation run")
        profiled = run_isolated("benchmarks.simulation:profile_simulation", *args).result
    machine = str(ours[0].result["machine"])
    return SimulationResult(
        location, machine, seeds, steps, Runs(tuple(ours)), Runs(tuple(bare)), profiled
    )


# -- command line ----------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The simulation benchmark's options."""
    parser.add_argument(
        "--spec",
        default=None,
        help=f"the Simulation spec, module:attribute (default {DENTIST_SPEC} if it exists, "
        f"else {COFFEE_SHOP_SPEC})",
    )
    parser.add_argument("--seeds", type=int, default=None, help="seeds per run")
    parser.add_argument("--steps", type=int, default=None, help="steps per seed")
    parser.add_argument("--repeat", type=int, default=None, help="alternating repetitions")
    parser.add_argument(
        "--profile", action="store_true", help="also profile one run and print where time goes"
    )


def _render_profile(console: Console, profile: dict[str, Any]) -> None:
    layers: dict[str, float] = profile["layers"]
    total = sum(layers.values()) or 1.0
    table = Table(
        title="where the simulator's time goes (cProfile, own time)", title_justify="left"
    )
    table.add_column("layer")
    table.add_column("seconds", justify="right")
    table.add_column("share", justify="right")
    for name, seconds in sorted(layers.items(), key=lambda item: -item[1]):
        if seconds / total >= 0.005:  # the JSON keeps the crumbs
            table.add_row(name, f"{seconds:.2f}", f"{seconds / total:.0%}")
    console.print(table)
    paths = Table(title="fasm-es and example functions by cumulative time", title_justify="left")
    own = Table(title="functions by own time", title_justify="left")
    for listing, unit in ((paths, "cumulative s"), (own, "own s")):
        listing.add_column("function")
        listing.add_column("calls", justify="right")
        listing.add_column(unit, justify="right")
    for entry in profile["paths"]:
        paths.add_row(entry["function"], f"{entry['calls']:,}", f"{entry['seconds']:.2f}")
    for entry in profile["own"]:
        own.add_row(entry["function"], f"{entry['calls']:,}", f"{entry['seconds']:.2f}")
    console.print(paths)
    console.print(own)


def main(args: argparse.Namespace, console: Console, progress: Progress) -> dict[str, Any]:
    """Run the simulation benchmark from parsed options, print its table, return its JSON."""
    defaults = (
        QUICK
        if args.quick
        else {"seeds": DEFAULT_SEEDS, "steps": DEFAULT_STEPS, "repeat": DEFAULT_REPEAT}
    )
    result = run(
        args.spec,
        args.seeds or defaults["seeds"],
        args.steps or defaults["steps"],
        args.repeat or defaults["repeat"],
        profile=args.profile,
        progress=progress,
    )
    n = result.total_steps
    stats = result.ours.runs[0].result["stats"]
    counts = result.bare.runs[0].result
    notes = [
        f"spec {result.spec}; steps/s: median of {len(result.ours.runs)} alternating "
        "repetitions, each in a fresh process, timed after the imports and codec building.",
        f"simulator steps: {stats['submitted']:,} submits ({stats['accepted']:,} accepted, "
        f"{stats['rejected']:,} rejected, {stats['invalid']:,} invalid), "
        f"{stats['delivered']:,} answers, {stats['crashes']:,} crashes, "
        f"{stats['second_writer']:,} second-writer appends, {stats['replay_checks']:,} replay "
        f"checks. bare loop: {counts['accepted']:,} accepted, {counts['rejected']:,} "
        f"rejected, {counts['invalid']:,} invalid.",
        f"ratio ours/bare: {result.ours.rate(n) / result.bare.rate(n):.4f} on wall-clock time; "
        f"on CPU time ours {result.ours.cpu_rate(n):,.0f}, bare {result.bare.cpu_rate(n):,.0f} "
        f"steps/s, {result.ours.cpu_rate(n) / result.bare.cpu_rate(n):.4f}.",
    ]
    render(console, f"simulation: {result.machine}", result.figures(), notes)
    if result.profile is not None:
        _render_profile(console, result.profile)
    return result.as_json()
