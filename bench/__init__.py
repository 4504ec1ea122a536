"""Reproducible benchmarks; run all with `python -m bench [--quick]`."""
