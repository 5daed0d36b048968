"""Real servers for tests and benchmarks, started on random loopback ports in temporary directories."""
