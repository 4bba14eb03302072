"""Benchmarks: each script measures in one run and writes its section of docs/benchmarks.md."""
