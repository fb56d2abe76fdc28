"""The shared core: the lake and its commit protocol, landing, Parquet, types, settings."""
