"""Inputs to a state machine and the metadata recorded with each.

An input is either :class:`Normal` (a request or outside fact) or
:class:`Completed` (the result of a tracked action emitted earlier). Both carry
:class:`Metadata` stamped when the input is accepted. The STF may read the
metadata: it is stored in the log, so a replay sees the same values. This is
how time reaches a machine without breaking determinism.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeAlias, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict

ActionId: TypeAlias = int | str
"""The id of a tracked action: chosen by the STF, deterministic, unique per stream."""

I = TypeVar("I")  # noqa: E741 - the input value type, as in fasm
R = TypeVar("R")


class Metadata(BaseModel):
    """What is recorded about an accepted input besides its value.

    ``accepted_at`` comes from the engine's injectable clock (timezone-aware);
    ``actor`` says who submitted it; ``correlation_id`` and ``causation_id``
    link it to other messages; ``idempotency_key`` is the caller's key, if any.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    accepted_at: AwareDatetime
    actor: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class Normal(Generic[I]):
    """A request or outside fact submitted to a machine."""

    value: I
    meta: Metadata


@dataclass(frozen=True, slots=True)
class Completed(Generic[R]):
    """The result of the tracked action ``id`` emitted earlier on the same stream."""

    id: ActionId
    result: R
    meta: Metadata


Input: TypeAlias = Normal[I] | Completed[R]
"""What an STF receives: ``Input[InputType, ResultType]``."""


def stamp(
    at: datetime,
    *,
    actor: str | None = None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    idempotency_key: str | None = None,
) -> Metadata:
    """Build the metadata for an input accepted at ``at``."""
    return Metadata(
        accepted_at=at,
        actor=actor,
        correlation_id=correlation_id,
        causation_id=causation_id,
        idempotency_key=idempotency_key,
    )
