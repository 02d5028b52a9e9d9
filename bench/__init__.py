"""Benchmarks against plain-Keras baselines (not tests): `make bench`."""
