"""Benchmarks of Callcard components."""
