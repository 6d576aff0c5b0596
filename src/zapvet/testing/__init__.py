"""Fakes of the world outside zapvet, for tests and benchmarks."""
