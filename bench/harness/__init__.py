"""Orchestration for bench/run.py: server processes, the scenario matrix, and the report."""
