"""Benchmark harness (throughput, TTFF, per-stage times, memory) and inference speed-ups.

``lipforcing bench`` and ``benchmarks/run.py`` drive :func:`lipforcing.bench.runs.benchmark`;
:mod:`lipforcing.bench.optimize` holds the execution speed-ups, each tested against the plain
float32 path.
"""
