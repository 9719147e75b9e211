"""Helpers shared by the test modules (real services, worker processes, models)."""
