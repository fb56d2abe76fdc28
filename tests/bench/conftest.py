"""The benchmark's smoke test needs no fixtures beyond pytest's own."""
