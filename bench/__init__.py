"""Benchmark suite (`make bench`, `make bench-short`): see docs/benchmarks.md."""
