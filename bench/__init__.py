"""Benchmark suite (`make bench`, `make bench-short`): see bench/README in the project README's Benchmarks section."""
