"""Benchmarks: ``beacon bench <name>`` prints its figures (ratios against a baseline measured in
the same run where one applies). Each benchmark is a module here, registered in ``cli.py``."""
