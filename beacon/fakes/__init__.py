"""Faithful local fakes of external services (real HTTP servers), for development, tests and benchmarks."""
