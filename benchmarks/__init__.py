"""Benchmarks of fasm-es, each figure printed beside a baseline measured in the same run.

Run them all with ``python -m benchmarks`` (``make bench``), one with
``python -m benchmarks replay --records 100000 --repeat 3``, or a small smoke
run with ``--quick``. Each prints a table (figure, baseline, ratio, goal) and
the run ends with one line of JSON for scripts.

- :mod:`benchmarks.replay`: fold a long stream from a SQLite file, against a
  raw sqlite3 + pydantic pipeline and the ``eventsourcing`` library; peak memory.
- :mod:`benchmarks.measure`: medians of timings, peak RSS in a fresh process.
- :mod:`benchmarks.report`: the table and the JSON line.
"""
