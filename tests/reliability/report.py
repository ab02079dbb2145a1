"""Print the figures of a reliability run (``make torture``) as a table.

Run as ``python tests/reliability/report.py FILE``, where FILE holds the JSON
lines the tests wrote (``FASM_ES_TORTURE_REPORT``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def torture_row(run: dict[str, Any]) -> str:
    """One torture run as a Markdown table row."""
    return (
        f"| {run['run']} | {run['kills']} ({run['kills_during_restore']} during restore) "
        f"| {run['acknowledged']:,} | {run['rejected']:,} | {run['losses']} "
        f"| {run['duplicates']} | {run['redispatched']:,} | {run['service_repeats']:,} "
        f"| {len(run['problems'])} | {run['seconds']:.0f} s |"
    )


def main(path: Path) -> int:
    """Print every run in ``path``; 1 if any torture run lost, doubled or broke anything."""
    runs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    torture = [r for r in runs if r["run"].startswith("torture")]
    if torture:
        print(
            "| run | kills survived | inputs acknowledged | rejected | losses | duplicates "
            "| outstanding re-dispatched | repeat requests refused | problems | time |"
        )
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for run in torture:
            print(torture_row(run))
    for run in runs:
        if not run["run"].startswith("torture"):
            name = run.pop("run")
            print(f"\n{name}: {json.dumps(run, sort_keys=True)}")
    failed = [r for r in torture if r["losses"] or r["duplicates"] or r["problems"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
