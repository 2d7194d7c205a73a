"""Sections of bench/gpu.py kept in their own files (bench/*.py are the benchmarks `make bench` runs)."""
