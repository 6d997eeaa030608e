"""Modules of loadtest/run.py: processes, targets, drivers, scenarios, report."""
