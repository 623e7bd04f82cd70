"""Rented cloud GPUs: SkyPilot tasks for scenarios (`harness cloud launch`), pinned engine images."""
