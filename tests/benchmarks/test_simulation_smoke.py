"""The simulation benchmark at a tiny size: both sides run every step, the profile adds up.

Speed is not checked here (that is what ``make bench`` is for); correctness is.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks import simulation
from benchmarks.__main__ import main

COFFEE = simulation.COFFEE_SHOP_SPEC


def test_bare_loop_runs_every_step_and_is_the_same_for_a_seed() -> None:
    spec = simulation.load_spec(COFFEE)
    counts = simulation.bare_loop(spec, 7, 300)
    assert counts == simulation.bare_loop(spec, 7, 300)
    assert counts["steps"] == 300
    outcomes = counts["accepted"] + counts["rejected"] + counts["invalid"] + counts["none"]
    assert outcomes == 300
    # The coffee shop's generator sends some malformed payloads and some refused redemptions.
    assert counts["accepted"] > 0
    assert counts["invalid"] > 0
    assert counts["rejected"] > 0


def test_default_spec_is_the_dentist_when_it_exists() -> None:
    dentist = importlib.util.find_spec(simulation.DENTIST_SPEC.partition(":")[0])
    expected = simulation.DENTIST_SPEC if dentist is not None else COFFEE
    assert simulation.default_spec() == expected
    assert simulation.load_spec(expected).streams


def test_load_spec_refuses_what_is_not_a_simulation() -> None:
    with pytest.raises(TypeError, match=r"not a fasm_es\.testing\.Simulation"):
        simulation.load_spec("examples.coffee_shop.simulation:inputs")


def test_run_reports_the_simulator_beside_the_bare_loop() -> None:
    result = simulation.run(COFFEE, seeds=2, steps=40, repeat=1)
    assert result.machine == "CoffeeShop"
    assert result.total_steps == 80
    ours = result.ours.runs[0].result
    assert ours["steps"] == 80
    assert ours["stats"]["steps"] == 80
    assert result.bare.runs[0].result["steps"] == 80
    (figure,) = result.figures()
    assert figure.ratio == pytest.approx(result.bare.median_seconds / result.ours.median_seconds)
    assert result.profile is None


def test_layers_take_their_callers_time_for_built_ins() -> None:
    simulator = ("/x/fasm_es/testing/simulator.py", 1, "step")
    engine = ("/x/fasm_es/engine.py", 1, "submit")
    builtin = ("~", 0, "<built-in method builtins.len>")
    stats: dict[Any, Any] = {
        simulator: (1, 1, 1.0, 4.0, {}),
        engine: (1, 1, 2.0, 3.0, {}),
        # 3 s of its own: 1 s when called by the simulator, 2 s by the engine.
        builtin: (3, 3, 3.0, 3.0, {simulator: (1, 1, 1.0, 1.0), engine: (2, 2, 2.0, 2.0)}),
    }
    layers = simulation._by_layer(stats)
    assert layers == pytest.approx({"simulator": 2.0, "engine": 4.0})
    assert simulation.layer_of("/usr/lib/python3.11/asyncio/base_events.py") == "asyncio"
    assert simulation.layer_of("/usr/lib/python3.11/copy.py") == simulation.COPYING
    assert simulation.layer_of("/x/examples/coffee_shop/machine.py") is not None
    assert simulation.layer_of("~") is None


def test_copying_counts_for_whoever_asked_for_the_copy_through_recursion() -> None:
    probe = ("/x/fasm_es/testing/probe.py", 1, "stf")
    deepcopy = ("/usr/lib/python3.11/copy.py", 128, "deepcopy")
    copy_dict = ("/usr/lib/python3.11/copy.py", 227, "_deepcopy_dict")
    model_copy = ("/x/pydantic/main.py", 1, "__deepcopy__")
    stats: dict[Any, Any] = {
        probe: (1, 1, 0.5, 10.0, {}),
        # deepcopy recurses through _deepcopy_dict and pydantic's __deepcopy__.
        deepcopy: (
            9,
            1,
            6.0,
            9.0,
            {probe: (1, 1, 0.1, 9.0), copy_dict: (5, 5, 4.0, 8.0), model_copy: (3, 3, 1.9, 2.0)},
        ),
        copy_dict: (5, 5, 2.0, 8.0, {deepcopy: (5, 5, 2.0, 8.0)}),
        model_copy: (3, 3, 1.0, 3.0, {deepcopy: (3, 3, 1.0, 3.0)}),
    }
    layers = simulation._by_layer(stats)
    assert layers == pytest.approx({"simulator": 0.5, "deepcopy for the simulator": 9.0})


def test_profile_accounts_for_the_whole_run() -> None:
    profile = simulation.profile_simulation(COFFEE, "1", "30")
    layers = profile["layers"]
    assert {"simulator", "engine", "codec", "asyncio"} <= set(layers)
    assert all(seconds >= 0 for seconds in layers.values())
    assert len(profile["own"]) == simulation.TOP
    paths = profile["paths"]
    assert len(paths) == simulation.TOP
    # The outer loop, which every step passes through, is left out; the rest is by time.
    names = {entry["function"].split(" ")[0] for entry in paths}
    assert names.isdisjoint(simulation.OUTER_LOOP)
    seconds = [entry["seconds"] for entry in paths]
    assert seconds == sorted(seconds, reverse=True)
    assert all(entry["calls"] >= 1 for entry in paths)
    json.dumps(profile)  # it travels back from the child process as JSON


def test_command_line_ends_with_a_json_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["simulate", "--spec", COFFEE, "--seeds", "1", "--steps", "30", "--repeat", "1"]
    assert main([*argv, "--cache-dir", str(tmp_path)]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["benchmarks"]
    assert report["simulate"]["spec"] == COFFEE
    assert report["simulate"]["steps"] == 30
    assert set(report["simulate"]["steps_per_s"]) == {"ours", "bare"}
