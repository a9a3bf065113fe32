"""Every test here is checked against the telemetry contract (tests/event_contract.py)."""

from tests.event_contract import event_contract

__all__ = ["event_contract"]
