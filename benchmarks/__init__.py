"""Speed and memory measurements; results go to BENCHMARKS.md (not timed tests)."""
