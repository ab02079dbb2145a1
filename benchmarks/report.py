"""Reporting: each figure beside its baseline, the ratio, and the goal it is held to.

Every benchmark returns :class:`Figure` rows; :func:`render` prints them as a
table for people and :func:`json_line` as one line for scripts.
"""

from __future__ import annotations

import json
import platform
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table


@dataclass(frozen=True, slots=True)
class Goal:
    """A bound on a figure's ratio to its baseline (either side may be open)."""

    at_least: float | None = None
    at_most: float | None = None

    def met(self, ratio: float) -> bool:
        """Whether ``ratio`` is within the bound."""
        if self.at_least is not None and ratio < self.at_least:
            return False
        return self.at_most is None or ratio <= self.at_most

    def __str__(self) -> str:
        parts = []
        if self.at_least is not None:
            parts.append(f">= {self.at_least:g}x")
        if self.at_most is not None:
            parts.append(f"<= {self.at_most:g}x")
        return " and ".join(parts)


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured figure of ours beside a baseline measured in the same run.

    ``floor`` bounds both values from below when the ratio is taken, for
    figures (like memory growth) where values near zero are noise.
    """

    key: str
    label: str
    unit: str
    ours: float
    baseline_label: str
    baseline: float
    goal: Goal | None = None
    floor: float = 0.0

    @property
    def ratio(self) -> float:
        """``ours / baseline`` (each raised to ``floor`` first)."""
        denominator = max(self.baseline, self.floor)
        if denominator == 0:
            return float("inf") if self.ours > 0 else 1.0
        return max(self.ours, self.floor) / denominator

    @property
    def met(self) -> bool | None:
        """Whether the goal is met; None when the figure has no goal."""
        return None if self.goal is None else self.goal.met(self.ratio)

    def as_json(self) -> dict[str, Any]:
        """The figure as plain JSON values."""
        return {
            "ours": self.ours,
            "baseline": self.baseline,
            "baseline_label": self.baseline_label,
            "unit": self.unit,
            "ratio": round(self.ratio, 4),
            "goal": str(self.goal) if self.goal else None,
            "met": self.met,
        }


def _amount(value: float, unit: str) -> str:
    if unit == "MB":
        return f"{value:,.1f} MB"
    return f"{value:,.0f} {unit}"


def render(console: Console, title: str, figures: Sequence[Figure], notes: Sequence[str]) -> None:
    """Print ``figures`` as a table titled ``title``, followed by ``notes``."""
    table = Table(title=title, title_justify="left")
    table.add_column("figure")
    table.add_column("ours", justify="right")
    table.add_column("baseline")
    table.add_column("baseline value", justify="right")
    table.add_column("ratio", justify="right")
    table.add_column("goal")
    table.add_column("met")
    for f in figures:
        met = "" if f.met is None else ("[green]yes[/]" if f.met else "[red]NO[/]")
        table.add_row(
            f.label,
            _amount(f.ours, f.unit),
            f.baseline_label,
            _amount(f.baseline, f.unit),
            f"{f.ratio:.2f}x",
            str(f.goal) if f.goal else "",
            met,
        )
    console.print(table)
    for note in notes:
        console.print(note, style="dim", highlight=False)


def json_line(results: Mapping[str, Mapping[str, Any]], elapsed_s: float) -> str:
    """One line of JSON: every benchmark's results, where they ran and the run's length."""
    payload = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "elapsed_s": round(elapsed_s, 1),
        "benchmarks": results,
    }
    return json.dumps(payload, separators=(",", ":"), sort_keys=True)
