"""Benchmarks for warmstart: codec, store against its peers, deltas, import time.

An importable package: ``python -m benchmarks.run`` (``make bench``) runs the
suite and writes ``docs/benchmarks.md``; ``benchmarks.generate_data`` is the
data generator the perf tests share; ``python -m benchmarks.child`` is the
entry point every fresh-process restore goes through.
"""
