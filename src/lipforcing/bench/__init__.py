"""Benchmark harness (throughput, TTFF, per-stage times, memory, concurrent sessions).

``lipforcing bench`` and ``benchmarks/run.py`` drive :func:`lipforcing.bench.runs.benchmark`.
The student is timed through the product runtime (:mod:`lipforcing.streaming.engine`) with
the execution options of :mod:`lipforcing.streaming.options`; nothing here has its own
per-chunk loop.
"""
