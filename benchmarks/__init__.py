"""The project's benchmarks (``make bench``), beside the package they measure."""
