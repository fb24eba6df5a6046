"""Integration tests: training runs, processes, notebooks, benchmarks, command lines end to end."""
