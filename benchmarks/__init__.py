"""Benchmarks of sagakit and the course: each script answers one question with ratios.

Run them all with ``python benchmarks/run_all.py`` (see ``benchmarks/README.md``).
"""
