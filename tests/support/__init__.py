"""Helpers the tests share: scripted peers, sample audio, waiting for records.

Not test modules (pytest collects nothing here) and no fixtures (those stay in
the conftest.py of each tier).  What the demo or the benchmarks also use lives
in the top-level ``harness`` package instead (``harness.wait``, ``harness.mqtt``).
"""
