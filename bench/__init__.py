"""Benchmarks of the tier A client against its peers (`make bench`)."""
