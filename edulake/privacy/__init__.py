"""The privacy layer: pseudonyms, identity lookups, keys, erasure, rotation, the PII audit."""
