"""zapvet benchmarks: scripts run by `bench/run`, never timed tests (docs/benchmarks.md)."""
