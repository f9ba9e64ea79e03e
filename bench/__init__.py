"""Benchmark harness comparing offload with its peers and raw queue references.

Run with ``.venv-bench/bin/python -m bench.run`` (see bench/README.md).
"""
