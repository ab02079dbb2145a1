"""Payments: charges through an outside gateway, with a timeout, on the engine.

The seed README's payment system made durable: :class:`Payments` is the
machine, :class:`FakeGateway` a gateway that deduplicates by idempotency key,
:func:`gateway_handlers` connects the two, and ``python -m examples.payments``
runs the story end to end (declines, a lost answer, a stuck charge, a
timeout, a restart).
"""

from examples.payments.gateway import AnswerLost, FakeGateway, GatewayUnavailable
from examples.payments.machine import (
    NEVER_ARRIVED,
    Account,
    Cancel,
    Cancelled,
    Charge,
    CheckStatus,
    Deposit,
    Failed,
    InsufficientFunds,
    NotFound,
    Notification,
    Payment,
    PaymentAction,
    PaymentInput,
    PaymentResult,
    Payments,
    Process,
    Success,
    UnexpectedResult,
)
from examples.payments.service import charge_key, demo, gateway_handlers

__all__ = [
    "NEVER_ARRIVED",
    "Account",
    "AnswerLost",
    "Cancel",
    "Cancelled",
    "Charge",
    "CheckStatus",
    "Deposit",
    "Failed",
    "FakeGateway",
    "GatewayUnavailable",
    "InsufficientFunds",
    "NotFound",
    "Notification",
    "Payment",
    "PaymentAction",
    "PaymentInput",
    "PaymentResult",
    "Payments",
    "Process",
    "Success",
    "UnexpectedResult",
    "charge_key",
    "demo",
    "gateway_handlers",
]
