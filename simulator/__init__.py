"""The synthetic lead funnel (`funnel`) used by the demo, the tests and the benchmarks: leads,
their events and their true conversion probabilities. It generates data; it builds no features."""
