"""The benchmark harness (``elsr bench`` / ``python -m elsr.benchmarks``): latency, throughput, memory and
quality of every backend, timed over the models that ``elsr.runtime`` loads.

One table of backends (:mod:`elsr.benchmarks.backends`) drives the run; each (backend, model file,
thread count) becomes one row of the report. ``large_image`` (upscaling under a memory limit) and
``data_loading`` (loading vs training throughput, prepare memory) are runnable on their own.
"""
