"""Telemetry: structured logs now; the event contract, sinks and metrics join here."""
