"""Benchmarks: `make bench` (bench/run.py) runs them and rewrites BENCHMARKS.md."""
