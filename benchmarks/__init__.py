"""``elsr bench`` / ``python -m benchmarks``: latency, throughput, memory and quality of every backend.

One table of backends (:mod:`benchmarks.backends`) drives the run; each (backend, model file,
thread count) becomes one row of the report.
"""
