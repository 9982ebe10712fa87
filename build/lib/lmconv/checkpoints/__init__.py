"""Checkpoint suites: one naming contract for our local suites and the PolyPythias on the hub, and the small tables
that describe a suite."""
