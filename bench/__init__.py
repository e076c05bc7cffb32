"""Benchmarks (not tests): `make bench` runs `python -m bench` (the capacity bench, then the
export bench); each also runs alone as ``python -m bench.<name>``."""
