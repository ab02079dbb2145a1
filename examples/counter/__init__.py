"""The counter: the smallest machine (fasm's ``csm`` example).

Each ``Increment`` adds to the counter and emits an untracked ``Incremented``
notification; an increment that would pass ``limit`` is rejected with
:class:`Overflowed` and changes nothing.
"""

from examples.counter.machine import (
    Counter,
    CounterState,
    Increment,
    Incremented,
    Overflowed,
)

__all__ = ["Counter", "CounterState", "Increment", "Incremented", "Overflowed"]
